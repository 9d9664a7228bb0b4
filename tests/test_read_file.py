"""read_file never reads more than it returns, wherever in a huge file it starts.

Measured in a fresh process (its peak memory and the bytes it read through read(2)), on a real
1 GiB sparse file and on a file of many short lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devagent.paths import SKIP_LIMIT, FileToolError, WorkspacePaths

PROBE = """
import json, resource, sys
from devagent.paths import WorkspacePaths, FileToolError
def rchar():
    return next(int(l.split()[1]) for l in open("/proc/self/io") if l.startswith("rchar:"))
ws = WorkspacePaths(sys.argv[1])
before_rss, before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rchar()
try:
    w = ws.read_window(sys.argv[2], int(sys.argv[3]), None, 64 * 1024)
    result = {"text": len(w.text), "first": w.first_line, "last": w.last_line}
except FileToolError as exc:
    result = {"error": str(exc)}
result.update(read=rchar() - before, rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_rss)
print(json.dumps(result))
"""


def probe(root: Path, name: str, start: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-c", PROBE, str(root), name, str(start)], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def test_a_start_line_past_the_end_of_a_gibibyte_sparse_file_reads_a_bounded_amount(tmp_path: Path) -> None:
    with open(tmp_path / "sparse.bin", "wb") as f:
        f.truncate(1 << 30)  # one line of NUL bytes, 1 GiB long
    result = probe(tmp_path, "sparse.bin", 2)
    assert "is not within its first 256 MiB" in result["error"] and "sed -n '2p'" in result["error"]
    assert result["read"] <= SKIP_LIMIT + (1 << 20), result  # a quarter of the file, not all of it
    assert result["rss_kib"] < 32 * 1024, result  # memory stays flat while it looks


def test_a_start_line_deep_in_a_file_of_short_lines_is_found_by_counting_not_by_reading_lines(tmp_path: Path) -> None:
    lines = 3_000_000
    (tmp_path / "big.log").write_bytes(b"".join(b"%07d\n" % i for i in range(1, lines + 1)))  # 24 MB
    result = probe(tmp_path, "big.log", lines - 1)
    assert result == {**result, "text": 16, "first": lines - 1, "last": lines}
    assert result["rss_kib"] < 32 * 1024, result
    ws = WorkspacePaths(tmp_path)
    assert ws.read_window("big.log", lines - 1).text == "%07d\n%07d\n" % (lines - 1, lines)
    assert ws.read_window("big.log", 1, 2).text == "0000001\n0000002\n"
    with pytest.raises(FileToolError, match=f"it has {lines} lines"):
        ws.read_window("big.log", lines + 1)


def test_skipping_lines_agrees_with_reading_them(tmp_path: Path) -> None:
    text = "a\n\nbb\nccc\n" * 50_000 + "tail"  # crosses many read chunks; no newline at the end
    (tmp_path / "f.txt").write_text(text)
    ws = WorkspacePaths(tmp_path)
    every = text.split("\n")
    for start in (1, 2, 3, 4, 5, 16_385, 100_001, 199_999, 200_000, 200_001):
        window = ws.read_window("f.txt", start, start)
        expected = every[start - 1] + ("\n" if start < len(every) else "")
        assert (window.text, window.first_line) == (expected, start), start
    with pytest.raises(FileToolError, match="it has 200001 lines"):
        ws.read_window("f.txt", 200_002)
