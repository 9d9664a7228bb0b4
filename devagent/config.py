"""Where devagent keeps its state, and the sandbox defaults. Read from the environment once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The tags can be overridden, e.g. to try a changed Dockerfile beside the images in use.
SANDBOX_IMAGE = os.environ.get("DEVAGENT_SANDBOX_IMAGE", "devagent/sandbox:latest")
BASE_IMAGE = "devagent/base:bookworm"
POSTGRES_IMAGE = os.environ.get("DEVAGENT_POSTGRES_IMAGE", "devagent/postgres:latest")
THREAD_LABEL = "org.devagent.thread"


def devagent_home() -> Path:
    """`DEVAGENT_HOME`, else the XDG state dir (~/.local/state/devagent)."""
    explicit = os.environ.get("DEVAGENT_HOME")
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return (Path(xdg) / "devagent").resolve()


def project_root() -> Path:
    """The source tree holding Dockerfile.sandbox and sandbox/ (the package's parent)."""
    return Path(__file__).resolve().parent.parent


DEFAULT_OUTPUT_LIMIT = 16 * 1024
# Room kept for the status line and the cut marker, so the whole text stays within the limit.
OUTPUT_RESERVE = 512
MIN_OUTPUT_LIMIT = 1024


@dataclass(frozen=True)
class SandboxLimits:
    # The environment (DEVAGENT_SANDBOX_*) reaches these through load_config, which checks it;
    # reading it here, at import, made a bad value crash every command.
    memory: str = "2g"
    pids: int = 256
    cpus: float = 1.5
    default_timeout_s: int = 300
    max_timeout_s: int = 3600
    # What reaches the model of one command's output, in all: its head and tail, the total size
    # and where it was cut (`sandbox.output_limit`). Large outputs cost the model tokens and
    # crowd its context; the user still sees everything as it streams.
    output_limit: int = DEFAULT_OUTPUT_LIMIT

    @property
    def output_head(self) -> int:
        return max(self.output_limit - OUTPUT_RESERVE, 0) // 2

    @property
    def output_tail(self) -> int:
        return max(self.output_limit - OUTPUT_RESERVE, 0) - self.output_head


def sandbox_user() -> tuple[int, int]:
    """The uid:gid the container runs as: the host user's, so checkout files stay theirs.

    Root on the host is never mapped to root in the container: it gets an unprivileged uid
    (DEVAGENT_SANDBOX_UID, default 1000) and the checkout is handed to that uid.
    """
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        fallback = int(os.environ.get("DEVAGENT_SANDBOX_UID", "1000"))
        return fallback, fallback
    return uid, gid


def sandbox_runtime() -> str | None:
    """The OCI runtime for thread containers (DEVAGENT_SANDBOX_RUNTIME, e.g. runsc); engine default if unset."""
    return os.environ.get("DEVAGENT_SANDBOX_RUNTIME") or None


# --------------------------------------------------------------------------- effective settings
#
# Each setting comes from, in rising precedence: its default, the user's file
# (~/.config/devagent/config.toml), the project's file (.devagent/config.toml in the user's
# checkout, reviewed like any code), the environment, a command-line flag. `devagent config`
# prints every value with where it came from.


@dataclass(frozen=True)
class Key:
    kind: type
    default: Any
    env: str | None
    help: str


KEYS: dict[str, Key] = {
    "model": Key(str, "gpt-4.1", "DEVAGENT_MODEL", "model name"),
    "base_url": Key(str, None, "OPENAI_BASE_URL", "OpenAI-compatible server (Chat Completions)"),
    "network": Key(bool, False, "DEVAGENT_NETWORK", "new threads' sandboxes get network access"),
    "database": Key(str, "sqlite", "DEVAGENT_DATABASE", "sqlite, postgres, or a postgresql:// URL"),
    "max_steps": Key(int, 50, "DEVAGENT_MAX_STEPS", "model round trips (steps) allowed in one turn"),
    "sandbox.memory": Key(str, "2g", "DEVAGENT_SANDBOX_MEMORY", "memory limit of a thread's container"),
    "sandbox.pids": Key(int, 256, "DEVAGENT_SANDBOX_PIDS", "process limit of a thread's container"),
    "sandbox.cpus": Key(float, 1.5, "DEVAGENT_SANDBOX_CPUS", "CPUs of a thread's container"),
    "sandbox.timeout": Key(int, 300, "DEVAGENT_COMMAND_TIMEOUT", "default command timeout, seconds"),
    "sandbox.output_limit": Key(int, DEFAULT_OUTPUT_LIMIT, "DEVAGENT_OUTPUT_LIMIT",
                                "bytes of a command's output the model receives (head + tail)"),
    "sandbox.env": Key(list, [], None, "host variables passed into the sandbox, by name"),
    "sandbox.ca_certificates": Key(list, [], None, "extra CA certificate files trusted in the sandbox"),
    "sandbox.proxy": Key(str, None, None, "HTTP(S) proxy for --network sandboxes"),
    # What a turn commits: the repository's ignore files apply, plus these patterns (gitignore
    # syntax; the list replaces devagent's default one, which keeps environments and caches out).
    "commit.exclude": Key(list, None, None, "patterns kept out of turn commits (default: environments and caches)"),
    "commit.warn_files": Key(int, 500, None, "warn when a turn adds more files than this"),
    "commit.warn_mb": Key(float, 20.0, None, "warn when a turn adds more megabytes than this"),
}

# devagent's own secrets never enter the sandbox, whatever a config file says.
SECRET_ENV_NAMES = frozenset({"OPENAI_API_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "DEVAGENT_API_KEY",
                              "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY"})


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class Setting:
    value: Any
    source: str  # "default", "~/.config/devagent/config.toml:3", "DEVAGENT_MODEL", "--model"


def user_config_dir() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "devagent"


def config_files(repo: Path | None) -> list[Path]:
    files = [user_config_dir() / "config.toml"]
    if repo is not None:
        files.append(repo / ".devagent" / "config.toml")
    return files


def _line_of(text: str, section: str | None, name: str) -> int:
    """The line where `name` is set (in [section]), or its own [section.name] header; 1 when it
    cannot be told."""
    current = None
    header = f"{section}.{name}" if section else name
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.split("#", 1)[0].strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped.strip("[]").strip()
            if current.replace(" ", "") == header:
                return number
        elif current == section and stripped.split("=", 1)[0].strip().strip('"\'').split(".")[0].strip() == name:
            return number
    return 1


def _memory_ok(value: str) -> bool:
    import re

    return re.fullmatch(r"[0-9]+(\.[0-9]+)?[bkmgBKMG]?", value) is not None


def _database_ok(value: str) -> bool:
    from devagent.errors import UsageError
    from devagent.migrations import Database  # the one parser of --database values

    try:
        Database.parse(value)
    except UsageError:
        return False
    return True


# Values of the right type that still cannot work: caught where they are written, not when a
# container refuses to start half-way through a turn.
CHECKS: dict[str, tuple[Any, str]] = {
    "max_steps": (lambda v: v >= 1, "at least 1"),
    "sandbox.pids": (lambda v: v >= 16, "at least 16"),
    "sandbox.cpus": (lambda v: 0 < v <= 1024, "a number of CPUs above 0"),
    "commit.warn_files": (lambda v: v >= 1, "at least 1"),
    "commit.warn_mb": (lambda v: v > 0, "above 0"),
    "sandbox.timeout": (lambda v: 1 <= v <= SandboxLimits.max_timeout_s,
                        f"between 1 and {SandboxLimits.max_timeout_s} seconds"),
    "sandbox.memory": (_memory_ok, "a size such as 512m or 2g"),
    "database": (_database_ok, "sqlite, postgres, a postgresql:// URL or sqlite:///FILE"),
    "model": (lambda v: bool(v.strip()), "a model name"),
}


def _check(key: str, value: Any, where: str) -> Any:
    check = CHECKS.get(key)
    if check is not None and value is not None and not check[0](value):
        raise ConfigError(f"{where}: {key} must be {check[1]} (got {value!r})")
    return value


def _coerce(key: str, value: Any, where: str) -> Any:
    kind = KEYS[key].kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if kind is not list and isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    expected = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
                list: "a list of strings"}[kind]
    raise ConfigError(f"{where}: {key} must be {expected} (got {value!r})")


def _from_env(key: str, raw: str) -> Any:
    kind = KEYS[key].kind
    env = KEYS[key].env
    try:
        if kind is bool:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError
            return raw.lower() in ("1", "true", "yes", "on")
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{env}={raw!r} is not a valid {key}") from None
    return _check(key, value, f"{env}={raw!r}")


def _toml_error(path: Path, message: str) -> str:
    """tomllib's "Invalid value (at line 3, column 5)" as "file:3: invalid value (column 5)"."""
    import re

    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if not found:
        return f"{path}: {message}"
    what = message[:found.start()]
    return f"{path}:{found.group(1)}: {what[:1].lower() + what[1:]} (column {found.group(2)})"


def _read_file(path: Path) -> dict[str, Setting]:
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_toml_error(path, str(exc))) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    found: dict[str, Setting] = {}

    def walk(table: dict[str, Any], section: str | None) -> None:
        for name, value in table.items():
            if section is None and name == PRICES:
                continue  # a table of its own (see load_prices)
            key = f"{section}.{name}" if section else name
            where = f"{path}:{_line_of(text, section, name)}"
            if isinstance(value, dict) and key not in KEYS:
                if section is None and any(k.startswith(key + ".") for k in KEYS):
                    walk(value, key)
                    continue
            if key not in KEYS:
                known = ", ".join(KEYS)
                raise ConfigError(f"{where}: unknown setting {key!r} (known: {known})")
            found[key] = Setting(_check(key, _coerce(key, value, where), where), where)

    walk(data, None)
    return found


class EffectiveConfig:
    """Every setting's value and where it came from."""

    def __init__(self, settings: dict[str, Setting]) -> None:
        self.settings = settings

    def __getitem__(self, key: str) -> Any:
        return self.settings[key].value

    def source(self, key: str) -> str:
        return self.settings[key].source

    def sandbox(self) -> dict[str, Any]:
        """The sandbox part, as a thread keeps it for good."""
        return self.section("sandbox")

    def section(self, name: str) -> dict[str, Any]:
        return {key.split(".", 1)[1]: s.value for key, s in self.settings.items() if key.startswith(name + ".")}


def load_config(repo: Path | None = None, flags: dict[str, Any] | None = None) -> EffectiveConfig:
    """Defaults < user file < project file < environment < flags (those not None)."""
    settings = {key: Setting(spec.default, "default") for key, spec in KEYS.items()}
    for path in config_files(repo):
        settings.update(_read_file(path))
    for key, spec in KEYS.items():
        raw = os.environ.get(spec.env) if spec.env else None
        if raw:
            settings[key] = Setting(_from_env(key, raw), spec.env)  # type: ignore[arg-type]
    for key, value in (flags or {}).items():
        if value is not None:
            flag = f"--{key.replace('_', '-')}"
            settings[key] = Setting(_check(key, value, flag), flag)
    for name in settings["sandbox.env"].value:
        if not isinstance(name, str) or not name.replace("_", "a").isalnum() or name[:1].isdigit():
            raise ConfigError(f"{settings['sandbox.env'].source}: sandbox.env holds {name!r}, not a variable name")
        if name in SECRET_ENV_NAMES:
            raise ConfigError(f"{settings['sandbox.env'].source}: sandbox.env may not pass {name} into the "
                              "sandbox: it is devagent's own secret")
    limit = settings["sandbox.output_limit"]
    if not isinstance(limit.value, int) or limit.value < MIN_OUTPUT_LIMIT:
        raise ConfigError(f"{limit.source}: sandbox.output_limit must be a number of bytes, at least {MIN_OUTPUT_LIMIT}")
    for path in settings["sandbox.ca_certificates"].value:
        where = settings["sandbox.ca_certificates"].source
        full = Path(path).expanduser()
        if not full.is_absolute():
            raise ConfigError(f"{where}: sandbox.ca_certificates needs absolute paths (got {path!r})")
        if not full.is_file():
            raise ConfigError(f"{where}: sandbox.ca_certificates: {full} is not a readable file")
    return EffectiveConfig(settings)


PRICES = "prices"


def load_prices(repo: Path | None = None) -> dict[str, dict[str, float]]:
    """The optional `[prices."MODEL"]` tables (USD per million tokens; the project's file over the
    user's, model by model): what a cost estimate uses. Empty: no cost is shown anywhere."""
    import tomllib

    from devagent.usage import check_prices

    prices: dict[str, dict[str, float]] = {}
    for path in config_files(repo):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            continue  # load_config reports a broken file; prices are only an estimate
        if PRICES in data:
            try:
                prices.update(check_prices(data[PRICES], str(path)))
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
    return prices


def thread_limits(settings: dict[str, Any]) -> SandboxLimits:
    """A thread's sandbox limits, fixed when it was created (older threads: the defaults)."""
    from dataclasses import replace

    sandbox = settings.get("sandbox") or {}
    limits = SandboxLimits()
    given = {"memory": sandbox.get("memory"), "pids": sandbox.get("pids"), "cpus": sandbox.get("cpus"),
             "default_timeout_s": sandbox.get("timeout"), "output_limit": sandbox.get("output_limit")}
    return replace(limits, **{k: v for k, v in given.items() if v is not None})
