"""SECURITY.md names, for every claim, the tests that prove it: those tests must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def referenced_tests() -> list[tuple[str, str]]:
    """(file, test) for every `file.py::test` and following `::test` reference, in order."""
    refs, current = [], None
    for line in (ROOT / "SECURITY.md").read_text().splitlines():
        for file, test in re.findall(r"`(test_\w+\.py)?::(test_\w+)`", line):
            current = file or current
            assert current, f"`::{test}` has no file before it: {line}"
            refs.append((current, test))
    return refs


def test_every_test_named_in_security_md_exists() -> None:
    refs = referenced_tests()
    assert len(refs) > 30
    missing = []
    for file, test in refs:
        source = (ROOT / "tests" / file).read_text() if (ROOT / "tests" / file).exists() else ""
        if not re.search(rf"^(async )?def {test}\(", source, re.MULTILINE):
            missing.append(f"{file}::{test}")
    assert missing == []


def test_every_security_test_is_named_in_security_md() -> None:
    named = {test for _, test in referenced_tests()}
    for path in sorted((ROOT / "tests").glob("test_security_*.py")):
        if path.name == Path(__file__).name:
            continue
        defined = re.findall(r"^(?:async )?def (test_\w+)\(", path.read_text(), re.MULTILINE)
        assert set(defined) <= named, (path.name, sorted(set(defined) - named))
