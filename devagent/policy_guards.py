"""Built-in guards: options and scripts with which an allowed tool runs code or writes files.

An `allow` rule names a command prefix (`["sed", "-n"]`, `["awk"]`, `["git"]`); the arguments
after it are free. For some tools an argument is itself a program, or an option hands a command
line to a shell: `sed 's/x/y/e'`, `awk 'BEGIN{system("…")}'`, `find -exec`, `rg --pre`,
`git -c core.pager=…`, `tar --to-command=…`. Such an invocation is never allowed by a rule,
whoever wrote the rule: it asks the human. Each guard errs towards asking: what it cannot read
for sure (an unknown option, a script from a file, an odd sed script) counts as dangerous.

Pure: strings in, a reason (or None) out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

Guard = Callable[[Sequence[str]], "str | None"]


# ---------------------------------------------------------------------------- sed

# GNU sed long options that take no script and run nothing (`--sandbox` even disables e/w/r).
_SED_LONG_SAFE = {"--quiet", "--silent", "--regexp-extended", "--posix", "--sandbox", "--debug",
                  "--null-data", "--zero-terminated", "--separate", "--unbuffered", "--follow-symlinks",
                  "--in-place", "--line-length", "--help", "--version"}
_SED_SIMPLE = set("=dDgGhHnNpPxzFlLqQ")
_SED_FLAGS_SAFE = set("gpiImM0123456789")


def _sed_scripts(args: Sequence[str]) -> tuple[list[str], str | None]:
    """The scripts sed would run (-e/--expression, else the first operand), or a reason."""
    scripts: list[str] = []
    operands: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            operands.extend(args[i:])
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name == "--expression":
                if not eq:
                    if i >= len(args):
                        return [], "sed --expression without a script"
                    value, i = args[i], i + 1
                scripts.append(value)
            elif name not in _SED_LONG_SAFE:
                return [], f"the sed option {name} (a script file, or not one devagent knows)"
            elif name == "--line-length" and not eq:
                i += 1
            continue
        if arg.startswith("-") and arg != "-":
            j = 1
            while j < len(arg):
                flag = arg[j]
                if flag == "e":
                    value = arg[j + 1:]
                    if not value:
                        if i >= len(args):
                            return [], "sed -e without a script"
                        value, i = args[i], i + 1
                    scripts.append(value)
                    break
                if flag == "f":
                    return [], "sed -f (a script file devagent cannot see)"
                if flag in "il":  # -i[SUFFIX], -l N
                    if flag == "l" and j + 1 == len(arg):
                        i += 1
                    break
                if flag not in "nrEsuz":
                    return [], f"the sed option -{flag} (not one devagent knows)"
                j += 1
            continue
        operands.append(arg)
    if not scripts:
        if not operands:
            return [], None
        scripts.append(operands[0])
    return scripts, None


def _sed_delimited(script: str, i: int, delim: str) -> int | None:
    """The index after the closing `delim` of a regex or replacement starting at i, or None when
    it cannot be read for sure (a delimiter inside a bracket expression, a newline, no end)."""
    bracket = False
    n = len(script)
    while i < n:
        ch = script[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "\n":
            return None
        if bracket:
            if ch == delim:
                return None  # inside a bracket sed reads it literally; not worth the risk
            if ch == "[" and i + 1 < n and script[i + 1] in ":.=":
                close = script.find(script[i + 1] + "]", i + 2)  # [:alpha:], [.x.], [=e=]
                if close < 0 or delim in script[i:close]:
                    return None
                i = close + 2
                continue
            if ch == "]":
                bracket = False
        elif ch == "[":
            bracket = True
            if script.startswith("[^]", i) or script.startswith("[]", i):
                i += 2 if script[i + 1] == "]" else 3
                continue
        elif ch == delim:
            return i + 1
        i += 1
    return None


def _sed_script_problem(script: str) -> str | None:
    """Why this sed script may run a command or touch a file other than its input (e, w, W, r, R,
    s///e, s///w: what `sed --sandbox` refuses), or None."""
    i, n = 0, len(script)
    while i < n:
        ch = script[i]
        if ch in " \t\n;}{!":
            i += 1
            continue
        if ch == "#":
            end = script.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        # An address: line numbers, $, /regex/, \cregexc, first~step, addr,+N.
        if ch.isdigit() or ch in "$,~+":
            i += 1
            continue
        if ch == "/" or ch == "\\":
            delim = "/" if ch == "/" else (script[i + 1] if i + 1 < n else "")
            if not delim or delim in "\n\\":
                return "a sed address devagent cannot read"
            end = _sed_delimited(script, i + (1 if ch == "/" else 2), delim)
            if end is None:
                return "a sed address devagent cannot read for sure"
            i = end
            while i < n and script[i] in "IM":
                i += 1
            continue
        if ch == "s" or ch == "y":
            if i + 1 >= n or script[i + 1] in "\n\\":
                return f"a sed {ch} command devagent cannot read"
            delim = script[i + 1]
            middle = _sed_delimited(script, i + 2, delim)
            end = _sed_delimited(script, middle, delim) if middle is not None else None
            if end is None:
                return f"a sed {ch} command devagent cannot read for sure"
            i = end
            if ch == "s":
                while i < n and script[i] not in ";\n}":
                    flag = script[i]
                    if flag in "ew":
                        return f"the sed s///{flag} flag ({'runs a command' if flag == 'e' else 'writes a file'})"
                    if flag not in _SED_FLAGS_SAFE and flag not in " \t":
                        return f"the sed s/// flag {flag!r} (not one devagent knows)"
                    i += 1
            continue
        if ch in "ewWrR":
            what = {"e": "runs a command", "w": "writes a file", "W": "writes a file"}.get(ch, "reads a file")
            return f"the sed {ch} command ({what})"
        if ch in "aic":
            # Text up to the end of the line; a backslash-newline continues it.
            i += 1
            while i < n and script[i] != "\n":
                i += 2 if script[i] == "\\" else 1
            continue
        if ch in "btT:v":
            # A label (or version) ends at a blank, `;` or newline (GNU sed reads the rest as
            # commands); stopping at `}` too only makes more of the script read as commands.
            i += 1
            while i < n and script[i] in " \t":
                i += 1
            while i < n and script[i] not in " \t\n;}":
                i += 1
            continue
        if ch in _SED_SIMPLE:
            i += 1
            continue
        return f"the sed command {ch!r} (not one devagent knows)"
    return None


def sed_guard(args: Sequence[str]) -> str | None:
    scripts, why = _sed_scripts(args)
    if why:
        return why
    for script in scripts:
        why = _sed_script_problem(script)
        if why:
            return why
    return None


# ---------------------------------------------------------------------------- awk

# What lets an awk program run a command or write a file: system(), pipes (`print | "sh"`,
# `"cmd" | getline`), output redirection (`print > "f"`; comparisons look the same and ask too),
# and gawk's extension and include directives.
_AWK_DANGER = re.compile(r"system|\||>|@load|@include|getline|\bENVIRON\b|PROCINFO")


_AWK_SAFE_OPTIONS = {"-b", "--characters-as-bytes", "-c", "--traditional", "-P", "--posix", "-n",
                     "--non-decimal-data", "-r", "--re-interval", "-S", "--sandbox", "-t", "--lint-old",
                     "-s", "--no-optimize", "-O", "--optimize", "-N", "--use-lc-numeric"}


def awk_guard(args: Sequence[str]) -> str | None:
    programs: list[str] = []
    operand = None
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            operand = args[i] if i < len(args) else None
            break
        if arg == "-" or not arg.startswith("-"):
            operand = arg
            break
        if arg in ("-v", "-F", "--assign", "--field-separator"):
            i += 1  # the value is the next word
        elif arg.startswith(("-v", "-F", "--assign=", "--field-separator=")):
            continue
        elif arg in ("-e", "--source"):
            programs.append(args[i] if i < len(args) else "")
            i += 1
        elif arg.startswith("--source="):
            programs.append(arg.split("=", 1)[1])
        elif arg not in _AWK_SAFE_OPTIONS:
            return f"the awk option {arg} (a program file, an extension, or not one devagent knows)"
    if operand is not None:
        programs.append(operand)  # the program, or (after -e) a file name: checked alike
    for program in programs:
        if _AWK_DANGER.search(program):
            return "an awk program with system(), a pipe, getline or an output redirection"
    return None


# ---------------------------------------------------------------------------- find, rg, tar

_FIND_ACTIONS = ("-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0", "-fprintf", "-fls")


def find_guard(args: Sequence[str]) -> str | None:
    for arg in args:
        if arg in _FIND_ACTIONS:
            return f"find {arg} ({'deletes files' if arg == '-delete' else 'writes a file' if arg.startswith('-f') else 'runs a command'})"
    return None


def rg_guard(args: Sequence[str]) -> str | None:
    for arg in args:
        if arg == "--":
            break
        if arg.split("=", 1)[0] in ("--pre", "--pre-glob", "--search-zip") or arg.startswith("-") and not arg.startswith("--") and "z" in arg[1:]:
            return "rg --pre / --search-zip (runs a program on the files it searches)"
    return None


_TAR_LONG_DANGER = ("--to-command", "--use-compress-program", "--checkpoint-action", "--info-script",
                    "--new-volume-script", "--rsh-command", "--rmt-command", "--index-file")


def tar_guard(args: Sequence[str]) -> str | None:
    """tar runs a program with -I/--use-compress-program, --to-command, -F/--info-script,
    --checkpoint-action=exec, --rsh-command, and for a remote archive (`-f host:file`). Long
    options may be abbreviated, so a prefix of those asks too."""
    for index, arg in enumerate(args):
        if arg == "--":
            break
        following = args[index + 1] if index + 1 < len(args) else ""
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if len(name) > 2 and any(d.startswith(name) for d in _TAR_LONG_DANGER):
                return f"the tar option {name} (can run a program)"
            if len(name) > 2 and "--file".startswith(name) and ":" in (value if eq else following):
                return "a tar archive name with a colon (a remote archive runs rsh/ssh)"
            continue
        if arg.startswith("-") or index == 0:  # the first word may be old-style options: `tar xIf`
            cluster = arg[1:] if arg.startswith("-") else arg
            if set(cluster) & set("IF"):
                return f"the tar options {arg} (-I and -F run a program)"
            if "f" in cluster:
                name = cluster.split("f", 1)[1] or following
                if ":" in name:
                    return "a tar archive name with a colon (a remote archive runs rsh/ssh)"
    return None


# ---------------------------------------------------------------------------- git

# Subcommands built into git; anything else may be an alias (`!sh -c …`) or a git-<name> program.
GIT_BUILTINS = frozenset("""
add am annotate apply archive bisect blame branch bundle cat-file check-attr check-ignore checkout cherry
cherry-pick clean clone commit commit-tree config count-objects describe diff diff-files diff-index diff-tree
difftool fetch for-each-ref format-patch fsck gc grep hash-object help init log ls-files ls-remote ls-tree
merge merge-base mergetool mv name-rev notes pull push range-diff read-tree rebase reflog remote repack
replace reset restore rev-list rev-parse revert rm shortlog show show-branch show-ref sparse-checkout stash
status submodule switch symbolic-ref tag update-index update-ref var verify-commit verify-tag version
whatchanged worktree write-tree
""".split())
# Subcommands that run programs given to them or configured for them.
_GIT_RUNNERS = frozenset({"difftool", "mergetool", "bisect", "submodule", "filter-branch", "send-email",
                          "instaweb", "daemon", "http-backend", "p4", "svn", "cvsimport", "archimport"})
# Options of any subcommand that run a program or write where they say.
_GIT_OPTION_DANGER = ("--exec", "--upload-pack", "--receive-pack", "--ext-diff", "--output",
                      "--open-files-in-pager", "--extcmd", "--tool", "--config", "--run", "--command")
_GIT_GLOBAL_SAFE = {"--no-pager", "-P", "--no-replace-objects", "--literal-pathspecs", "--no-optional-locks"}


def git_guard(args: Sequence[str]) -> str | None:
    """Options before the subcommand (`-c core.pager=…`, `--exec-path`, `-C`, `--git-dir`) change
    what git runs; an alias or unknown subcommand may be a shell command; some subcommands and
    options run programs (`rebase -x`, `grep -O`, `fetch --upload-pack`, `difftool`)."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] not in _GIT_GLOBAL_SAFE:
            return f"the git option {args[i]} before the subcommand (it changes what git runs)"
        i += 1
    if i >= len(args):
        return None
    sub, rest = args[i], args[i + 1:]
    if sub in _GIT_RUNNERS:
        return f"git {sub} (runs programs)"
    if sub not in GIT_BUILTINS:
        return f"git {sub}: not a git command devagent knows (an alias can run a shell command)"
    if sub == "config" and rest not in (["--list"], ["-l"]) and not (len(rest) == 2 and rest[0] == "--get"):
        return "git config (other than --list / --get NAME: it changes what git runs next)"
    for arg in rest:
        if arg == "--":
            break
        name = arg.split("=", 1)[0]
        if name.startswith("--") and len(name) > 3 and any(d.startswith(name) or name.startswith(d)
                                                            for d in _GIT_OPTION_DANGER):
            return f"git {sub} {name} (runs a program or writes a file)"
        if sub == "rebase" and (name in ("-x",) or (arg.startswith("-") and not arg.startswith("--") and "x" in arg)):
            return "git rebase -x (runs a command)"
        if sub == "grep" and (arg.startswith("-") and not arg.startswith("--") and "O" in arg):
            return "git grep -O (runs a program on the matches)"
        if sub in ("fetch", "pull", "clone", "ls-remote", "push", "archive") and arg.startswith("-u"):
            return f"git {sub} -u (runs a program)"
    return None


GUARDS: dict[str, Guard] = {
    "sed": sed_guard, "gsed": sed_guard,
    "awk": awk_guard, "gawk": awk_guard, "mawk": awk_guard, "nawk": awk_guard, "busybox-awk": awk_guard,
    "find": find_guard, "gfind": find_guard,
    "rg": rg_guard,
    "tar": tar_guard, "gtar": tar_guard, "bsdtar": tar_guard,
    "git": git_guard,
}


def guard(argv: Sequence[str]) -> str | None:
    """Why this plain argv may run code or write files although a rule allows its prefix, or None."""
    if not argv:
        return None
    name = argv[0].rsplit("/", 1)[-1]
    check = GUARDS.get(name)
    return check(argv[1:]) if check else None


# ---------------------------------------------------------------------------- wrappers

# A rule that names a wrapper (`allow timeout`) covers the wrapper, not what it runs: the wrapped
# command is judged on its own. Each spec: options without a value, options that take one, how
# many operands come before the command, and whether NAME=VALUE words are the wrapper's own (env).
@dataclass(frozen=True)
class WrapperSpec:
    flags: frozenset[str] = frozenset()
    valued: frozenset[str] = frozenset()
    operands: int = 0
    assignments: bool = False
    runs_nothing: frozenset[str] = frozenset()  # `command -v x` only looks x up


def _spec(flags: str = "", valued: str = "", **kw: object) -> WrapperSpec:
    return WrapperSpec(frozenset(flags.split()), frozenset(valued.split()), **kw)  # type: ignore[arg-type]


WRAPPER_SPECS: dict[str, WrapperSpec] = {
    "timeout": _spec("--foreground --preserve-status -v --verbose", "-s --signal -k --kill-after", operands=1),
    "nice": _spec("", "-n --adjustment"),
    "ionice": _spec("-t --ignore", "-c --class -n --classdata"),
    "env": _spec("- -i --ignore-environment -0 --null", "-u --unset", assignments=True),
    "xargs": _spec("-0 --null -r --no-run-if-empty -t --verbose -x --exit",
                   "-n --max-args -L --max-lines -P --max-procs -d --delimiter -s --max-chars -E -a --arg-file"),
    "nohup": _spec(),
    "stdbuf": _spec("", "-i --input -o --output -e --error"),
    "time": _spec("-p"),
    "busybox": _spec(), "toybox": _spec(),
    "command": _spec("-p", runs_nothing=frozenset({"-v", "-V"})),
    "setsid": _spec("-c --ctty -f --fork -w --wait"),
}
# Commands that run another as someone else: no rule ever covers them.
ALWAYS_ASK_WRAPPERS = frozenset({"sudo", "su", "doas", "runuser", "setpriv", "pkexec", "chroot"})
_ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def wrapped_command(argv: Sequence[str]) -> tuple[tuple[str, ...], str | None]:
    """What a wrapper runs: (its argv, None); ((), None) when it runs nothing; or ((), why) when
    that cannot be told for sure (an option this reader does not know) or no rule may cover it."""
    name = argv[0].rsplit("/", 1)[-1]
    if name in ALWAYS_ASK_WRAPPERS:
        return (), f"{name} runs a command as another user, which no rule covers"
    spec = WRAPPER_SPECS.get(name)
    if spec is None:
        return ((), None) if len(argv) == 1 else ((), f"what {name} runs is not checked")
    i, operands = 1, spec.operands
    while i < len(argv):
        arg = argv[i]
        if arg in spec.runs_nothing:
            return (), None
        if arg == "--":
            i += 1
            break
        if spec.assignments and _ENV_ASSIGNMENT.match(arg):
            i += 1
        elif arg in spec.flags:
            i += 1
        elif arg in spec.valued:
            i += 2
        elif arg.startswith("--") and arg.split("=", 1)[0] in spec.valued:
            i += 1
        elif arg.startswith("-") and arg != "-":
            i = _short_options(arg, spec, i)
            if i < 0:
                return (), f"{name} option {arg!r} is not one this check reads"
        else:
            break
    while operands and i < len(argv):  # timeout's DURATION
        i, operands = i + 1, operands - 1
    if i > len(argv):
        return (), f"{name} is missing an option's value"
    inner = tuple(argv[i:])
    if name == "xargs" and inner and inner[0].rsplit("/", 1)[-1] in GUARDS:
        # its input adds arguments no guard sees: `ls | xargs find` may get `-exec`
        return (), f"xargs would add arguments to {inner[0]} that its guard cannot read"
    return inner, None


def _short_options(arg: str, spec: WrapperSpec, i: int) -> int:
    """getopt-style `-0r`, `-n1`, `-oL`: the index after it, or -1 for a letter the spec lacks."""
    for k, letter in enumerate(arg[1:], 1):
        option = "-" + letter
        if option in spec.valued:
            return i + 1 if k + 1 < len(arg) else i + 2  # the value is attached, or the next word
        if option not in spec.flags:
            return -1
    return i + 1
