"""Project instructions for the model: `AGENTS.md` files of the checkout, plus `--instructions FILE`.

As in other coding agents, `AGENTS.md` at the repository root applies everywhere, and an
`AGENTS.md` deeper in the tree applies to the files under its directory (the nearest one wins
where they disagree). The files are read from the thread's checkout through `WorkspacePaths`, so a
symlink planted there cannot make devagent read anything outside the workspace. Sizes are capped:
instructions are advice to the model, never permissions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from devagent.errors import UsageError
from devagent.paths import FileToolError, PathOutsideWorkspace, WorkspacePaths

FILE_NAME = "AGENTS.md"
MAX_FILE_BYTES = 32 * 1024
MAX_FILES = 20
# Directories that hold dependencies or caches, never project instructions; skipping them keeps
# the walk cheap on big checkouts.
_SKIPPED_DIRS = frozenset({".git", "node_modules", ".venv", "venv", "__pycache__", ".mypy_cache",
                           ".pytest_cache", ".tox", "target", "dist", "build", ".cache"})


@dataclass(frozen=True)
class InstructionFile:
    label: str  # where it came from, as shown to the user and the model
    scope: str  # "" for the whole repository, else the directory it applies to
    text: str


def project_instruction_files(work_dir: Path) -> list[InstructionFile]:
    """Every AGENTS.md of the checkout, root first, then by depth; at most MAX_FILES."""
    paths = WorkspacePaths(work_dir)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(work_dir, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS)
        if FILE_NAME in filenames:
            rel = os.path.relpath(os.path.join(dirpath, FILE_NAME), work_dir)
            found.append(Path(rel).as_posix())
    found.sort(key=lambda rel: (rel.count("/"), rel))
    files = []
    for rel in found[:MAX_FILES]:
        try:
            data = paths.read_bytes(rel, MAX_FILE_BYTES + 1)
        except (FileToolError, PathOutsideWorkspace, OSError):
            continue  # a symlink leading outside, a directory named AGENTS.md, ...
        text = data[:MAX_FILE_BYTES].decode("utf-8", "replace")
        if len(data) > MAX_FILE_BYTES:
            text += f"\n[... {rel} is longer than {MAX_FILE_BYTES // 1024} KiB; the rest is not included]"
        scope = rel.rpartition("/")[0]
        files.append(InstructionFile(rel, scope, text))
    return files


def extra_instructions(path: Path) -> InstructionFile:
    """The user's `--instructions FILE` (read from the host: the user named it)."""
    try:
        data = path.expanduser().read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --instructions {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"--instructions {path} is larger than {MAX_FILE_BYTES // 1024} KiB")
    return InstructionFile(str(path), "", data.decode("utf-8", "replace"))


def instructions_block(files: list[InstructionFile]) -> str:
    """The text appended to the agent's instructions."""
    if not files:
        return ""
    parts = ["\nProject instructions follow. Follow them; where two disagree, the one whose "
             "directory is nearest to the file you work on wins."]
    for f in files:
        applies = "the whole repository" if not f.scope else f"files under {f.scope}/"
        parts.append(f"\n--- {f.label} (applies to {applies}) ---\n{f.text.rstrip()}\n--- end of {f.label} ---")
    return "\n".join(parts) + "\n"
