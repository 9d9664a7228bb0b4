"""Settings: defaults < user file < project file < environment < flags, each with its source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_stub import tool_call


@pytest.fixture
def user_config(tmp_path: Path) -> Path:
    path = tmp_path / "xdg" / "devagent" / "config.toml"
    path.parent.mkdir(parents=True)
    return path


def effective(cli, user_config: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, dict]:
    result = cli("config", "--json", *args, env={"XDG_CONFIG_HOME": str(user_config.parent.parent), **(env or {})})
    assert result.returncode == 0, result.stderr
    return {row["key"]: row for row in json.loads(result.stdout)["settings"]}


def test_files_then_environment_then_flags(cli, repo: Path, user_config: Path) -> None:
    user_config.write_text('model = "from-user"\nmax_steps = 7\n[sandbox]\nmemory = "1g"\n')
    (repo / ".devagent").mkdir()
    project = repo / ".devagent" / "config.toml"
    project.write_text('model = "from-project"\n\n[sandbox]\ntimeout = 60\n')

    rows = effective(cli, user_config)
    assert rows["model"]["value"] == "from-project" and rows["model"]["source"] == f"{project}:1"
    assert rows["max_steps"]["value"] == 7 and rows["max_steps"]["source"] == f"{user_config}:2"
    assert rows["sandbox.memory"]["value"] == "1g" and rows["sandbox.memory"]["source"] == f"{user_config}:4"
    assert rows["sandbox.timeout"]["value"] == 60 and rows["sandbox.timeout"]["source"] == f"{project}:4"
    assert rows["database"] == {"key": "database", "value": "sqlite", "source": "default"}

    rows = effective(cli, user_config, env={"DEVAGENT_MODEL": "from-env", "DEVAGENT_SANDBOX_MEMORY": "3g"})
    assert rows["model"]["value"] == "from-env" and rows["model"]["source"] == "DEVAGENT_MODEL"
    assert rows["sandbox.memory"]["value"] == "3g"


def test_a_flag_beats_everything_and_a_new_thread_keeps_its_sandbox_settings(cli, llm, repo: Path,
                                                                               user_config: Path) -> None:
    user_config.write_text(f'base_url = "{llm.url}"\nmodel = "from-user"\n[sandbox]\ntimeout = 42\n')
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "true"}, "s1")]})
    env = {"XDG_CONFIG_HOME": str(user_config.parent.parent), "DEVAGENT_MODEL": "from-env"}

    result = cli("task", "go", "--model", "from-flag", "--no-input", "--json", env=env)

    assert result.returncode == 3, result.stderr
    assert llm.requests[0]["model"] == "from-flag"
    [call] = json.loads(result.stdout.splitlines()[-1])["pending"]
    assert call["timeout_s"] == 42  # the screen's timeout is the configured one
    # A later change of the file does not change what this thread's pending call would run with.
    user_config.write_text(f'base_url = "{llm.url}"\n[sandbox]\ntimeout = 999\n')
    [again] = json.loads(cli("pending", "--json", env=env).stdout)
    assert again["timeout_s"] == 42


@pytest.mark.parametrize("text, message", [
    ('model = "x"\nmodle = "y"\n', ":2: unknown setting 'modle'"),
    ('[sandbox]\nmemroy = "1g"\n', ":2: unknown setting 'sandbox.memroy'"),
    ("max_steps = \"ten\"\n", ":1: max_steps must be a whole number"),
    ('[sandbox]\nenv = ["HOME", "OPENAI_API_KEY"]\n', ":2: sandbox.env may not pass OPENAI_API_KEY into the sandbox"),
])
def test_a_bad_config_file_is_one_clear_line_naming_file_and_line(cli, llm, repo: Path, user_config: Path,
                                                                  text: str, message: str) -> None:
    user_config.write_text(text)
    env = {"XDG_CONFIG_HOME": str(user_config.parent.parent)}
    for args in (("config",), ("task", "x", "--base-url", llm.url, "--no-input")):
        result = cli(*args, env=env)
        assert result.returncode in (1, 2), result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"error: {user_config}") and message in line, line
    assert llm.requests == []


@pytest.mark.parametrize("where, text, message", [
    ("project", "", None),  # an empty file is no settings at all
    ("project", 'model = "m"\n[sandbox]\n', None),  # an empty table too
    ("project", "model = 3\n", ":1: model must be a string (got 3)"),
    ("project", "[model]\nname = 'x'\n", ":1: model must be a string"),  # a table where a value goes
    ("project", "[sandbox.env]\nA = 1\n", ":1: sandbox.env must be a list of strings"),
    ("project", "sandbox = 3\n", ":1: unknown setting 'sandbox'"),
    ("project", "[[sandbox]]\nmemory = '1g'\n", ":1: unknown setting 'sandbox'"),
    ("user", "network = \"yes\"\n", ":1: network must be true or false"),
    ("user", "max_steps = 0\n", ":1: max_steps must be at least 1"),
    ("user", "\n[sandbox]\n# limits\ntimeout = -1\n", ":4: sandbox.timeout must be between 1 and 3600 seconds"),
    ("user", "[sandbox]\nmemory = \"lots\"\n", ":2: sandbox.memory must be a size such as 512m or 2g"),
    ("user", "[sandbox]\npids = 1.5\n", ":2: sandbox.pids must be a whole number"),
    ("user", 'database = "mysql"\n', ":1: database must be sqlite, postgres"),
    ("user", "model = \n", ":1: invalid value (column 9)"),  # not TOML: still file and line
    ("user", 'model = "a"\nmodel = "b"\n', ":2: cannot overwrite a value"),
])
def test_odd_config_files_never_crash_config(cli, repo: Path, user_config: Path, where: str, text: str,
                                             message: str | None) -> None:
    path = user_config
    if where == "project":
        path = repo / ".devagent" / "config.toml"
        path.parent.mkdir()
    path.write_text(text)
    env = {"XDG_CONFIG_HOME": str(user_config.parent.parent)}

    result = cli("config", env=env)

    if message is None:
        assert result.returncode == 0, result.stderr
        assert "model" in result.stdout and "default" in result.stdout
        return
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}:") and message in line, line
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_config_prints_each_setting_with_where_it_came_from(cli, repo: Path, user_config: Path) -> None:
    user_config.write_text('[sandbox]\nmemory = "1g"\nenv = ["LANG"]\n')

    result = cli("config", env={"XDG_CONFIG_HOME": str(user_config.parent.parent), "DEVAGENT_MODEL": "m-env"})

    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:] if line.strip()}
    assert rows["model"] == ["m-env", "DEVAGENT_MODEL"]
    assert rows["sandbox.memory"] == ["1g", f"{user_config}:2"]
    assert rows["sandbox.env"] == ['["LANG"]', f"{user_config}:3"]
    assert rows["database"] == ["sqlite", "default"]


def test_a_bad_environment_value_is_one_line_naming_the_variable(cli, user_config: Path) -> None:
    result = cli("config", env={"XDG_CONFIG_HOME": str(user_config.parent.parent), "DEVAGENT_SANDBOX_PIDS": "many"})
    assert result.returncode == 2
    assert result.stderr.strip() == "error: DEVAGENT_SANDBOX_PIDS='many' is not a valid sandbox.pids"


def test_config_reads_the_project_file_of_a_repository_without_commits(cli, tmp_path: Path, user_config: Path) -> None:
    import subprocess

    fresh = tmp_path / "fresh"
    (fresh / ".devagent").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(fresh)], check=True)
    (fresh / ".devagent" / "config.toml").write_text('model = "fresh-model"\n')
    rows = effective(cli, user_config, "--repo", str(fresh))
    assert rows["model"]["value"] == "fresh-model"
    assert rows["model"]["source"] == f"{fresh.resolve()}/.devagent/config.toml:1"
