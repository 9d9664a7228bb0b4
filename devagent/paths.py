"""Confine every file tool to the workspace checkout.

Paths come from a model and the workspace is writable from inside a container,
so symlinks in it may point anywhere and change at any moment.  `resolve`
checks the fully resolved real path; every open then walks that path from a
root descriptor with O_NOFOLLOW, so a symlink swapped in after the check makes
the open fail instead of escaping.  Errors are one-line messages for the model.
"""
from __future__ import annotations

import codecs
import errno
import fnmatch
import os
import stat
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


class PathOutsideWorkspace(ValueError):
    """The path names something file tools must not touch."""


class FileToolError(ValueError):
    """A file operation failed for a reason the model can act on."""


_HINT = "use a path relative to the workspace root"
_GIT_MSG = ("'.git' is off limits: the repository's metadata cannot be read "
            "or written by file tools (path {!r})")
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted in the workspace must not hang the agent.
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_ERRNO_MSG = {errno.ENOENT: "no such file: {}", errno.EISDIR: "{} is a directory, not a file",
              errno.ENOTDIR: "{}: a parent component is not a directory",
              errno.EACCES: "permission denied: {}", errno.EPERM: "permission denied: {}",
              errno.ELOOP: "refusing to follow a symlink: {}",
              errno.ENAMETOOLONG: "path is too long: {}"}


def _is_git(part: str) -> bool:
    # Case-insensitive filesystems may also ignore format characters (HFS+)
    # or trailing dots/spaces, and accept 8.3 short names (NTFS).
    part = "".join(c for c in part if unicodedata.category(c) != "Cf")
    return part.casefold().rstrip(". ") in (".git", "git~1")


@contextmanager
def _translated(rel: str):
    """Turn OSError into a one-line FileToolError without "[Errno N]" noise."""
    try:
        yield
    except OSError as e:
        msg = _ERRNO_MSG.get(e.errno, "cannot access {}: " + os.strerror(e.errno or 0))
        raise FileToolError(msg.format(repr(rel))) from None


def _check_regular(rel: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise FileToolError(f"{rel!r} is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise FileToolError(f"{rel!r} is not a regular file")


_CHUNK = 64 * 1024


@dataclass(frozen=True)
class TextWindow:
    """Lines first_line..last_line of a file, as much of them as fit the read limit."""
    text: str
    first_line: int
    last_line: int
    # "line": stopped before line last_line+1 for the limit; "mid-line": line last_line alone is
    # longer than the limit and only its head is in `text`; "": the range (or the file) ended.
    cut: str
    bytes_after: int  # bytes of the file after what `text` holds

    def note(self) -> str:
        """What the reader is told about the rest ("" when nothing was left out)."""
        if self.cut == "line":
            return (f"\n[... truncated at the read limit: lines {self.first_line}-{self.last_line} shown; "
                    f"{self.bytes_after} more bytes in the file; continue with start_line={self.last_line + 1} ...]")
        if self.cut == "mid-line":
            return (f"\n[... truncated at the read limit: line {self.last_line} alone is longer; "
                    f"{self.bytes_after} more bytes in the file; use run_shell (e.g. cut, head -c) to see more ...]")
        return ""


# How far read_file looks for the start of a line before giving up: a start_line deep in a huge
# file (or in one long line, e.g. a sparse file) costs at most this much reading, never the file.
SKIP_LIMIT = 256 * 1024 * 1024


def _skip_lines(f: BinaryIO, count: int, limit: int) -> tuple[int, int, bool] | None:
    """Skip `count` lines from the start of `f`, counting newlines a chunk at a time (no work per
    line): (lines skipped, bytes skipped, whether the last byte read ended a line), with `f` at
    the start of the next line; None when more than `limit` bytes would have to be read."""
    skipped = consumed = 0
    ended = True
    while skipped < count:
        chunk = f.read(_CHUNK)
        if not chunk:
            break
        newlines = chunk.count(b"\n")
        if skipped + newlines < count:
            skipped += newlines
            consumed += len(chunk)
            ended = chunk.endswith(b"\n")
            if consumed >= limit:
                return None
            continue
        pos = -1
        for _ in range(count - skipped):
            pos = chunk.index(b"\n", pos + 1)
        consumed += pos + 1
        skipped, ended = count, True
        f.seek(consumed)
    return skipped, consumed, ended


def _pieces(f: BinaryIO) -> Iterator[tuple[bytes, bool]]:
    """The file as (bytes, ends_a_line) pieces of at most _CHUNK bytes: memory stays flat
    whatever the length of a line."""
    while chunk := f.read(_CHUNK):
        pos = 0
        while (nl := chunk.find(b"\n", pos)) != -1:
            yield chunk[pos:nl + 1], True
            pos = nl + 1
        if pos < len(chunk):
            yield chunk[pos:], False


class FileList(list):
    """Relative paths; `omitted` counts matches left out by the cap."""
    omitted: int = 0


class WorkspacePaths:
    def __init__(self, root: os.PathLike | str, owner: tuple[int, int] | None = None):
        # `owner`: uid/gid given to every file and directory this writes (devagent running as
        # root hands what it writes to the sandbox's unprivileged uid).
        self._owner = owner
        self.root = Path(os.path.realpath(root))
        if not self.root.is_dir():
            raise ValueError(f"workspace root is not a directory: {root}")
        self._root = str(self.root)

    def _parts_inside(self, real: str) -> list[str] | None:
        """Components of `real` below the root, or None if outside it."""
        if real == self._root:
            return []
        prefix = self._root.rstrip(os.sep) + os.sep
        return real[len(prefix):].split(os.sep) if real.startswith(prefix) else None

    def resolve(self, rel: str) -> Path:
        """Absolute real path of `rel` with all symlinks followed ("" and "."
        are the root).  Raises PathOutsideWorkspace unless it stays inside."""
        if not isinstance(rel, str):
            raise PathOutsideWorkspace(f"path must be a string, got {type(rel).__name__}")
        if "\0" in rel:
            raise PathOutsideWorkspace("path contains a NUL byte")
        if rel.startswith("~"):
            raise PathOutsideWorkspace(f"'~' home paths are not allowed: {_HINT}")
        if os.path.isabs(rel):
            raise PathOutsideWorkspace(f"absolute paths are not allowed: {_HINT}")
        depth = 0  # ".." may never climb above the root, not even midway
        for part in rel.split("/"):
            depth += -1 if part == ".." else part not in ("", ".")
            if depth < 0:
                raise PathOutsideWorkspace(f"path {rel!r} resolves outside the workspace")
        real = os.path.realpath(os.path.join(self._root, rel))
        parts = self._parts_inside(real)
        if parts is None:
            raise PathOutsideWorkspace(
                f"path {rel!r} resolves outside the workspace (through a symlink)")
        # Checked on the path as written and as resolved: ".git" may also be
        # reached through ".." or a symlink.
        if any(_is_git(p) for p in rel.split("/") + parts):
            raise PathOutsideWorkspace(_GIT_MSG.format(rel))
        return Path(real)

    def relative(self, p: os.PathLike | str) -> str:
        """Posix path of `p` relative to the root ("." for the root)."""
        parts = self._parts_inside(os.path.realpath(p))
        if parts is None:
            raise PathOutsideWorkspace(f"path {str(p)!r} resolves outside the workspace")
        return "/".join(parts) or "."

    def _open_dir(self, parts: list[str], create: bool = False) -> int:
        """Descriptor of root/parts, walked without following any symlink."""
        fd = os.open(self._root, _DIR)
        try:
            for part in parts:
                created = False
                if create:
                    with suppress(FileExistsError):
                        os.mkdir(part, 0o777, dir_fd=fd)
                        created = True
                nxt = os.open(part, _DIR, dir_fd=fd)
                os.close(fd)
                fd = nxt
                if created and self._owner is not None:
                    os.fchown(fd, *self._owner)
            return fd
        except BaseException:
            os.close(fd)
            raise

    @contextmanager
    def _open_file(self, rel: str) -> Iterator[BinaryIO]:
        """The regular file `rel`, opened for reading without following any symlink."""
        parts = self._parts_inside(str(self.resolve(rel)))
        if not parts:
            raise FileToolError(f"{rel!r} is a directory, not a file")
        with _translated(rel):
            dfd = self._open_dir(parts[:-1])
            try:
                fd = os.open(parts[-1], _FILE, dir_fd=dfd)
            finally:
                os.close(dfd)
            with os.fdopen(fd, "rb") as f:
                _check_regular(rel, os.fstat(fd).st_mode)
                yield f

    def read_bytes(self, rel: str, limit: int | None = None) -> bytes:
        """At most `limit` bytes (everything if None) of the regular file `rel`."""
        with self._open_file(rel) as f, _translated(rel):
            return f.read() if limit is None else f.read(max(limit, 0))

    def read_text(self, rel: str, start_line: int | None = None,
                  end_line: int | None = None) -> str:
        """UTF-8 text of `rel`, optionally only lines start_line..end_line
        (1-based, inclusive).  Line endings are returned as stored."""
        if start_line is None and end_line is None:
            try:
                return self.read_bytes(rel).decode("utf-8")
            except UnicodeDecodeError:
                raise FileToolError(f"{rel!r} is not UTF-8 text (binary file?)") from None
        return self.read_window(rel, start_line, end_line, limit=None).text

    def read_window(self, rel: str, start_line: int | None = None, end_line: int | None = None,
                    limit: int | None = 64 * 1024) -> TextWindow:
        """Lines start_line..end_line (1-based, inclusive; lines end at "\\n") of `rel`, whole
        lines up to `limit` bytes (a longer first line is cut at the limit).

        Reads the file only up to the end of what it returns (lines before start_line are
        skipped in chunks), so memory and work are bounded by `limit`, not by the file's size.
        Only what is returned must be UTF-8.
        """
        start = 1 if start_line is None else start_line
        if start < 1 or (end_line is not None and end_line < start):
            raise FileToolError(f"invalid line range {start}-{end_line} for {rel!r}: lines are "
                                "numbered from 1 and the range must not end before it starts")
        with self._open_file(rel) as f, _translated(rel):
            size = os.fstat(f.fileno()).st_size
            line, consumed, ended = 1, 0, True
            if start > 1:
                skipped = _skip_lines(f, start - 1, SKIP_LIMIT)
                if skipped is None:
                    raise FileToolError(
                        f"line {start} of {rel!r} is not within its first {SKIP_LIMIT >> 20} MiB; read_file does not "
                        f"read further to find a line: use search, or run_shell (e.g. sed -n '{start}p')")
                line, consumed, ended = 1 + skipped[0], skipped[1], skipped[2]
            out, cut, line_at = bytearray(), "", 0  # line_at: where the current line starts in out
            for piece, ends in _pieces(f):
                if line >= start:
                    if end_line is not None and line > end_line:
                        break
                    if ended:
                        line_at = len(out)
                    room = len(piece) if limit is None else limit - len(out)
                    if len(piece) > room:
                        if line_at:  # the window holds whole lines: stop before this one
                            consumed -= len(out) - line_at
                            del out[line_at:]
                            cut = "line"
                            break
                        piece, ends, cut = piece[:room], False, "mid-line"
                    out += piece
                consumed += len(piece)
                ended = ends
                if cut:
                    break
                if ends:
                    line += 1
            lines_seen = line - 1 + (0 if ended else 1)
        if start > max(lines_seen, 1):
            raise FileToolError(f"invalid line range {start}-{end_line} for {rel!r}: it has "
                                f"{lines_seen} lines, numbered from 1")
        try:
            text = codecs.getincrementaldecoder("utf-8")().decode(bytes(out), final=cut != "mid-line")
        except UnicodeDecodeError:
            raise FileToolError(f"{rel!r} is not UTF-8 text (binary file?)") from None
        last = line if cut == "mid-line" or (not cut and not ended) else line - 1
        return TextWindow(text, start, max(last, start), cut, max(size - consumed, 0))

    def write_text(self, rel: str, content: str) -> None:
        """Atomically create or replace `rel` with UTF-8 `content`, creating
        parent directories.  Never writes through a symlink."""
        self.resolve(rel)  # full policy check, including the final component
        head, name = os.path.split(rel)
        if name in ("", ".", ".."):
            raise FileToolError(f"{rel!r} is a directory, not a file")
        parts = self._parts_inside(str(self.resolve(head)))
        try:
            data = content.encode("utf-8")
        except UnicodeEncodeError:
            raise FileToolError("content is not valid UTF-8 text (lone surrogate?)") from None
        with _translated(rel):
            dfd = self._open_dir(parts, create=True)
            tmp = f".{name[:100]}.{os.urandom(6).hex()}.tmp"
            try:
                mode = self._existing_mode(dfd, rel, name)
                fd = os.open(tmp, _NEW, 0o666 if mode is None else 0o600, dir_fd=dfd)
                if self._owner is not None:
                    os.fchown(fd, *self._owner)  # by descriptor: no path a command could swap
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    if mode is not None:
                        os.fchmod(fd, mode)
                    f.flush()
                    os.fsync(fd)
                # rename() replaces a symlink that raced in; it never follows it.
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                with suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)
                raise
            finally:
                os.close(dfd)

    @staticmethod
    def _existing_mode(dfd: int, rel: str, name: str) -> int | None:
        """Permission bits of the file being replaced; None if it is new."""
        try:
            fd = os.open(name, _FILE, dir_fd=dfd)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise FileToolError(f"refusing to write through a symlink: {rel!r}") from None
            raise
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        _check_regular(rel, st.st_mode)
        return stat.S_IMODE(st.st_mode)

    def edit_text(self, rel: str, old: str, new: str) -> int:
        """Replace the single occurrence of `old` with `new`; returns the
        1-based line number where the replaced text started."""
        if not old:
            raise FileToolError("old text must not be empty")
        text = self.read_text(rel)
        count, shown = text.count(old), rel if rel.isprintable() else repr(rel)
        if count == 0:
            raise FileToolError(f"old text not found in {shown}")
        if count > 1:
            raise FileToolError(f"old text occurs {count} times in {shown}; "
                                "include more context to make it unique")
        at = text.index(old)
        self.write_text(rel, text[:at] + new + text[at + len(old):])
        return text.count("\n", 0, at) + 1

    def iter_files(self, rel: str = ".", pattern: str | None = None,
                   limit: int = 2000) -> FileList:
        """Sorted files under `rel`, relative to the root.  `pattern` is an
        fnmatch glob on that path ("*.py", "src/**/*.sql"; "**/" may match no
        directory; a glob without "/" also matches the bare name).  Directory
        symlinks are never descended; file symlinks are listed only if they
        resolve inside.  Past `limit`, a final note says how many were cut."""
        top = self.resolve(rel)
        if not top.is_dir():
            raise FileToolError(f"not a directory: {rel!r}")
        globs = () if pattern is None else {pattern, pattern.replace("**/", "")}
        matches = []
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            dirnames[:] = [d for d in dirnames if not _is_git(d)]
            base = self._parts_inside(dirpath)
            for fn in filenames if base is not None else ():
                relpath = "/".join(base + [fn])
                if globs and not any(fnmatch.fnmatchcase(relpath, g) or
                                     ("/" not in g and fnmatch.fnmatchcase(fn, g))
                                     for g in globs):
                    continue
                if os.path.islink(os.path.join(dirpath, fn)):
                    try:
                        if not self.resolve(relpath).is_file():
                            continue  # dangling, or not a regular file
                    except PathOutsideWorkspace:
                        continue
                matches.append(relpath)
        matches.sort()
        result = FileList(matches[:limit])
        result.omitted = len(matches) - len(result)
        if result.omitted:
            result.append(f"... {result.omitted} more files not listed "
                          "(narrow the directory or pattern)")
        return result
