"""Project instructions: AGENTS.md files and --instructions reach the model; nothing outside the
workspace is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import git

pytestmark = pytest.mark.usefixtures("sandbox_image")


def system_prompt(llm) -> str:
    [system] = [m["content"] for m in llm.requests[0]["messages"] if m["role"] == "system"]
    return system


def test_agents_md_files_and_extra_instructions_reach_the_model(cli, llm, repo: Path, tmp_path: Path) -> None:
    (repo / "AGENTS.md").write_text("Always run `make check` before you finish.\n")
    (repo / "api").mkdir()
    (repo / "api" / "AGENTS.md").write_text("Handlers in api/ use snake_case.\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "instructions")
    extra = tmp_path / "today.md"
    extra.write_text("Do not touch the lockfile today.\n")
    llm.script({"content": "Nothing to do."})

    result = cli("task", "tidy up", "--base-url", llm.url, "--model", "stub", "--no-input",
                 "--instructions", str(extra))

    assert result.returncode == 0, result.stderr
    prompt = system_prompt(llm)
    assert "Always run `make check` before you finish." in prompt
    assert "Handlers in api/ use snake_case." in prompt and "files under api/" in prompt
    assert "Do not touch the lockfile today." in prompt
    # The user is told which files were given to the model.
    assert f"instructions: AGENTS.md, api/AGENTS.md, {extra}" in " ".join(result.stdout.split())


def test_an_agents_md_symlink_leading_outside_is_not_read(cli, llm, repo: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret 7f3a\n")
    (repo / "AGENTS.md").symlink_to(secret)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "link")
    llm.script({"content": "ok"})

    result = cli("task", "look", "--base-url", llm.url, "--model", "stub", "--no-input")

    assert result.returncode == 0, result.stderr
    assert "host secret 7f3a" not in json.dumps(llm.requests)
    assert "instructions:" not in result.stdout


def test_a_missing_instructions_file_is_a_usage_error_before_anything_starts(cli, llm, home: Path) -> None:
    result = cli("task", "x", "--base-url", llm.url, "--model", "stub", "--no-input", "--instructions", "/nope.md")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: cannot read --instructions /nope.md: No such file or directory"]
    assert llm.requests == []
    assert json.loads(cli("threads", "--json").stdout) == []
