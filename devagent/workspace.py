"""Git for threads: a private checkout per thread on branch `devagent/<id>`, turn commits, diff,
apply and discard.

Layout under DEVAGENT_HOME/threads/<id>/:  `workspace/` (the work tree, mounted at /workspace)
and `git/` (the repository, mounted read-only at /workspace/.git). The sandbox can therefore never
write hooks or config into the repository that host-side git uses, and every host-side git
command below additionally runs with hooks off and without system/global config, so nothing the
agent wrote (.gitattributes filters, fsmonitor, includes) can make the host run code.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

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
             extra_env: dict[str, str] | None = None) -> str:
    """Run git through GitPython with the protections above. Returns stdout."""
    import git  # GitPython; deferred so the CLI's fast paths stay fast

    ident = identity or GIT_IDENTITY
    argv = ["git", *SAFE_GIT_OPTIONS]
    if git_dir is not None:
        argv += [f"--git-dir={git_dir}"]
    if work_tree is not None:
        argv += [f"--work-tree={work_tree}"]
    argv += list(args)
    try:
        return git.Git(str(cwd)).execute(
            argv, env={**_safe_env(ident["name"], ident["email"]), **(extra_env or {})},
            strip_newline_in_stdout=False,
        )
    except git.GitCommandError as exc:
        if not check:
            return ""
        lines = [line.strip(" '") for line in (exc.stderr or "").replace("stderr: ", "").splitlines() if line.strip(" '")]
        fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
        message = (fatal or lines or [f"exit status {exc.status}"])[0]
        raise GitError(f"git {args[0]} failed: {message}") from None


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

    @property
    def work_dir(self) -> Path:
        return self.root / "workspace"

    @property
    def git_dir(self) -> Path:
        return self.root / "git"

    @property
    def branch(self) -> str:
        return f"devagent/{self.thread_id}"

    def git(self, *args: str, check: bool = True, extra_env: dict[str, str] | None = None) -> str:
        self.check_metadata()
        return safe_git(*args, cwd=self.root, git_dir=self.git_dir, work_tree=self.work_dir,
                        check=check, extra_env=extra_env)

    def check_metadata(self) -> None:
        """Refuse a thread repository whose config holds anything devagent did not write."""
        if (self.git_dir / "commondir").exists():
            raise GitError(f"{self.git_dir} was modified outside devagent (a commondir file); "
                           "refusing to run git on it")
        config = self.git_dir / "config"
        if not config.is_file():
            return
        names = safe_git("config", "--file", str(config), "--no-includes", "--name-only", "--list", "-z",
                         cwd=self.root)
        planted = sorted({n for n in names.split("\0") if n and n.lower() not in THREAD_CONFIG_KEYS
                          and not n.lower().startswith("devagent.")})
        if planted:
            raise GitError(f"{config} was modified outside devagent ({', '.join(planted)}); "
                           "refusing to run git on this thread")

    # -- lifecycle

    def create(self, source_repo: Path, owner: tuple[int, int] | None = None) -> str:
        """Clone the user's repo at HEAD onto a new branch. Returns the base commit."""
        self.root.mkdir(parents=True, exist_ok=True)
        base = safe_git("rev-parse", "HEAD", cwd=source_repo).strip()
        safe_git("init", "--quiet", "--template=", f"--separate-git-dir={self.git_dir}",
                 str(self.work_dir), cwd=self.root)
        # `init --separate-git-dir` leaves a `.git` file pointing at the repo; the container gets
        # the repo mounted there instead, so the work tree holds only an empty mount point.
        (self.work_dir / ".git").unlink()
        (self.work_dir / ".git").mkdir()
        self.git("fetch", "--quiet", "--no-tags", str(source_repo), f"{base}:refs/heads/{self.branch}")
        self.git("symbolic-ref", "HEAD", f"refs/heads/{self.branch}")
        self.git("checkout", "--quiet", "--force", self.branch)
        self.git("config", "devagent.base", base)
        if owner is not None:
            _chown_tree(self.root, *owner)
        return base

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
        self.git("commit", "--quiet", "--no-verify", "--no-gpg-sign", "-m", message)
        return self.git("rev-parse", "HEAD").strip()

    def snapshot(self) -> str:
        """A tree id for the current state of the work tree, without touching the real index."""
        env = {"GIT_INDEX_FILE": str(self.root / "snapshot.index")}
        self._add_all(env)
        return self.git("write-tree", extra_env=env).strip()

    def _add_all(self, env: dict[str, str] | None = None) -> None:
        """Stage the whole work tree except repositories nested in it (tracked gitlinks, and any
        repository a command created): `git add` would run `git status` inside them, under
        config (filters, fsmonitor) that the sandbox wrote."""
        staged = self.git("ls-files", "-z", "--stage", extra_env=env).split("\0")
        nested = [e.split("\t", 1)[1] for e in staged if e.startswith("160000 ")]
        untracked = self.git("ls-files", "-z", "--others", "--exclude-standard", extra_env=env).split("\0")
        nested += [path.rstrip("/") for path in untracked if path.endswith("/")]
        self.git("add", "--all", "--", ".", *[f":(exclude,literal){path}" for path in nested], extra_env=env)

    def changed_between(self, old_tree: str, new_tree: str) -> list[str]:
        if old_tree == new_tree:
            return []
        out = self.git("diff", "--name-status", "--no-renames", "--no-ext-diff", "--no-textconv",
                       old_tree, new_tree)
        return [line.replace("\t", " ", 1) for line in out.splitlines() if line.strip()]

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
                f"{target_repo} has uncommitted changes ({len(dirty.splitlines())} file(s)); "
                "commit or stash them, then run apply again"
            )
        # The thread's repository is owned by the sandbox uid; the upload-pack git spawns for a
        # local fetch does not inherit -c options, so it gets safe.directory explicitly.
        run("fetch", "--quiet", "--no-tags", "--upload-pack=git -c safe.directory=* upload-pack",
            str(self.git_dir), f"refs/heads/{self.branch}")
        try:
            run("merge", "--no-ff", "--no-edit", "--no-verify", "-m",
                f"Merge devagent thread {self.thread_id}", "FETCH_HEAD")
        except GitError:
            conflicts = run("diff", "--name-only", "--diff-filter=U", check=False).split()
            run("merge", "--abort", check=False)
            raise GitError(
                f"merging {self.branch} conflicts with your branch in {', '.join(conflicts) or 'some files'}; "
                "nothing was changed. Resolve by continuing the thread, or merge by hand"
            ) from None
        return run("rev-parse", "HEAD").strip()


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
