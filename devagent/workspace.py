"""Git for threads: a private checkout per thread on branch `devagent/<id>`, turn commits, diff,
apply and discard.

Layout under DEVAGENT_HOME/threads/<id>/:  `workspace/` (the work tree, mounted at /workspace)
and `git/` (the repository, mounted read-only at /workspace/.git). The sandbox can therefore never
write hooks or config into the repository that host-side git uses, and every host-side git
command below additionally runs with hooks off and without system/global config, so nothing the
agent wrote (.gitattributes filters, fsmonitor, includes) can make the host run code, and with a
deadline, so a FIFO planted where git reads a file cannot make it wait forever.

Turn commits honour the repository's ignore files plus DEFAULT_EXCLUDES (environments and caches).
The state of the work tree an approval binds (`ThreadWorkspace.state`) is read from the files
themselves, never through git, so nothing the agent writes can hide a change from it.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import shutil
import stat
import subprocess
import threading
import time
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path

from devagent.words import count
from devagent.errors import DevagentError

GIT_IDENTITY = {"name": "devagent", "email": "devagent@localhost"}

# -c options that neutralise every way a repository can make git run a program.
SAFE_GIT_OPTIONS = [
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "core.attributesFile=/dev/null",
    "-c", "core.sshCommand=false",
    "-c", "diff.external=",
    "-c", "safe.directory=*",
    "-c", "protocol.ext.allow=never",
    "-c", "credential.helper=",
    "-c", "uploadpack.packObjectsHook=",
]

# The only keys devagent writes into a thread's git config. The sandbox cannot write there (the git
# dir is mounted read-only), so any other key (a filter/diff driver, an include, an extension) was
# planted from outside, and host-side git refuses the repository rather than obey it.
THREAD_CONFIG_KEYS = frozenset({
    "core.repositoryformatversion", "core.filemode", "core.bare", "core.logallrefupdates",
    "core.symlinks", "core.ignorecase", "core.precomposeunicode",
})

# Thread config files found clean, by path -> their stat signature then (see check_metadata).
_checked_configs: dict[str, tuple[int, ...]] = {}


# Environments and caches a command leaves behind never belong in a turn commit. Given to git as
# core.excludesFile, the lowest-precedence ignore source: a `!pattern` in the repository's own
# .gitignore brings any of them back.
DEFAULT_EXCLUDES = """\
# devagent: environments and caches stay out of a thread's commits
.venv/
venv/
node_modules/
__pycache__/
*.py[cod]
.pytest_cache/
.mypy_cache/
.ruff_cache/
.hypothesis/
.tox/
.nox/
.eggs/
*.egg-info/
.coverage
htmlcov/
.ipynb_checkpoints/
.cache/
.npm/
.gradle/
.terraform/
.DS_Store
"""

# A turn that adds more than this is probably committing something generated: say so.
TURN_WARN_FILES = 500
TURN_WARN_BYTES = 20 * 1024 * 1024
DIFFSTAT_LINES = 20

LAST_COMMAND = "last-command"  # the saved state of the work tree after the last command

# Host-side git gets a deadline: a FIFO where git expects a file (.gitignore) makes it wait forever.
GIT_TIMEOUT_S = 600.0

# Names host-side git opens and reads inside the work tree (at any depth).
GIT_READS = frozenset({".gitignore", ".gitattributes", ".gitmodules", ".mailmap"})


class AlreadyMerged(DevagentError):
    """`apply` of a thread whose branch is already in the user's branch: nothing to do."""


class GitError(DevagentError):
    pass


def _safe_env(name: str, email: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("GIT_")
    }
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME=name,
        GIT_AUTHOR_EMAIL=email,
        GIT_COMMITTER_NAME=name,
        GIT_COMMITTER_EMAIL=email,
        GIT_OPTIONAL_LOCKS="0",
    )
    return env


def safe_git(*args: str, cwd: Path, git_dir: Path | None = None, work_tree: Path | None = None,
             identity: dict[str, str] | None = None, check: bool = True,
             extra_env: dict[str, str] | None = None, options: list[str] | None = None) -> str:
    """Run git with the protections above. Returns stdout.

    A plain subprocess, not GitPython: its `Git.execute` always starts from the whole host
    environment, so the GIT_* variables `_safe_env` leaves out (GIT_CONFIG_*, GIT_DIR, ...) came
    back; and importing it costs a command more than the git calls themselves."""
    ident = identity or GIT_IDENTITY
    argv = _git_argv(args, git_dir, work_tree, options)
    # English messages: the error below quotes git's first fatal line.
    env = {**_safe_env(ident["name"], ident["email"]), "LANGUAGE": "C", "LC_ALL": "C", **(extra_env or {})}
    try:
        proc = subprocess.Popen(argv, cwd=str(cwd) if os.access(str(cwd), os.X_OK) else None, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise GitError(f"git {args[0]} failed: git is not installed (or not on PATH)") from None
    try:
        out, err = proc.communicate(timeout=GIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _kill_with_children(proc.pid)
        out, _ = proc.communicate()
        err = f'Timeout: the command "{" ".join(argv)}" did not complete in {GIT_TIMEOUT_S:g} secs.'.encode()
    if proc.returncode == 0:
        return out.decode("utf-8", "surrogateescape")
    if not check:
        return ""
    stderr = err.decode("utf-8", "surrogateescape").removesuffix("\n")
    lines = [line.strip(" '") for line in stderr.splitlines() if line.strip(" '")]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    message = (fatal or lines or [f"exit status {proc.returncode}"])[0]
    raise GitError(f"git {args[0]} failed: {message}") from None


def _kill_with_children(pid: int) -> None:
    """A git that ran out of time, and the processes it started (fetch runs helpers)."""
    children = []
    try:
        listed = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid="], capture_output=True, text=True)
        children = [int(word) for word in listed.stdout.split() if word.isdigit()]
    except OSError:
        pass
    for victim in (pid, *children):
        try:
            os.kill(victim, 9)
        except OSError:
            pass


def _git_argv(args: tuple[str, ...] | list[str], git_dir: Path | None, work_tree: Path | None,
              options: list[str] | None = None) -> list[str]:
    argv = ["git", *SAFE_GIT_OPTIONS, *(options or [])]
    if git_dir is not None:
        argv += [f"--git-dir={git_dir}"]
    if work_tree is not None:
        argv += [f"--work-tree={work_tree}"]
    return argv + list(args)


def find_repo(path: Path) -> Path:
    """The top of the git work tree containing `path`."""
    import git

    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise DevagentError(f"{path} is not inside a git repository (devagent works on a git checkout)") from None
    if repo.bare or repo.working_tree_dir is None:
        raise DevagentError(f"{path} is a bare repository; run devagent in a checkout")
    if not repo.head.is_valid():
        raise DevagentError(f"{repo.working_tree_dir} has no commits yet; commit something first")
    return Path(repo.working_tree_dir).resolve()


@dataclass(frozen=True)
class ThreadWorkspace:
    thread_id: str
    root: Path  # DEVAGENT_HOME/threads/<id>

    @classmethod
    def of(cls, home: Path, thread_id: str) -> ThreadWorkspace:
        """The workspace of a thread of the store at `home` (DEVAGENT_HOME)."""
        return cls(thread_id, home / "threads" / thread_id)

    @property
    def work_dir(self) -> Path:
        return self.root / "workspace"

    @property
    def git_dir(self) -> Path:
        return self.root / "git"

    @property
    def rules_file(self) -> Path:
        """The thread's own command rules (saved from `a` on the screen): beside the workspace,
        out of the sandbox's reach."""
        return self.root / "policy.toml"

    @property
    def branch(self) -> str:
        return f"devagent/{self.thread_id}"

    @property
    def excludes_file(self) -> Path:
        """devagent's default excludes (host-only: the sandbox cannot edit them)."""
        return self.root / "default-excludes"

    def _options(self) -> list[str]:
        if not self.excludes_file.is_file():
            self.excludes_file.write_text(DEFAULT_EXCLUDES)
        return ["-c", f"core.excludesFile={self.excludes_file}"]

    def set_excludes(self, patterns: list[str] | None) -> None:
        """The thread's own exclude list (the project's `commit.exclude`); None: the default."""
        self.root.mkdir(parents=True, exist_ok=True)
        text = DEFAULT_EXCLUDES if patterns is None else \
            "# devagent: commit.exclude of the project's config\n" + "".join(f"{p}\n" for p in patterns)
        self.excludes_file.write_text(text)

    def git(self, *args: str, check: bool = True, extra_env: dict[str, str] | None = None,
            fresh: bool = False) -> str:
        """`fresh`: the repository is one `create` is making (nothing else has seen it yet)."""
        if not fresh:
            self.check_metadata()
        return safe_git(*args, cwd=self.root, git_dir=self.git_dir, work_tree=self.work_dir,
                        check=check, extra_env=extra_env, options=self._options())

    def git_with_input(self, args: list[str], data: bytes, ok_status: tuple[int, ...] = (0,),
                       timeout: float = GIT_TIMEOUT_S) -> bytes:
        """Run git (with the same protections) feeding `data` on stdin. Returns raw stdout."""
        self.check_metadata()
        argv = _git_argv(args, self.git_dir, self.work_dir, self._options())
        try:
            done = subprocess.run(argv, input=data, cwd=self.root, env=_safe_env(**GIT_IDENTITY),
                                  capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise GitError(f"git {args[0]} did not finish within {timeout:.0f} s") from None
        if done.returncode not in ok_status:
            message = [line for line in done.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
            raise GitError(f"git {args[0]} failed: {message[0] if message else f'exit status {done.returncode}'}")
        return done.stdout

    def check_metadata(self) -> None:
        """Refuse a thread repository whose config holds anything devagent did not write.

        Checked again only when the config file changed (its stat signature), so a turn's git
        commands do not each pay a `git config` first; a file written too recently for its
        timestamps to tell a later write apart is checked every time."""
        if (self.git_dir / "commondir").exists():
            raise GitError(f"{self.git_dir} was modified outside devagent (a commondir file); "
                           "refusing to run git on it")
        config = self.git_dir / "config"
        try:
            st = config.stat()
        except FileNotFoundError:
            return
        signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
        if _checked_configs.get(str(config)) == signature:
            return
        if not config.is_file():
            return
        names = safe_git("config", "--file", str(config), "--no-includes", "--name-only", "--list", "-z",
                         cwd=self.root)
        planted = sorted({n for n in names.split("\0") if n and n.lower() not in THREAD_CONFIG_KEYS
                          and not n.lower().startswith("devagent.")})
        if planted:
            raise GitError(f"{config} was modified outside devagent ({', '.join(planted)}); "
                           "refusing to run git on this thread")
        if max(st.st_mtime_ns, st.st_ctime_ns) < time.time_ns() - _RACY_NS:
            _checked_configs[str(config)] = signature

    # -- lifecycle

    def create(self, source_repo: Path, owner: tuple[int, int] | None = None,
               include_uncommitted: bool = False) -> str:
        """Clone the user's repo at HEAD onto a new branch. Returns the base commit.

        include_uncommitted: the user's modified and untracked (not ignored) files become the
        branch's first commit, so the thread starts from the working tree."""
        self.root.mkdir(parents=True, exist_ok=True)
        base = safe_git("rev-parse", "HEAD", cwd=source_repo).strip()
        # HEAD names the thread's branch from the start (no symbolic-ref afterwards).
        safe_git("init", "--quiet", "--template=", f"--initial-branch={self.branch}",
                 f"--separate-git-dir={self.git_dir}", str(self.work_dir), cwd=self.root)
        # `init --separate-git-dir` leaves a `.git` file pointing at the repo; the container gets
        # the repo mounted there instead, so the work tree holds only an empty mount point.
        (self.work_dir / ".git").unlink()
        (self.work_dir / ".git").mkdir()
        # The repository was made by devagent just now and no container has seen it yet: its
        # config needs no check before each of these commands.
        self.git("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--update-head-ok", str(source_repo),
                 f"{base}:refs/heads/{self.branch}", fresh=True)
        self.git("checkout", "--quiet", "--force", self.branch, fresh=True)
        self.git("config", "devagent.base", base, fresh=True)
        if include_uncommitted:
            self._copy_uncommitted(source_repo)
        # What "files changed since the last command" compares with until a command has run.
        self.save_state(self.state(), LAST_COMMAND)
        if owner is not None:
            _chown_tree(self.root, *owner)
        return base

    def _copy_uncommitted(self, source_repo: Path) -> None:
        """Bring the user's working-tree changes over (copied as files: nothing of theirs runs)."""
        work = self.work_dir.resolve()
        for path, _code in uncommitted_changes(source_repo):
            src, dst = source_repo / path, self.work_dir / path
            # Never write through a link the checkout holds: the user's tree decides what is here.
            for parent in reversed(dst.relative_to(self.work_dir).parents[:-1]):
                here = self.work_dir / parent
                if here.is_symlink() or (here.exists() and not here.is_dir()):
                    here.unlink()
            if not dst.parent.resolve().is_relative_to(work):
                continue
            if dst.is_symlink() or dst.is_file():
                dst.unlink()
            elif dst.is_dir() and (src.is_symlink() or not src.is_dir()):
                shutil.rmtree(dst)
            if src.is_symlink():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(os.readlink(src), dst)
            elif src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst, follow_symlinks=False)
        self.commit_turn(f"Uncommitted work from {source_repo}\n\nThe working tree devagent started this "
                         "thread from (--include-uncommitted).")

    def discard(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)

    # -- turns

    def commit_turn(self, message: str) -> str | None:
        """Commit everything the turn changed. Returns the new commit, or None if nothing changed."""
        self._add_all()
        # Never look inside nested repositories the sandbox created: their config is its to write.
        if not self.git("status", "--porcelain", "--untracked-files=no", "--ignore-submodules=dirty").strip():
            return None
        # The message is the user's task: a NUL cannot go through argv, and a task of nothing but
        # whitespace or control characters would leave git an empty message it refuses.
        message = "".join(c for c in message if c in "\n\t" or c.isprintable()).strip() or "devagent turn"
        self.git("commit", "--quiet", "--no-verify", "--no-gpg-sign", "-m", message)
        return self.git("rev-parse", "HEAD").strip()

    def diffstat(self, commit: str, limit: int = DIFFSTAT_LINES) -> str:
        """`git show --stat` of a commit, at most `limit` file lines, then how many more."""
        lines = self.git("show", "--stat=120", "--stat-graph-width=30", "--format=", "--no-ext-diff",
                         "--no-textconv", commit).strip("\n").splitlines()
        files, summary = lines[:-1], lines[-1:]
        if len(files) > limit:
            files = files[:limit] + [f" … and {len(files) - limit:,} more files"]
        return "\n".join(files + summary)

    def size_warning(self, commit: str, max_files: int = TURN_WARN_FILES, max_bytes: int = TURN_WARN_BYTES) -> str | None:
        """A warning when a turn's commit adds more files or bytes than a turn normally would."""
        added = self.git("diff-tree", "-r", "-z", "--no-commit-id", "--no-renames", "--diff-filter=A",
                         f"{commit}^", commit).split("\0")
        blobs = [meta.split()[3] for meta in added[0::2] if meta.startswith(":")]
        if not blobs:
            return None
        sizes = self.git_with_input(["cat-file", "--batch-check=%(objectsize)"], "\n".join(blobs).encode() + b"\n")
        total = sum(int(n) for n in sizes.split() if n.isdigit())
        if len(blobs) <= max_files and total <= max_bytes:
            return None
        return (f"warning: this turn added {len(blobs):,} files ({total / 1e6:,.1f} MB) to the branch; "
                "if they are generated (an environment, a cache, build output), add them to .gitignore "
                "and let the next turn remove them")

    def snapshot(self) -> str:
        """A tree id for the current state of the work tree, without touching the real index."""
        env = {"GIT_INDEX_FILE": str(self.root / "snapshot.index")}
        self._add_all(env)
        return self.git("write-tree", extra_env=env).strip()

    def _add_all(self, env: dict[str, str] | None = None) -> None:
        """Stage the whole work tree except repositories nested in it (tracked gitlinks, and any
        repository a command created): `git add` would run `git status` inside them, under
        config (filters, fsmonitor) that the sandbox wrote."""
        special = self.state().special_git_files()
        if special:  # git would open it and wait forever for a writer
            raise GitError(f"{quote_path(special[0])} in the checkout is a FIFO, socket or device where git "
                           "expects a file; git cannot read the work tree until it is removed")
        staged = self.git("ls-files", "-z", "--stage", extra_env=env).split("\0")
        nested = [e.split("\t", 1)[1] for e in staged if e.startswith("160000 ")]
        untracked = self.git("ls-files", "-z", "--others", "--exclude-standard", extra_env=env).split("\0")
        nested += [path.rstrip("/") for path in untracked if path.endswith("/")]
        self.git("add", "--all", "--", ".", *[f":(exclude,literal){path}" for path in nested], extra_env=env)

    def nested_repositories(self) -> list[str]:
        """Untracked git repositories inside the work tree (made by a command): turn commits leave
        them out, since committing one would record a broken submodule the user cannot apply."""
        untracked = self.git("ls-files", "-z", "--others", "--exclude-standard").split("\0")
        return [path.rstrip("/") for path in untracked if path.endswith("/")]

    def changed_between(self, old_tree: str, new_tree: str) -> list[str]:
        if old_tree == new_tree:
            return []
        out = self.git("diff", "--name-status", "--no-renames", "--no-ext-diff", "--no-textconv",
                       old_tree, new_tree)
        return [line.replace("\t", " ", 1) for line in out.splitlines() if line.strip()]

    # -- workspace state (what an approval binds)

    def state(self) -> WorkspaceState:
        """The work tree as it is now (see "workspace state" below). Cheap when little changed."""
        cache_path = self.root / "state-cache"
        try:
            cache = marshal.loads(cache_path.read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            cache = {}
        state, new_cache, changed = scan_tree(self.work_dir, cache if isinstance(cache, dict) else {})
        if changed:
            _write_atomic(cache_path, marshal.dumps(new_cache))
        return state

    def save_state(self, state: WorkspaceState, name: str) -> None:
        directory = self.root / "states"
        path = directory / name
        data = state.dump()
        try:
            if path.read_bytes() == data:
                # Already saved (a command that changed nothing): no rewrite (a rename) and no
                # pruning; a state kept by fingerprint counts as recently shown again.
                if name.startswith("fp-"):
                    os.utime(path)
                return
        except OSError:
            directory.mkdir(exist_ok=True)
        _write_atomic(path, data)
        if not name.startswith("fp-"):
            return  # only states kept by fingerprint are pruned
        kept = sorted(directory.glob("fp-*"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in kept[16:]:  # the states recent screens showed; older approvals then list no detail
            old.unlink(missing_ok=True)

    def load_state(self, name: str) -> WorkspaceState | None:
        try:
            return WorkspaceState.load((self.root / "states" / name).read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            return None

    def remember_state(self, state: WorkspaceState) -> str:
        """Keep a state by its fingerprint (for "what changed since you approved"); returns it."""
        fingerprint = state.fingerprint
        self.save_state(state, f"fp-{fingerprint}")
        return fingerprint

    def list_changes(self, old: WorkspaceState, new: WorkspaceState) -> tuple[list[FileChange], str | None]:
        """What differs between two states, each marked when git ignores it; and why the marks
        could not be worked out, if they could not (the list itself is then still complete)."""
        changes = state_changes(old, new)
        try:
            ignored = self.ignored_paths([p.rstrip("/") for _s, p in changes], new)
            error = None
        except (GitError, OSError, subprocess.SubprocessError) as exc:
            ignored, error = set(), f"could not tell which of these files git ignores: {exc}"
        return [FileChange(s, p, p.rstrip("/") in ignored) for s, p in changes], error

    def ignored_paths(self, paths: list[str], state: WorkspaceState) -> set[str]:
        """The paths among `paths` that never reach a commit: ignored by git (the repository's
        ignore files and devagent's default excludes) or inside a nested repository."""
        if not paths:
            return set()
        special = state.special_git_files()
        if special:
            raise GitError(f"{quote_path(special[0])} is not a regular file (a FIFO, socket or device); "
                           "git would wait forever reading it")
        nested = tuple(n + "/" for n in state.nested)
        ignored = {p for p in paths if p.startswith(nested) or p in state.nested}
        query = [p for p in paths if p not in ignored and not _beyond_symlink(p, state)]
        if not query:
            return ignored
        out = self.git_with_input(["check-ignore", "--verbose", "--non-matching", "-z", "--stdin"],
                                  b"\0".join(os.fsencode(p) for p in query) + b"\0", ok_status=(0, 1), timeout=60)
        fields = out.split(b"\0")
        for i in range(0, len(fields) - 3, 4):
            pattern, path = fields[i + 2], fields[i + 3]
            if pattern and not pattern.startswith(b"!"):
                ignored.add(os.fsdecode(path))
        return ignored

    @property
    def base_commit(self) -> str:
        return self.git("config", "devagent.base").strip()

    def diff(self, stat: bool = False) -> str:
        """What the branch (plus uncommitted work) changes against where the thread started."""
        args = ["diff", "--no-ext-diff", "--no-textconv", "--ignore-submodules=dirty",
                "--stat" if stat else "--patch", self.base_commit]
        return self.git(*args)

    def log(self) -> str:
        return self.git("log", "--oneline", f"{self.base_commit}..HEAD")

    def apply_to(self, target_repo: Path) -> str:
        """Merge the thread's branch into the user's current branch. Refuses a dirty checkout."""
        self.check_metadata()
        ident = _user_identity(target_repo)
        run = lambda *a, check=True: safe_git(*a, cwd=target_repo, identity=ident, check=check)  # noqa: E731
        dirty = run("status", "--porcelain", "--untracked-files=no").strip()
        if dirty:
            raise GitError(
                f"{target_repo} has uncommitted changes ({count(len(dirty.splitlines()), 'file')}); "
                "commit or stash them, then run apply again"
            )
        self._fetch_into(target_repo, run)
        head = run("rev-parse", "FETCH_HEAD").strip()
        if self._is_ancestor(run, head):
            raise AlreadyMerged(f"{self.branch} is already merged into {target_repo}; nothing changed")
        try:
            run("merge", "--no-ff", "--no-edit", "--no-verify", "-m",
                f"Merge devagent thread {self.thread_id}", "FETCH_HEAD")
        except GitError:
            conflicts = run("diff", "--name-only", "--diff-filter=U", check=False).split()
            run("merge", "--abort", check=False)
            self.checkout_to(target_repo)
            raise GitError(
                f"merging {self.branch} conflicts with your branch in {', '.join(conflicts) or 'some files'}; "
                f"your branch is unchanged. The thread is now the local branch {self.branch}: "
                f"merge it by hand with `git merge {self.branch}`"
            ) from None
        return run("rev-parse", "HEAD").strip()

    def checkout_to(self, target_repo: Path) -> str:
        """Bring the thread's branch into the user's repository as the local branch
        `devagent/<id>` (updated if it exists), without touching their checkout. Returns its commit."""
        run = lambda *a, check=True: safe_git(*a, cwd=target_repo, check=check)  # noqa: E731
        self.check_metadata()
        if run("symbolic-ref", "--quiet", "HEAD", check=False).strip() == f"refs/heads/{self.branch}":
            raise GitError(f"{self.branch} is checked out in {target_repo}; switch to another branch first")
        self._fetch_into(target_repo, run, f"+refs/heads/{self.branch}:refs/heads/{self.branch}")
        return run("rev-parse", f"refs/heads/{self.branch}").strip()

    def _fetch_into(self, target_repo: Path, run: Any, refspec: str | None = None) -> None:
        # The thread's repository is owned by the sandbox uid; the upload-pack git spawns for a
        # local fetch does not inherit -c options, so it gets safe.directory explicitly.
        run("fetch", "--quiet", "--no-tags", "--upload-pack=git -c safe.directory=* upload-pack",
            str(self.git_dir), refspec or f"refs/heads/{self.branch}")

    @staticmethod
    def _is_ancestor(run: Any, commit: str) -> bool:
        try:
            run("merge-base", "--is-ancestor", commit, "HEAD")
            return True
        except GitError:
            return False

    def undo_last_turn(self) -> str:
        """Reset the thread's branch and checkout to before its last commit (one turn). Returns the
        subject of the commit undone. Ignored files (environments, caches) are left as they are."""
        self.check_metadata()
        head = self.git("rev-parse", "HEAD").strip()
        if head == self.base_commit:
            raise GitError("the thread has no turn to undo: its branch is where it started")
        subject = self.git("log", "-1", "--format=%s", head).strip()
        self.git("reset", "--quiet", "--hard", f"{head}~1")
        self.git("clean", "--quiet", "-d", "--force")  # files the undone turn added (not ignored ones)
        return subject


def _beyond_symlink(path: str, state: WorkspaceState) -> bool:
    parts = path.split("/")
    return any((e := state.entries.get("/".join(parts[:i]))) is not None and e[0] != "d"
               for i in range(1, len(parts)))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def uncommitted_changes(repo: Path) -> list[tuple[str, str]]:
    """(path, kind) of every file in `repo`'s working tree that differs from HEAD: kind "modified"
    (staged or not, deleted included) or "untracked" (not ignored). Plain git, no hooks."""
    out = safe_git("status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames",
                   "--ignore-submodules=all", cwd=repo)
    found = []
    for entry in out.split("\0"):
        if len(entry) > 3:
            found.append((entry[3:], "untracked" if entry[:2] == "??" else "modified"))
    return found


def _user_identity(repo: Path) -> dict[str, str]:
    """The user's own name/email for the merge commit (read, never executed from their config)."""
    import git

    reader = git.Repo(repo).config_reader()
    return {
        "name": reader.get_value("user", "name", GIT_IDENTITY["name"]),
        "email": reader.get_value("user", "email", GIT_IDENTITY["email"]),
    }


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    if os.getuid() != 0:
        return
    for dirpath, dirnames, filenames in os.walk(root):
        os.chown(dirpath, uid, gid)
        for name in filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


# ---------------------------------------------------------------------------- workspace state
#
# The approval binds the state of the work tree the human saw. A state is every path under the
# work tree except the thread's own `.git` mount point -- ignored files, nested repositories and
# empty directories included -- with its kind, permission bits and a SHA-256 of its content (the
# target for a symlink). Its fingerprint is a SHA-256 over all of that. Files are hashed again only
# when their stat signature changed; ctime is part of the signature because no unprivileged
# process can set it back, and a file modified within the last second is never taken from the
# cache (the granularity of the kernel's clock could hide a second write).

_RACY_NS = 1_000_000_000
_CHUNK = 1 << 20


# An entry is (kind, permission bits, digest): kind f(ile) l(ink) d(ir) o(ther: FIFO, socket,
# device); digest the SHA-256 of the content or link target, "" for directories and others, and
# "?size:mtime:ctime" for a file devagent could not read.
Entry = tuple[str, int, str]


@dataclass
class WorkspaceState:
    entries: dict[str, Entry]
    unreadable: list[str] = field(default_factory=list)  # paths devagent could not read
    nested: list[str] = field(default_factory=list)  # directories holding their own .git
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            h = hashlib.sha256()
            entries = self.entries
            h.update("".join(f"{p}\0{entries[p][0]}{entries[p][1]:o}\0{entries[p][2]}\n"
                             for p in sorted(entries)).encode("utf-8", "surrogateescape"))
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def dump(self) -> bytes:
        return marshal.dumps((1, self.entries, self.unreadable, self.nested))

    @classmethod
    def load(cls, data: bytes) -> WorkspaceState:
        version, entries, unreadable, nested = marshal.loads(data)
        if version != 1 or not isinstance(entries, dict):
            raise ValueError("unknown state format")
        return cls(entries, unreadable, nested)

    def special_git_files(self) -> list[str]:
        """Files git reads (.gitignore, ...) that are FIFOs, sockets or devices: git would block."""
        return sorted(p for p, e in self.entries.items()
                      if e[0] == "o" and p.rsplit("/", 1)[-1] in GIT_READS)


class FileChange(str):
    """One line of "files changed since the last command": `M Makefile`, `A .env (ignored)`.

    A str (what the screen prints), with the parts for JSON. The path is quoted the way
    `git status` quotes it when it holds a newline, a control character or invalid UTF-8, so a
    file name can never pass for a second line of the list.
    """

    status: str
    path: str
    ignored: bool

    def __new__(cls, status: str, path: str, ignored: bool = False) -> FileChange:
        obj = super().__new__(cls, f"{status} {quote_path(path)}" + (" (ignored)" if ignored else ""))
        obj.status, obj.path, obj.ignored = status, path, ignored
        return obj

    def to_json(self) -> dict:
        return {"status": self.status, "path": quote_path(self.path),
                "ignored": self.ignored}


def quote_path(path: str) -> str:
    """`path` as is, or quoted like `git status` does when it holds a control character, a quote,
    a backslash or bytes that are not UTF-8 (shown as octal escapes)."""
    if not any(ord(c) < 0x20 or c in '"\\\x7f' or 0xDC80 <= ord(c) <= 0xDCFF for c in path):
        return path
    named = {"\n": "\\n", "\t": "\\t", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
    out = []
    for c in path:
        if c in named:
            out.append(named[c])
        elif 0xDC80 <= ord(c) <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
            out.append(f"\\{ord(c) - 0xDC00:03o}")
        elif ord(c) < 0x20 or c == "\x7f":
            out.append(f"\\{ord(c):03o}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _hash_file(path: str, st: os.stat_result) -> tuple[str, os.stat_result]:
    """SHA-256 of a regular file, opened without following links or blocking on a FIFO swapped in."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise OSError(f"{path} changed while it was read")
        h = hashlib.sha256()
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
        return h.hexdigest(), opened
    finally:
        os.close(fd)


def scan_tree(root: Path, cache: dict[str, tuple] | None = None) -> tuple[WorkspaceState, dict[str, tuple], bool]:
    """Walk `root` (its top-level `.git` excluded) into a WorkspaceState. Returns the state, the
    new stat cache, and whether that cache differs from the one given."""
    old = cache or {}
    new_cache: dict[str, tuple] = {}
    entries: dict[str, Entry] = {}
    unreadable: list[str] = []
    nested: list[str] = []
    hashed = 0
    racy_before = time.time_ns() - _RACY_NS
    base = str(root)
    stack: list[str] = [""]
    S_ISDIR, S_ISLNK, S_ISREG, S_IMODE = stat.S_ISDIR, stat.S_ISLNK, stat.S_ISREG, stat.S_IMODE
    while stack:
        rel_dir = stack.pop()
        prefix = rel_dir + "/" if rel_dir else ""
        try:
            with os.scandir(base + "/" + rel_dir if rel_dir else base) as it:
                children = list(it)
        except OSError:
            unreadable.append(prefix)
            continue
        for child in children:
            name = child.name
            if name == ".git":
                if not rel_dir:
                    continue  # the thread's repository (mounted read-only in the container)
                nested.append(rel_dir)
            path = prefix + name
            try:
                st = child.stat(follow_symlinks=False)
            except OSError:
                continue  # deleted while walking
            mode = st.st_mode
            if S_ISREG(mode):
                sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, mode)
                cached = old.get(path)
                if cached is not None and cached[0] == sig:
                    digest = cached[1]
                else:
                    hashed += 1
                    try:
                        digest, st = _hash_file(child.path, st)
                        sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
                    except OSError:
                        unreadable.append(path)
                        digest = f"?{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
                if digest[0] != "?" and st.st_mtime_ns < racy_before and st.st_ctime_ns < racy_before:
                    new_cache[path] = (sig, digest)
                entries[path] = ("f", S_IMODE(st.st_mode), digest)
            elif S_ISDIR(mode):
                entries[path] = ("d", S_IMODE(mode), "")
                stack.append(path)
            elif S_ISLNK(mode):
                try:
                    target = os.readlink(child.path)
                except OSError:
                    continue
                entries[path] = ("l", 0o777, hashlib.sha256(os.fsencode(target)).hexdigest())
            else:
                entries[path] = ("o", mode, "")
    changed = hashed > 0 or len(new_cache) != len(old)
    return WorkspaceState(entries, sorted(unreadable), sorted(nested)), new_cache, changed


def state_changes(old: WorkspaceState, new: WorkspaceState) -> list[tuple[str, str]]:
    """(status, path) for every path that differs, files before the directories holding them.

    A directory is listed only when nothing listed lies under it (an empty directory added, or a
    directory's permissions changed), so a new tree of files is not listed twice.
    """
    changes: list[tuple[str, str]] = []
    for path in sorted(set(old.entries) | set(new.entries)):
        before, after = old.entries.get(path), new.entries.get(path)
        if before == after:
            continue
        if before is None:
            status = "A"
        elif after is None:
            status = "D"
        elif before[0] != after[0]:
            status = "T"
        else:
            status = "M"
        changes.append((status, path))
    listed_dirs = {p for s, p in changes if (new.entries.get(p) or old.entries.get(p))[0] == "d"}
    covered = set()
    for _s, p in changes:
        parts = p.split("/")
        for i in range(1, len(parts)):
            covered.add("/".join(parts[:i]))
    return [(s, p + "/" if p in listed_dirs else p) for s, p in changes
            if not (p in listed_dirs and p in covered)]
