import os
import shutil
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devagent.paths import FileToolError, PathOutsideWorkspace, WorkspacePaths


@pytest.fixture
def layout(tmp_path):
    root = tmp_path / "ws"
    outside = tmp_path / "outside"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    (root / "src" / "pkg" / "a.py").write_text("print('a')\n")
    (root / "README.md").write_text("hello\n")
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET\n")
    return WorkspacePaths(root), root, outside


@pytest.fixture(scope="module")
def static_ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("static") / "ws"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".git").mkdir()
    return WorkspacePaths(root)


# ---- property tests over path syntax ------------------------------------

component = st.sampled_from(["..", ".", "a", "b", "", ".git", ".GIT", ".Git", "x.git",
                             ".gitignore", "~", "c d", "\x00", "ws", ".git."])
rel_paths = st.builds(lambda lead, parts: lead + "/".join(parts),
                      st.sampled_from(["", "/", "~", "~/", "./", "//"]),
                      st.lists(component, max_size=7))


def expected_refusal(rel: str) -> bool:
    if "\x00" in rel or rel.startswith(("~", "/")):
        return True
    depth = 0
    for part in rel.split("/"):
        if part.lower().rstrip(". ") == ".git":
            return True
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


@settings(max_examples=600)
@given(rel_paths)
def test_resolve_matches_model(static_ws, rel):
    if expected_refusal(rel):
        with pytest.raises(PathOutsideWorkspace) as e:
            static_ws.resolve(rel)
        assert "\n" not in str(e.value)
    else:
        p = static_ws.resolve(rel)
        assert p == static_ws.root or static_ws.root in p.parents
        assert ".git" not in [x.lower() for x in p.relative_to(static_ws.root).parts]


@given(st.text(max_size=20), st.text(max_size=20))
def test_nul_absolute_and_home_always_refused(static_ws, a, b):
    for rel in (a + "\x00" + b, "/" + a, "~" + a):
        with pytest.raises(PathOutsideWorkspace):
            static_ws.resolve(rel)


@given(st.sampled_from([".git", ".GIT", ".gIt", ".git.", ".g\u200bit"]),
       st.sampled_from(["", "a/", "a/b/", "a/../"]), st.sampled_from(["", "/config", "/x/y"]))
def test_git_in_any_case_or_position(static_ws, git, before, after):
    with pytest.raises(PathOutsideWorkspace, match="off limits"):
        static_ws.resolve(before + git + after)


def test_messages(static_ws):
    cases = {"../x": "path '../x' resolves outside the workspace",
             "/etc/passwd": "absolute paths are not allowed: use a path relative to the workspace root",
             "~/.ssh/id_rsa": "'~' home paths are not allowed",
             "a\x00b": "path contains a NUL byte",
             ".git/config": "'.git' is off limits"}
    for rel, msg in cases.items():
        with pytest.raises(PathOutsideWorkspace) as e:
            static_ws.resolve(rel)
        assert str(e.value).startswith(msg)
    assert static_ws.resolve("") == static_ws.root == static_ws.resolve(".")
    assert static_ws.relative(static_ws.resolve("a/b")) == "a/b"
    assert static_ws.relative(static_ws.root) == "."


# ---- symlinks -----------------------------------------------------------

def test_symlink_pointing_outside(layout):
    ws, root, outside = layout
    (root / "leak").symlink_to(outside / "secret.txt")
    (root / "leakdir").symlink_to(outside)
    for rel in ("leak", "leakdir/secret.txt", "leakdir/new.txt"):
        with pytest.raises(PathOutsideWorkspace, match="outside the workspace"):
            ws.read_text(rel)
    with pytest.raises(PathOutsideWorkspace):
        ws.write_text("leak", "pwned")
    assert (outside / "secret.txt").read_text() == "TOP SECRET\n"
    listed = ws.iter_files()
    assert "leak" not in listed and not any("secret" in f for f in listed)


def test_symlink_chain_to_outside(layout):
    ws, root, outside = layout
    (root / "b").symlink_to(outside / "secret.txt")
    (root / "a").symlink_to(root / "b")
    with pytest.raises(PathOutsideWorkspace):
        ws.read_text("a")
    with pytest.raises(PathOutsideWorkspace):
        ws.write_text("a", "x")
    assert (outside / "secret.txt").read_text() == "TOP SECRET\n"


def test_symlinked_parent_dir_outside_refused_for_write(layout):
    ws, root, outside = layout
    (root / "out").symlink_to(outside)
    for rel in ("out/new.txt", "out/deeper/new.txt"):
        with pytest.raises(PathOutsideWorkspace):
            ws.write_text(rel, "x")
    assert sorted(os.listdir(outside)) == ["secret.txt"]


def test_dangling_symlink_to_outside_refused(layout):
    ws, root, outside = layout
    (root / "dangling").symlink_to(outside / "nope")
    with pytest.raises(PathOutsideWorkspace):
        ws.write_text("dangling", "x")
    with pytest.raises(PathOutsideWorkspace):
        ws.write_text("dangling/sub/f.txt", "x")
    assert not (outside / "nope").exists()


def test_symlink_to_git_refused(layout):
    ws, root, _ = layout
    (root / "meta").symlink_to(root / ".git")
    (root / "cfg").symlink_to(root / ".git" / "config")
    for rel in ("meta/config", "cfg", "src/../.git/config"):
        with pytest.raises(PathOutsideWorkspace, match="off limits"):
            ws.read_text(rel)
    with pytest.raises(PathOutsideWorkspace, match="off limits"):
        ws.write_text("meta/hooks/pre-commit", "evil")
    assert not (root / ".git" / "hooks").exists()


def test_write_through_inside_symlink_refused(layout):
    ws, root, _ = layout
    (root / "alias.md").symlink_to("README.md")
    assert ws.read_text("alias.md") == "hello\n"  # reads may follow inside links
    with pytest.raises(FileToolError, match="refusing to write through a symlink"):
        ws.write_text("alias.md", "changed")
    assert (root / "README.md").read_text() == "hello\n"
    assert os.path.islink(root / "alias.md")


def test_symlink_loop_is_a_clean_error(layout):
    ws, root, _ = layout
    (root / "l1").symlink_to("l2")
    (root / "l2").symlink_to("l1")
    with pytest.raises((FileToolError, PathOutsideWorkspace)) as e:
        ws.read_text("l1")
    assert "Errno" not in str(e.value)


# ---- reading / writing / editing ------------------------------------------

def test_write_new_file_in_new_nested_dirs(layout):
    ws, root, _ = layout
    ws.write_text("new/deep/er/file.txt", "content\n")
    assert (root / "new" / "deep" / "er" / "file.txt").read_text() == "content\n"
    assert ws.read_text("new/deep/er/file.txt") == "content\n"
    assert [f for f in os.listdir(root / "new" / "deep" / "er")] == ["file.txt"]


def test_write_preserves_mode_and_is_atomic(layout):
    ws, root, _ = layout
    script = root / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o750)
    ws.write_text("run.sh", "#!/bin/sh\necho hi\n")
    assert stat.S_IMODE(script.stat().st_mode) == 0o750
    assert script.read_text() == "#!/bin/sh\necho hi\n"
    assert sorted(os.listdir(root)) == sorted([".git", "src", "README.md", "run.sh"])


def test_write_refuses_directory_and_root(layout):
    ws, _, _ = layout
    for rel in ("src", "", ".", "src/"):
        with pytest.raises(FileToolError, match="is a directory"):
            ws.write_text(rel, "x")


def test_read_errors_are_one_line_and_errno_free(layout):
    ws, root, _ = layout
    (root / "blob.bin").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(FileToolError) as e:
        ws.read_text("blob.bin")
    assert str(e.value) == "'blob.bin' is not UTF-8 text (binary file?)"
    with pytest.raises(FileToolError) as e:
        ws.read_text("missing.txt")
    assert str(e.value) == "no such file: 'missing.txt'"
    with pytest.raises(FileToolError, match="is a directory"):
        ws.read_text("src")
    with pytest.raises(FileToolError, match="is a directory"):
        ws.read_text(".")
    with pytest.raises(FileToolError):
        ws.read_text("README.md/x")
    assert ws.read_bytes("blob.bin", 4) == b"\x89PNG"


def test_read_line_ranges(layout):
    ws, root, _ = layout
    (root / "lines.txt").write_text("1\n2\r\n3\n4")
    assert ws.read_text("lines.txt", 2, 3) == "2\r\n3\n"
    assert ws.read_text("lines.txt", start_line=4) == "4"
    assert ws.read_text("lines.txt", end_line=1) == "1\n"
    assert ws.read_text("lines.txt", 3, 99) == "3\n4"
    for start, end in ((9, None), (3, 2), (0, 2), (5, 9)):
        with pytest.raises(FileToolError, match="invalid line range"):
            ws.read_text("lines.txt", start, end)
    assert ws.read_text("lines.txt", 4, 4) == "4"


def _bytes_read() -> int:
    """Bytes this process has read through read(2) and friends so far."""
    for line in open("/proc/self/io"):
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_reading_a_gibibyte_sparse_file_reads_only_what_it_returns(layout):
    ws, root, _ = layout
    with open(root / "sparse.bin", "wb") as f:
        f.truncate(1 << 30)
    before = _bytes_read()
    window = ws.read_window("sparse.bin", limit=64 * 1024)
    read = _bytes_read() - before
    assert read < 256 * 1024, f"read {read} bytes to return {len(window.text)}"
    assert window.text == "\0" * (64 * 1024)
    assert (window.first_line, window.last_line, window.cut) == (1, 1, "mid-line")
    assert window.bytes_after == (1 << 30) - 64 * 1024
    assert f"{window.bytes_after} more bytes" in window.note()


def test_a_read_window_holds_whole_lines_and_says_where_to_continue(layout):
    ws, root, _ = layout
    (root / "many.txt").write_text("".join(f"line {i:05}\n" for i in range(1, 100_001)))  # 11 bytes a line
    size = (root / "many.txt").stat().st_size
    window = ws.read_window("many.txt", limit=1105)
    assert window.text == "".join(f"line {i:05}\n" for i in range(1, 101))
    assert (window.last_line, window.cut, window.bytes_after) == (100, "line", size - 1100)
    assert "continue with start_line=101" in window.note()
    following = ws.read_window("many.txt", start_line=101, limit=1100)
    assert following.text.startswith("line 00101\n") and following.last_line == 200
    # A range that fits is returned whole, with nothing to add; the end of the file likewise.
    assert ws.read_window("many.txt", 5, 6, limit=1100).note() == ""
    tail = ws.read_window("many.txt", start_line=99_999, limit=1100)
    assert tail.text == "line 99999\nline 100000\n" and tail.note() == "" and tail.bytes_after == 0
    # Only what is shown must be UTF-8; a window never ends inside a character.
    (root / "mixed.txt").write_bytes(b"ok\n" + "\u00e9".encode() * 40 + b"\n\xff\xfe\n")
    assert ws.read_window("mixed.txt", 1, 1).text == "ok\n"
    assert ws.read_window("mixed.txt", 2, 2, limit=5).text == "\u00e9\u00e9"
    with pytest.raises(FileToolError, match="not UTF-8"):
        ws.read_window("mixed.txt", 3, 3)


def test_edit_text(layout):
    ws, root, _ = layout
    (root / "f.py").write_text("x = 1\ny = 2\ny = 2\nz = 3\n")
    assert ws.edit_text("f.py", "z = 3", "z = 4") == 4
    assert (root / "f.py").read_text() == "x = 1\ny = 2\ny = 2\nz = 4\n"
    with pytest.raises(FileToolError) as e:
        ws.edit_text("f.py", "y = 2", "y = 3")
    assert str(e.value) == "old text occurs 2 times in f.py; include more context to make it unique"
    with pytest.raises(FileToolError) as e:
        ws.edit_text("f.py", "nope", "x")
    assert str(e.value) == "old text not found in f.py"
    with pytest.raises(FileToolError):
        ws.edit_text("f.py", "", "x")
    with pytest.raises(FileToolError, match="no such file"):
        ws.edit_text("missing.py", "a", "b")


# ---- listing --------------------------------------------------------------

def test_iter_files_pattern_and_git_skipped(layout):
    ws, root, _ = layout
    ws.write_text("src/db/001.sql", "select 1;")
    ws.write_text("src/db/old/000.sql", "select 0;")
    ws.write_text("top.sql", "select 2;")
    assert ws.iter_files() == ["README.md", "src/db/001.sql", "src/db/old/000.sql",
                               "src/pkg/a.py", "top.sql"]
    assert ws.iter_files(pattern="*.py") == ["src/pkg/a.py"]
    assert ws.iter_files(pattern="src/**/*.sql") == ["src/db/001.sql", "src/db/old/000.sql"]
    assert ws.iter_files("src/db", pattern="*.sql") == ["src/db/001.sql", "src/db/old/000.sql"]
    assert ws.iter_files(pattern="README.md") == ["README.md"]
    with pytest.raises(FileToolError, match="not a directory"):
        ws.iter_files("README.md")
    with pytest.raises(PathOutsideWorkspace):
        ws.iter_files("..")


def test_iter_files_inside_symlinks(layout):
    ws, root, _ = layout
    (root / "alias.md").symlink_to("README.md")
    (root / "srclink").symlink_to("src")  # directory links are not descended
    assert ws.iter_files() == ["README.md", "alias.md", "src/pkg/a.py"]
    # Links that stay inside may be used as parents for reads and writes.
    assert ws.read_text("srclink/pkg/a.py") == "print('a')\n"
    ws.write_text("srclink/pkg/b.py", "b\n")
    assert (root / "src" / "pkg" / "b.py").read_text() == "b\n"
    assert ws.relative(ws.resolve("srclink/pkg")) == "src/pkg"


def test_iter_files_cap(layout):
    ws, root, _ = layout
    for i in range(30):
        (root / "src" / f"m{i:02}.txt").write_text("")
    listed = ws.iter_files(pattern="*.txt", limit=10)
    assert listed.omitted == 20
    assert len(listed) == 11 and listed[:10] == [f"src/m{i:02}.txt" for i in range(10)]
    assert "20 more files" in listed[-1]
    assert ws.iter_files(pattern="*.txt").omitted == 0


# ---- races and special files ------------------------------------------------

class SwapAfterCheck(WorkspacePaths):
    """Replaces a directory with a symlink to outside right after resolve()
    approves a path, as a process in the container could at any moment."""

    def __init__(self, root, victim, target, on_call):
        super().__init__(root)
        self.victim, self.target, self.on_call, self.calls = victim, target, on_call, 0

    def resolve(self, rel):
        p = super().resolve(rel)
        self.calls += 1
        if self.calls == self.on_call:
            shutil.rmtree(self.victim)
            os.symlink(self.target, self.victim)
        return p


@pytest.fixture
def race(tmp_path):
    root, outside = tmp_path / "ws", tmp_path / "outside"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "a.py").write_text("inside\n")
    (outside / "pkg").mkdir(parents=True)
    (outside / "pkg" / "a.py").write_text("TOP SECRET\n")
    return root, outside


def test_read_race_symlink_swapped_in_after_check(race):
    root, outside = race
    ws = SwapAfterCheck(root, root / "src", outside, on_call=1)
    with pytest.raises(FileToolError) as e:
        ws.read_text("src/pkg/a.py")
    assert "SECRET" not in str(e.value) and "Errno" not in str(e.value)


@pytest.mark.parametrize("on_call", [1, 2])  # write_text resolves the path, then its parent
@pytest.mark.parametrize("rel", ["src/pkg/a.py", "src/pkg/new/b.py"])
def test_write_race_symlink_swapped_in_after_check(race, on_call, rel):
    root, outside = race
    ws = SwapAfterCheck(root, root / "src", outside, on_call=on_call)
    with pytest.raises((FileToolError, PathOutsideWorkspace)) as e:
        ws.write_text(rel, "pwned")
    assert "Errno" not in str(e.value)
    assert (outside / "pkg" / "a.py").read_text() == "TOP SECRET\n"
    assert sorted(os.listdir(outside / "pkg")) == ["a.py"]


def test_fifo_is_refused_without_blocking(layout):
    ws, root, _ = layout
    os.mkfifo(root / "pipe")
    with pytest.raises(FileToolError, match="not a regular file"):
        ws.read_text("pipe")
    with pytest.raises(FileToolError, match="not a regular file"):
        ws.write_text("pipe", "x")


def test_lone_surrogate_content_is_a_clean_error(layout):
    ws, _, _ = layout
    with pytest.raises(FileToolError, match="not valid UTF-8"):
        ws.write_text("s.txt", "\udc80")
