"""Git safety: nothing the sandbox (or a compromised sandbox) writes makes host-side git run code.

Every trap below is a shell command that touches a marker file. Host-side operations on a thread
(commit a turn, snapshot, diff, log, apply) run after the traps are set, and no marker may appear.
Each trap is also shown to be armed: plain git, without devagent's protections, springs it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from agents.testing import ScriptedModel, assistant_message, function_call

from conftest import git
from devagent.config import sandbox_user
from devagent.runner import Decision, TaskOptions, ThreadRunner
from devagent.sandbox import ContainerSpec, ThreadContainer
from devagent.store import Store
from devagent.workspace import GitError, ThreadWorkspace

HOOKS = [
    "pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "pre-merge-commit", "post-merge",
    "post-checkout", "post-rewrite", "reference-transaction", "post-index-change", "pre-auto-gc",
    "fsmonitor-watchman", "pre-push", "push-to-checkout", "update", "post-update",
]


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    path = tmp_path / "markers"
    path.mkdir()
    return path


def trap(markers: Path, name: str) -> str:
    """A shell command that leaves evidence that it ran (and behaves like `cat` as a filter)."""
    return f"sh -c 'touch {markers}/{name}; cat'"


def quoted(value: str) -> str:
    """A value for a hand-written git config file (unquoted, ";" would start a comment)."""
    return '"' + value + '"'


def sprung(markers: Path) -> list[str]:
    return sorted(os.listdir(markers))


def plant_hooks(hooks_dir: Path, markers: Path, tag: str) -> None:
    hooks_dir.mkdir(parents=True, exist_ok=True)
    for hook in HOOKS:
        script = hooks_dir / hook
        script.write_text(f"#!/bin/sh\ntouch {markers}/hook-{tag}-{hook}\n")
        script.chmod(0o755)


def tree_digest(root: Path) -> str:
    """Everything under `root` (names, modes, contents): proves nothing in it changed."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames) + dirnames:
            path = Path(dirpath) / name
            st = path.lstat()
            h.update(f"{path.relative_to(root)}\0{st.st_mode}\0".encode())
            if path.is_file() and not path.is_symlink():
                h.update(path.read_bytes())
    return h.hexdigest()


def host_operations(ws: ThreadWorkspace, repo: Path | None) -> list[str]:
    """Everything devagent does with git on the host for a thread (apply into `repo` unless
    None); returns the refusals."""
    errors = []
    steps = [
        lambda: ws.commit_turn("turn"),
        lambda: ws.snapshot(),
        lambda: ws.changed_between(ws.git("rev-parse", "HEAD^{tree}").strip(), ws.snapshot()),
        lambda: ws.diff(),
        lambda: ws.diff(stat=True),
        lambda: ws.log(),
        lambda: ws.git("show", "--stat", "--format=", "HEAD"),  # the runner's end-of-turn summary
    ]
    if repo is not None:
        steps.append(lambda: ws.apply_to(repo))
    for step in steps:
        try:
            step()
        except GitError as exc:
            errors.append(str(exc))
    return errors


@pytest.fixture
def ws(home: Path, repo: Path) -> ThreadWorkspace:
    workspace = ThreadWorkspace("gitsec", home / "threads" / "gitsec")
    workspace.create(repo)
    return workspace


def plain_git(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """git without devagent's protections (used only to prove that a trap is armed)."""
    return subprocess.run(["git", "-c", "safe.directory=*", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def add_with_plain_git(scratch: Path, attributes: str, name: str) -> None:
    """`git add` of one file under these attributes in a new repository, by plain git (the
    drivers the attributes select run if the environment or config defines them)."""
    scratch.mkdir()
    plain_git("-C", str(scratch), "init", "-q")
    (scratch / ".gitattributes").write_text(attributes)
    (scratch / name).write_text("x\n")
    plain_git("-C", str(scratch), "add", "--all")


# ------------------------------------------------------------------ a compromised sandbox


def test_hooks_planted_in_the_thread_git_dir_never_run(ws: ThreadWorkspace, repo: Path, markers: Path) -> None:
    plant_hooks(ws.git_dir / "hooks", markers, "thread")
    (ws.work_dir / "feature.txt").write_text("feature\n")

    assert host_operations(ws, repo) == []
    assert sprung(markers) == []
    assert (repo / "feature.txt").read_text() == "feature\n"  # the work was applied all the same

    # Armed: plain git would have run them.
    (ws.work_dir / "more.txt").write_text("more\n")
    plain_git(f"--git-dir={ws.git_dir}", f"--work-tree={ws.work_dir}", "add", "more.txt")
    plain_git(f"--git-dir={ws.git_dir}", f"--work-tree={ws.work_dir}", "commit", "-qm", "x",
              env={"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a",
                   "GIT_COMMITTER_EMAIL": "a@b"})
    assert "hook-thread-pre-commit" in sprung(markers)


def _plant_config(ws: ThreadWorkspace, markers: Path, kind: str) -> tuple[str, str]:
    """Write one kind of code-running config into the thread's repository, as a sandbox that
    escaped its read-only mount could. Returns the plain-git command that proves it is armed."""
    cfg = ["git", "config", "--file", str(ws.git_dir / "config")]
    work = ws.work_dir
    (work / "README.md").write_text("# changed by the agent\n")  # same size changes need hashing
    if kind == "core.fsmonitor":
        subprocess.run([*cfg, "core.fsmonitor", trap(markers, "fsmonitor")], check=True)
        return "status", "fsmonitor"
    if kind == "core.hooksPath":
        plant_hooks(ws.root / "evil-hooks", markers, "hookspath")
        subprocess.run([*cfg, "core.hooksPath", str(ws.root / "evil-hooks")], check=True)
        return "commit", "hook-hookspath-pre-commit"
    if kind == "filter.clean":
        subprocess.run([*cfg, "filter.evil.clean", trap(markers, "clean")], check=True)
        (work / ".gitattributes").write_text("* filter=evil\n")
        return "add", "clean"
    if kind == "filter.smudge+required":
        subprocess.run([*cfg, "filter.evil.smudge", trap(markers, "smudge")], check=True)
        subprocess.run([*cfg, "filter.evil.required", "true"], check=True)
        (work / ".gitattributes").write_text("* filter=evil\n")
        return "checkout-file", "smudge"
    if kind == "filter.process":
        subprocess.run([*cfg, "filter.evil.process", f"touch {markers}/process"], check=True)
        (work / ".gitattributes").write_text("* filter=evil\n")
        return "add", "process"
    if kind == "diff.textconv":
        subprocess.run([*cfg, "diff.evil.textconv", trap(markers, "textconv")], check=True)
        (work / ".gitattributes").write_text("* diff=evil\n")
        return "show", "textconv"
    if kind == "diff.external":
        subprocess.run([*cfg, "diff.external", trap(markers, "external")], check=True)
        return "diff", "external"
    if kind == "include.path":
        included = ws.root / "included.cfg"
        included.write_text(f"[filter \"evil\"]\n\tclean = {quoted(trap(markers, 'include'))}\n")
        subprocess.run([*cfg, "include.path", str(included)], check=True)
        (work / ".gitattributes").write_text("* filter=evil\n")
        return "add", "include"
    if kind == "includeIf":
        included = ws.root / "included.cfg"
        included.write_text(f"[filter \"evil\"]\n\tclean = {quoted(trap(markers, 'includeif'))}\n")
        subprocess.run([*cfg, "includeIf.onbranch:devagent/**.path", str(included)], check=True)
        (work / ".gitattributes").write_text("* filter=evil\n")
        return "add", "includeif"
    if kind == "worktreeConfig":
        subprocess.run([*cfg, "extensions.worktreeConfig", "true"], check=True)
        (ws.git_dir / "config.worktree").write_text(f"[filter \"evil\"]\n\tclean = {quoted(trap(markers, 'worktree'))}\n")
        (work / ".gitattributes").write_text("* filter=evil\n")
        return "add", "worktree"
    raise AssertionError(kind)


CONFIG_KINDS = ["core.fsmonitor", "core.hooksPath", "filter.clean", "filter.smudge+required", "filter.process",
                "diff.textconv", "diff.external", "include.path", "includeIf", "worktreeConfig"]


@pytest.mark.parametrize("kind", CONFIG_KINDS)
def test_config_planted_in_the_thread_git_dir_is_refused_and_never_runs(
        ws: ThreadWorkspace, repo: Path, markers: Path, kind: str) -> None:
    armed_by, marker = _plant_config(ws, markers, kind)
    user_head = git(repo, "rev-parse", "HEAD")

    errors = host_operations(ws, repo)

    assert sprung(markers) == []
    assert len(errors) == 8 and all("modified outside devagent" in e for e in errors), errors
    assert git(repo, "rev-parse", "HEAD") == user_head  # nothing was applied from a tampered thread
    assert not (repo / ".gitattributes").exists()

    # Armed: the same repository makes plain git run the planted command.
    base = [f"--git-dir={ws.git_dir}", f"--work-tree={ws.work_dir}"]
    ident = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@b"}
    if armed_by == "checkout-file":
        (ws.work_dir / "README.md").unlink()
        plain_git(*base, "checkout", "--", "README.md")
    elif armed_by in ("commit", "show"):
        plain_git(*base, "add", "--all")
        plain_git(*base, "commit", "-qm", "x", env=ident)
        if armed_by == "show":
            plain_git(*base, "show", "HEAD", cwd=ws.work_dir)  # attributes apply from inside
    elif armed_by == "diff":
        plain_git(*base, "diff", "HEAD")
    else:
        plain_git(*base, armed_by, "--all" if armed_by == "add" else "--porcelain")
    assert marker in sprung(markers)


def test_a_commondir_redirect_in_the_thread_git_dir_is_refused(ws: ThreadWorkspace, repo: Path, markers: Path) -> None:
    elsewhere = ws.root / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "config").write_text(f"[core]\n\tfsmonitor = {quoted(trap(markers, 'commondir'))}\n")
    (ws.git_dir / "commondir").write_text(str(elsewhere) + "\n")
    errors = host_operations(ws, repo)
    assert sprung(markers) == []
    assert len(errors) == 8 and all("modified outside devagent" in e for e in errors), errors


# ------------------------------------------------------------------ the user's own git config


def test_the_users_global_git_config_is_not_honoured_on_thread_operations(
        ws: ThreadWorkspace, repo: Path, markers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drivers the user defined globally (LFS-style filters, textconv) must not run on files the
    agent chose: the agent would pick which of the user's programs run, on content it wrote."""
    fake_home = tmp_path / "user-home"
    (fake_home / ".config" / "git").mkdir(parents=True)
    plant_hooks(fake_home / "hooks", markers, "global")
    (fake_home / ".gitconfig").write_text(
        f"[filter \"evil\"]\n\tclean = {quoted(trap(markers, 'global-clean'))}\n\tsmudge = {quoted(trap(markers, 'global-smudge'))}\n"
        f"[diff \"evil\"]\n\ttextconv = {quoted(trap(markers, 'global-textconv'))}\n"
        f"[core]\n\tfsmonitor = {quoted(trap(markers, 'global-fsmonitor'))}\n\thooksPath = {fake_home / 'hooks'}\n"
    )
    (fake_home / ".config" / "git" / "config").write_text(
        f"[filter \"xdg\"]\n\tclean = {quoted(trap(markers, 'xdg-clean'))}\n"
    )
    monkeypatch.setenv("HOME", str(fake_home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(fake_home / ".config"))
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)

    # The agent adds attributes that select those drivers, and changes files they would process.
    (ws.work_dir / ".gitattributes").write_text("* filter=evil diff=evil\n*.xdg filter=xdg\n")
    (ws.work_dir / "README.md").write_text("# changed by the agent\n")
    (ws.work_dir / "data.xdg").write_text("data\n")

    assert host_operations(ws, repo) == []
    assert sprung(markers) == []
    assert (repo / "data.xdg").read_text() == "data\n"

    # Armed: plain git with this HOME runs them.
    add_with_plain_git(tmp_path / "scratch", "* filter=evil\n*.xdg filter=xdg\n", "data.xdg")
    assert {"global-clean", "xdg-clean", "global-fsmonitor"} <= set(sprung(markers))


def test_git_settings_in_the_hosts_environment_do_not_reach_thread_operations(
        ws: ThreadWorkspace, repo: Path, markers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shell that exports GIT_CONFIG_COUNT/KEY/VALUE (CI runners do) would configure drivers
    on the thread's git the same way a config file would: devagent's git never sees them."""
    for n, (key, name) in enumerate([("filter.evil.clean", "env-clean"), ("core.fsmonitor", "env-fsmonitor")]):
        monkeypatch.setenv(f"GIT_CONFIG_KEY_{n}", key)
        monkeypatch.setenv(f"GIT_CONFIG_VALUE_{n}", trap(markers, name))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "2")
    (ws.work_dir / ".gitattributes").write_text("* filter=evil\n")
    (ws.work_dir / "README.md").write_text("# changed by the agent\n")

    assert host_operations(ws, repo) == []
    assert sprung(markers) == []

    # Armed: plain git with this environment runs them.
    add_with_plain_git(tmp_path / "scratch", "* filter=evil\n", "data.txt")
    assert "env-clean" in sprung(markers)


# ------------------------------------------------------------------ inside the real sandbox


@pytest.fixture
def make_box(docker_client, sandbox_image, home: Path, repo: Path):
    made = []

    def make() -> tuple[ThreadWorkspace, ThreadContainer]:
        thread_id = "gitsec" + os.urandom(3).hex()
        ws = ThreadWorkspace(thread_id, home / "threads" / thread_id)
        ws.create(repo, owner=sandbox_user())
        container = ThreadContainer(docker_client, ContainerSpec(thread_id, ws.work_dir, ws.git_dir, network=False))
        made.append(container)
        container.ensure_running()
        return ws, container

    yield make
    for container in made:
        container.remove()


def test_the_sandbox_cannot_write_the_git_metadata(make_box) -> None:
    ws, container = make_box()
    before = tree_digest(ws.git_dir)
    attempts = [
        "mkdir -p .git/hooks",
        "printf '#!/bin/sh\\ntouch /tmp/x\\n' > .git/hooks/post-commit",
        "git config core.hooksPath /workspace/hooks",
        "git config core.fsmonitor 'touch /tmp/x'",
        "git config filter.evil.clean 'touch /tmp/x'",
        "printf '[include]\\n\\tpath = /workspace/evil.cfg\\n' >> .git/config",
        "echo /workspace/elsewhere > .git/commondir",
        "rm -f .git/HEAD",
        "rm -rf .git/refs",
        "mv .git .git-moved",
        "rmdir .git",
        "chmod 777 .git",
        "git update-ref refs/heads/main HEAD",
    ]
    for command in attempts:
        result = container.exec(command, timeout_s=30)
        assert result.exit_code != 0, (command, result.output)
    assert tree_digest(ws.git_dir) == before
    # Reading still works inside: the agent can use git log / status / diff.
    log = container.exec("git log --oneline && git status --short && git diff --stat", timeout_s=30)
    assert log.exit_code == 0 and "initial" in log.output, log.output


def plant_nested_repository(container: ThreadContainer, path: str, markers: Path, gitmodules: bool = True) -> None:
    """What an approved command can do: make `path` a repository whose config runs programs."""
    os.chmod(markers, 0o777)
    hooks = " ".join(HOOKS)
    plant = f"""
        set -e
        mkdir -p {path} && cd {path} && git init -q .
        echo hi > a && git add a && git -c user.name=x -c user.email=y commit -qm x
        git config filter.evil.clean "{trap(markers, 'nested-clean')}"
        git config filter.evil.smudge "{trap(markers, 'nested-smudge')}"
        git config filter.evil.process "touch {markers}/nested-process"
        git config diff.evil.textconv "{trap(markers, 'nested-textconv')}"
        git config core.fsmonitor "{trap(markers, 'nested-fsmonitor')}"
        git config core.hooksPath "$PWD/.git/hooks"
        printf '* filter=evil diff=evil\\n' > .gitattributes
        mkdir -p .git/hooks
        for h in {hooks}; do printf '#!/bin/sh\\ntouch {markers}/nested-hook-%s\\n' $h > .git/hooks/$h; chmod +x .git/hooks/$h; done
        echo ho > a && touch -d @0 a   # same size, old mtime: git must hash it, through the filter
        cd /workspace && {"" if gitmodules else ": "}printf '[submodule "{path}"]\\n\\tpath = {path}\\n\\turl = ./{path}\\n\\tignore = none\\n\\tupdate = !touch {markers}/nested-update\\n' > .gitmodules
    """
    planted = container.exec(plant, timeout_s=60)
    assert planted.exit_code == 0, planted.output


def test_a_nested_repository_planted_by_a_command_never_runs_code_on_the_host(
        make_box, repo: Path, markers: Path) -> None:
    """An approved command may create a repository inside the workspace (its .git is writable
    there); host-side git must never look inside it: `git add`, `status` and `diff` would run
    `git status` in it, obeying its filters."""
    ws, container = make_box()
    plant_nested_repository(container, "vendor/sub", markers)

    assert host_operations(ws, repo) == []
    (ws.work_dir / "notes.txt").write_text("second turn\n")
    assert host_operations(ws, None) == []  # a second turn, with the first one's index
    assert sprung(markers) == []
    # The nested repository is not committed (a gitlink would point at a commit nobody has).
    assert "vendor/sub" not in ws.git("ls-tree", "-r", "--name-only", "HEAD")
    assert (repo / ".gitmodules").exists() and not (repo / "vendor").exists()

    # Armed: plain git, adding twice (the second add checks the gitlink it recorded), runs it.
    for _ in range(2):
        plain_git(f"--git-dir={ws.git_dir}", f"--work-tree={ws.work_dir}", "add", "--all")
    assert any(m.startswith("nested-") for m in sprung(markers)), sprung(markers)


def test_a_repository_planted_at_a_submodule_path_never_runs_code_on_the_host(
        make_box, repo: Path, markers: Path) -> None:
    """The user's repository has a submodule: its gitlink is tracked, and the thread's checkout
    holds an empty directory there, which a command can turn into a repository."""
    head = git(repo, "rev-parse", "HEAD").strip()
    (repo / "lib").mkdir()
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{head},lib")
    (repo / ".gitmodules").write_text('[submodule "lib"]\n\tpath = lib\n\turl = https://example.com/lib.git\n')
    git(repo, "add", ".gitmodules")
    git(repo, "commit", "-qm", "add a submodule")
    ws, container = make_box()
    plant_nested_repository(container, "lib", markers, gitmodules=False)
    (ws.work_dir / "notes.txt").write_text("work\n")

    assert host_operations(ws, repo) == []
    (ws.work_dir / "notes.txt").write_text("second turn\n")
    assert host_operations(ws, None) == []
    assert sprung(markers) == []
    assert (repo / "notes.txt").read_text() == "work\n"
    assert ws.git("ls-tree", "HEAD", "lib").split()[2] == head  # the gitlink is untouched

    for _ in range(2):  # the first add records the nested HEAD, the second checks it for changes
        plain_git(f"--git-dir={ws.git_dir}", f"--work-tree={ws.work_dir}", "add", "--all")
    assert any(m.startswith("nested-") for m in sprung(markers)), sprung(markers)


class Approve:
    def __init__(self) -> None:
        self.shown = []

    def decide(self, request):
        self.shown.append(request)
        return Decision(True)


async def test_the_agent_cannot_plant_git_code_through_its_tools(
        home: Path, repo: Path, markers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        docker_client, sandbox_image) -> None:
    """End to end: file tools refuse .git, approved commands cannot write it, the .gitattributes
    the agent may write selects a driver that only the user's global config defines, and the
    turn is committed, diffed and applied without running anything."""
    fake_home = tmp_path / "user-home"
    fake_home.mkdir()
    (fake_home / ".gitconfig").write_text(
        f"[filter \"lfs\"]\n\tclean = {quoted(trap(markers, 'lfs-clean'))}\n\tsmudge = {quoted(trap(markers, 'lfs-smudge'))}\n"
        f"\tprocess = \"touch {markers}/lfs-process\"\n"
        f"[diff \"lfs\"]\n\ttextconv = {quoted(trap(markers, 'lfs-textconv'))}\n"
    )
    monkeypatch.setenv("HOME", str(fake_home))
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    os.chmod(markers, 0o777)

    file_attacks = {
        "w1": (".git/hooks/post-commit", "#!/bin/sh\ntouch x\n"),
        "w2": (".git/config", "[core]\n\tfsmonitor = touch x\n"),
        "w3": (".GIT/config", "x"),
        "w4": ("src/../.git/hooks/pre-commit", "x"),
        "w5": ("sub/.git/config", "[core]\n\tfsmonitor = touch x\n"),
        "w6": (".git\u200b/config", "x"),
    }
    steps = [
        [function_call("write_file", {"path": p, "content": c}, call_id=i) for i, (p, c) in file_attacks.items()]
        + [function_call("read_file", {"path": ".git/config"}, call_id="r1"),
           function_call("write_file", {"path": ".gitattributes", "content": "* filter=lfs diff=lfs\n"}, call_id="ga"),
           function_call("write_file", {"path": "big.bin", "content": "payload\n"}, call_id="gb")],
        [function_call("run_shell", {"command": "mkdir -p .git/hooks; printf '#!/bin/sh\\ntouch "
                                                f"{markers}/shell-hook\\n' > .git/hooks/post-commit; "
                                                f"git config filter.lfs.clean 'touch {markers}/shell-cfg'; "
                                                "echo exit=$?"}, call_id="s1")],
        [assistant_message("done")],
    ]
    model = ScriptedModel(steps)
    runner = ThreadRunner(Store(home), model=model, approver=Approve())
    thread = runner.create_thread(repo, TaskOptions())
    outcome = await runner.run_task(thread.id, "plant git code")
    assert outcome.status == "done" and outcome.commit

    outputs = {}
    for call in model.calls:
        for item in call.input if isinstance(call.input, list) else []:
            if isinstance(item, dict) and item.get("type") == "function_call_output":
                outputs[item["call_id"]] = item["output"]
    for call_id in [*file_attacks, "r1"]:
        assert "off limits" in outputs[call_id], (call_id, outputs[call_id])
    assert "Read-only file system" in outputs["s1"] and "exit=255" in outputs["s1"]

    ws = runner.workspace(thread.id)
    assert not (ws.git_dir / "hooks").exists()
    assert not (ws.work_dir / "sub").exists()
    ws.diff()
    ws.diff(stat=True)
    ws.apply_to(repo)
    assert (repo / "big.bin").read_text() == "payload\n"
    assert sprung(markers) == []


def test_config_planted_after_a_clean_check_is_still_refused(ws: ThreadWorkspace) -> None:
    """The config check is skipped only while the file is unchanged since it was found clean: a
    write of the same size with its modification time put back still changes its ctime."""
    import re
    import time

    config = ws.git_dir / "config"
    time.sleep(1.2)  # old enough for its timestamps to tell a later write apart
    ws.git("status")  # found clean (and remembered as such)
    before = config.stat()
    text = config.read_text()
    line = re.search(r"\tfilemode = \w+\n", text).group(0)
    planted = "\tfsmonitor=" + "x" * (len(line) - len("\tfsmonitor=\n")) + "\n"
    config.write_text(text.replace(line, planted))
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert config.stat().st_size == before.st_size and config.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(GitError, match="modified outside devagent"):
        ws.git("status")
