"""Command rules: allow / prompt / forbid, from the user's and the project's policy files.

A `run_shell` command is parsed with tree-sitter-bash and judged on what bash would run, not on
its text. It is allowed by rules only when it is a plain sequence of simple commands joined by
`&&`, `||`, `;`, `|` or newlines, every word of it is plain text (quotes and backslashes decoded
here, by our own strict reader, never by guessing), each simple command is matched by an `allow`
rule, and no `prompt` or `forbid` rule matches anything anywhere in it (inside substitutions,
behind wrappers such as `sudo`/`xargs`, in `bash -c` strings). Anything else asks the human.

Pure: no I/O beyond reading (and, for `rules add`/`rm` and the approval screen, writing) rule
files; no rich, no CLI.

A file (TOML):

    preset = "read-only"            # optional: the built-in read-only preset

    [[rule]]
    decision = "allow"              # allow | prompt | forbid
    pattern = ["git", ["log", "show"]]   # argv prefix; a list is a set of alternatives
    reason = "reading history is harmless"
    examples = ["git log --oneline"]     # checked when the file is loaded
    not_examples = ["git -c core.pager=sh log"]
    except_args = ["--output"]      # an argument like these takes the command out of the rule
    exact = false                   # true: no arguments beyond the pattern
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shlex
import threading
import tomllib
import unicodedata
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

from devagent.errors import DevagentError
from devagent.policy_guards import guard, wrapped_command

DECISIONS = ("allow", "prompt", "forbid")
PRESETS_DIR = Path(__file__).parent / "presets"
PROJECT_FILE = Path(".devagent") / "policy.toml"
MAX_SCRIPT = 64 * 1024  # longer commands are not analysed: they always ask
MAX_NESTING = 4  # bash -c inside bash -c ... for forbid/prompt matching
MAX_WRAPPERS = 8  # `nice timeout env …`: deeper chains ask

# Commands that run another command given in their arguments: a forbid/prompt rule matches the
# wrapped command too, and an allow rule covers them only when it names them.
WRAPPERS = frozenset({
    "sudo", "doas", "su", "env", "xargs", "nohup", "timeout", "command", "builtin", "exec", "eval",
    "source", ".", "nice", "ionice", "stdbuf", "time", "watch", "flock", "setsid", "chroot", "strace",
    "ltrace", "parallel", "coproc", "unbuffer", "script", "taskset", "chrt", "runuser", "setpriv",
    "busybox", "toybox",  # `busybox rm x` runs rm
})
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "busybox"})
EXEC_OPTIONS = frozenset({"-exec", "-execdir", "-ok", "-okdir"})  # find runs what follows them
# Bash keywords never count as a plain command word.
RESERVED = frozenset({
    "!", "[[", "]]", "{", "}", "case", "do", "done", "elif", "else", "esac", "fi", "for", "function",
    "if", "in", "select", "then", "until", "while", "time", "coproc",
})
# Where a proposed rule never widens to a prefix: these run code given in their arguments.
NO_PREFIX = WRAPPERS | SHELLS | frozenset({
    "python", "python3", "python2", "node", "nodejs", "deno", "bun", "perl", "ruby", "php", "lua",
    "awk", "gawk", "mawk", "nawk", "sed", "find", "git", "ssh", "docker", "kubectl", "psql", "sqlite3",
    "mysql", "npx", "curl", "wget", "rm", "dd", "tee", "cp", "mv", "chmod", "chown", "ln",
})
# Commands that run what they read (stdin, a script file): the screen never offers a rule for them.
_RUNS_ITS_INPUT = SHELLS | WRAPPERS | frozenset({
    "python", "python3", "python2", "node", "nodejs", "deno", "bun", "perl", "ruby", "php", "lua", "tclsh",
    "awk", "gawk", "mawk", "nawk", "sed", "psql", "sqlite3", "mysql", "ssh", "docker", "kubectl",
})
# Tools whose first word is a subcommand: a proposed rule keeps it (`npm test` → `npm test …`).
_COMMAND_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_PATH_COMMAND_WORD = re.compile(r"[A-Za-z0-9_./+-]*/[A-Za-z0-9_./+-]*")
_SUBCOMMAND = re.compile(r"[a-z][a-z0-9_:-]*")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
_UNQUOTED_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,+@%^]")
_GLOB = frozenset("*?[")
_PLAIN_WORD = re.compile(r"[A-Za-z0-9\-_./:=,+@%^\]]+")  # needs no decoding (a fast path)
_CONTROL_ASCII = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_REDIRECT_TO_NULL = {">", ">>", "<", "&>", "&>>", ">|", ">&", "<>"}
_REDIRECT_DUP = {">&", "<&"}


class PolicyError(DevagentError):
    """A rule file that cannot be used (syntax, unknown keys, a failing example): names file:line."""


# ---------------------------------------------------------------------------- reading words


def _hidden_or_control(ch: str) -> bool:
    code = ord(ch)
    if ch in "\n\t":
        return False
    return code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0 or unicodedata.category(ch) in ("Cf", "Zl", "Zp", "Co", "Cs")


def _literal(text: str, *, lenient: bool = False) -> tuple[str | None, str | None]:
    """The value bash gives one word, or (None, why) when it is not plain text.

    Strict: only a small set of unquoted characters (no glob, brace, tilde, history, comment or
    non-ASCII), quotes and backslashes decoded as bash does, no `$` or backtick outside single
    quotes. Lenient (forbid/prompt matching): odd unquoted characters count as themselves and
    `$'…'` is decoded; expansions still make the word unknown.
    """
    if _PLAIN_WORD.fullmatch(text):
        return text, None
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "'":
            end = text.find("'", i + 1)
            if end < 0:
                return None, "an unterminated quote"
            out.append(text[i + 1:end])
            i = end + 1
        elif ch == '"':
            i += 1
            while True:
                if i >= n:
                    return None, "an unterminated quote"
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c in "$`":
                    return None, "an expansion or substitution inside double quotes"
                if c == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    if nxt == "\n":
                        return None, "a line continuation inside a word"
                    out.append(nxt if nxt in '$`"\\' else c + nxt)
                    i += 2
                    continue
                out.append(c)
                i += 1
        elif ch == "\\":
            if i + 1 >= n or text[i + 1] == "\n":
                return None, "a line continuation inside a word"
            nxt = text[i + 1]
            if not lenient and (ord(nxt) > 0x7E or ord(nxt) < 0x20):
                return None, "an escaped non-ASCII or control character"
            out.append(nxt)
            i += 2
        elif ch == "$":
            if lenient and text.startswith("$'", i):
                decoded, end = _ansi_c(text, i + 2)
                if decoded is None:
                    return None, "an unterminated $'…' string"
                out.append(decoded)
                i = end
                continue
            if lenient and text.startswith('$"', i):
                i += 1  # $"…" is a translated "…"; the next round reads the quotes
                continue
            return None, "`$'…'` or an expansion ($…)" if text.startswith("$'", i) else "an expansion ($…)"
        elif ch == "`":
            return None, "a command substitution (backticks)"
        elif ch in _UNQUOTED_SAFE or (ch == "~" and i > 0 and text[i - 1] not in "=:"):
            out.append(ch)  # a ~ inside a word (HEAD~1) is literal; at its start it is $HOME
            i += 1
        elif lenient and ch not in " \t\n;&|<>()":
            out.append(ch)
            i += 1
        elif ch in _GLOB:
            return None, "a glob pattern (*, ?, [)"
        elif ch in "{}":
            return None, "a brace expansion ({ })"
        elif ch == "~":
            return None, "a tilde expansion (~)"
        elif ord(ch) > 0x7E:
            return None, f"an unquoted non-ASCII character ({ch!r}, U+{ord(ch):04X})"
        else:
            return None, f"the unquoted character {ch!r}"
    return "".join(out), None


_ANSI_SIMPLE = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r",
                "t": "\t", "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}


def _ansi_c(text: str, i: int) -> tuple[str | None, int]:
    """Decode the body of a `$'…'` string starting at index i; (value, index after the quote)."""
    out: list[str] = []
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "'":
            return "".join(out), i + 1
        if ch != "\\" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt in _ANSI_SIMPLE:
            out.append(_ANSI_SIMPLE[nxt])
            i += 2
        elif nxt == "x" or nxt in "uU":
            width = {"x": 2, "u": 4, "U": 8}[nxt]
            digits = re.match(r"[0-9a-fA-F]{1,%d}" % width, text[i + 2:])
            if digits:
                out.append(chr(min(int(digits.group(), 16), 0x10FFFF)))
                i += 2 + len(digits.group())
            else:
                out.append("\\" + nxt)
                i += 2
        elif nxt in "01234567":
            digits = re.match(r"[0-7]{1,3}", text[i + 1:])
            assert digits is not None
            out.append(chr(int(digits.group(), 8) & 0xFF))
            i += 1 + len(digits.group())
        else:
            out.append("\\" + nxt)
            i += 2
    return None, n


def _basename(word: str) -> str:
    return word.rsplit("/", 1)[-1] if "/" in word else word


# ---------------------------------------------------------------------------- parsing

_local = threading.local()


def _commands_in(root: Any) -> list[Any]:
    """Every `command` node under root, in source order (a tree-sitter query: walks in C)."""
    query = getattr(_local, "command_query", None)
    if query is None:
        import tree_sitter_bash
        from tree_sitter import Language, Query

        query = _local.command_query = Query(Language(tree_sitter_bash.language()), "(command) @command")
    from tree_sitter import QueryCursor

    nodes = QueryCursor(query).captures(root).get("command", [])
    return sorted(nodes, key=lambda node: node.start_byte)


def _parser() -> Any:
    """One tree-sitter parser per thread (parsers are not thread-safe)."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        import tree_sitter_bash
        from tree_sitter import Language, Parser

        parser = Parser(Language(tree_sitter_bash.language()))
        _local.parser = parser
    return parser


@dataclass(frozen=True)
class SimpleCommand:
    """One simple command of the script's top-level sequence."""

    text: str
    tokens: tuple[str, ...] | None  # assignments, then argv; None when a word is not plain text
    problems: tuple[str, ...]


@dataclass(frozen=True)
class Occurrence:
    """A command found anywhere (nested ones too), read leniently, for forbid/prompt rules."""

    text: str
    tokens: tuple[str | None, ...]  # None: a word whose value depends on an expansion
    starts: tuple[int, ...]  # token positions where a wrapped command may begin


@dataclass
class Script:
    commands: list[SimpleCommand] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    occurrences: list[Occurrence] = field(default_factory=list)


_DESCRIBE = {
    "subshell": "a subshell ( … )",
    "compound_statement": "a { …; } group",
    "function_definition": "a function definition",
    "if_statement": "an if statement",
    "for_statement": "a for loop",
    "c_style_for_statement": "a for loop",
    "while_statement": "a while/until loop",
    "case_statement": "a case statement",
    "test_command": "a test [ … ] / [[ … ]]",
    "declaration_command": "export/declare/local/readonly",
    "unset_command": "unset",
    "negated_command": "a negation (!)",
    "variable_assignment": "a variable assignment",
    "variable_assignments": "a variable assignment",
    "comment": "a comment",
    "heredoc_redirect": "a heredoc (<<)",
    "herestring_redirect": "a here-string (<<<)",
    "command_substitution": "a command substitution",
    "process_substitution": "a process substitution <( … )",
    "arithmetic_expansion": "an arithmetic expansion $(( … ))",
    "expansion": "a parameter expansion ${…}",
    "simple_expansion": "a parameter expansion ($…)",
    "ansi_c_string": "an ANSI-C string $'…'",
    "translated_string": "a translated string $\"…\"",
    "brace_expression": "a brace expansion",
    "ERROR": "something bash cannot parse",
}


def _describe(node: Any) -> str:
    if node.type in _DESCRIBE:
        return _DESCRIBE[node.type]
    if not node.is_named:
        return {"&": "a background job (&)", "|&": "a |& pipe", ";;": "`;;`"}.get(node.type, f"`{node.type}`")
    return f"a {node.type.replace('_', ' ')}"


def _construct_in(node: Any) -> str | None:
    """The first shell construct (substitution, expansion, ...) inside a word, described."""
    stack = [node]
    while stack:
        current = stack.pop()
        if current.is_named and current.type in _DESCRIBE and current.type != "comment":
            return _DESCRIBE[current.type]
        stack.extend(reversed(current.children))
    return None


def _text(src: bytes, node: Any) -> str:
    return src[node.start_byte:node.end_byte].decode("utf-8", "surrogatepass")


class _Reader:
    """Walks the tree strictly: what it accepts is exactly a sequence of plain simple commands."""

    def __init__(self, src: bytes) -> None:
        self.src = src
        self.covered: list[tuple[int, int, bool]] = []  # (start, end, is a word)
        self.problems: list[str] = []
        self.commands: list[SimpleCommand] = []
        self.redirects: list[tuple[int, str, str]] = []  # (offset, descriptor + operator, target)

    def cover(self, node: Any, word: bool = False) -> None:
        self.covered.append((node.start_byte, node.end_byte, word))

    def problem(self, what: str) -> None:
        if what not in self.problems:
            self.problems.append(what)

    def program(self, root: Any) -> None:
        stack = [root]
        while stack:
            node = stack.pop()
            if node.type in ("program", "list", "pipeline"):
                for child in reversed(node.children):
                    if child.is_named:
                        stack.append(child)
                    elif child.type in (";", "&&", "||", "|"):
                        self.cover(child)
                    else:
                        self.problem(_describe(child))
            elif node.type == "redirected_statement":
                if node.child_by_field_name("body") is None:
                    self.problem("a redirection without a command")
                for i, child in enumerate(node.children):
                    if node.field_name_for_child(i) == "body":
                        stack.append(child)
                    elif child.type.endswith("redirect"):
                        self.redirect(child, [])
                    else:
                        self.problem(_describe(child))
            elif node.type == "command":
                self.command(node)
            else:
                self.problem(_describe(node))

    def redirect(self, node: Any, problems: list[str]) -> None:
        if node.type != "file_redirect":
            problems.append(_describe(node))
            self.problem(_describe(node))
            return
        op, destinations = None, []
        for i, child in enumerate(node.children):
            name = node.field_name_for_child(i)
            if name == "descriptor" and child.type == "file_descriptor" and _text(self.src, child).isdigit():
                self.cover(child)
            elif name == "destination":
                destinations.append(child)
            elif not child.is_named and op is None:
                op = child
            else:
                destinations.append(child)  # anything unexpected makes the redirect unacceptable
        ok = False
        if op is not None and len(destinations) == 1:
            target, _why = _literal(_text(self.src, destinations[0]))
            if op.type in _REDIRECT_DUP and target in ("0", "1", "2"):
                ok = True
            elif op.type in _REDIRECT_TO_NULL and target == "/dev/null":
                ok = True
        if ok:
            self.cover(op)
            self.cover(destinations[0], word=True)
            descriptor = node.child_by_field_name("descriptor")
            self.redirects.append((node.start_byte, (_text(self.src, descriptor) if descriptor else "") + op.type,
                                   _literal(_text(self.src, destinations[0]))[0] or ""))
        else:
            why = "a redirection other than to /dev/null" if op is not None and len(destinations) <= 1 \
                else "a word after a redirection"
            problems.append(why)
            self.problem(why)

    def command(self, node: Any) -> None:
        tokens: list[str] = []
        problems: list[str] = []
        assignments: list[str] = []
        seen_name = False
        for i, child in enumerate(node.children):
            name = node.field_name_for_child(i)
            text = _text(self.src, child)
            if child.type == "variable_assignment" and not seen_name:
                m = _ASSIGNMENT.match(text)
                value, why = _literal(text[m.end():]) if m else (None, "a variable assignment that is not NAME=text")
                if value is None or any(c.type == "array" for c in child.children):
                    problems.append(f"an assignment whose value is not plain text ({why or 'an array'})")
                else:
                    assignments.append(m.group(1) + "=" + value)
                    self.cover(child, word=True)
            elif child.type.endswith("redirect"):
                self.redirect(child, problems)
            elif child.type == "command_name":
                seen_name = True
                word = child.children[0] if child.child_count == 1 else child
                word_text = _text(self.src, word)
                why = self._command_word_problem(word, word_text)
                if why:
                    problems.append(why)
                else:
                    tokens.append(word_text)
                    self.cover(child, word=True)
            elif name == "argument":
                value, why = _literal(text)
                if value is None:
                    problems.append(_construct_in(child) or why or "a word that is not plain text")
                else:
                    tokens.append(value)
                    self.cover(child, word=True)
            else:
                problems.append(_describe(child))
        if not seen_name:
            problems.append("a variable assignment without a command")
        for what in problems:
            self.problem(what)
        ok = not problems
        self.commands.append(SimpleCommand(
            _text(self.src, node), tuple(assignments + tokens) if ok else None, tuple(problems)))

    @staticmethod
    def _command_word_problem(word: Any, text: str) -> str | None:
        if word.type != "word":
            return "a command word that is not a plain word (quoted, expanded or substituted)"
        if any(ord(c) > 0x7E for c in text):
            return f"a non-ASCII character in the command word {text!r} (a look-alike?)"
        if "\\" in text:
            return "an escaped command word"
        if any(c in _GLOB for c in text):
            return "a glob in the command word"
        if text in RESERVED:
            return f"the shell keyword {text!r}"
        if _COMMAND_WORD.fullmatch(text) or _PATH_COMMAND_WORD.fullmatch(text):
            return None
        return f"an unusual command word {text!r}"

    def uncovered(self) -> str | None:
        """Why the accepted tokens do not account for the whole source as bash reads it, if so:
        text no token covers, or two words bash would read as one (nothing, or a line
        continuation right after a word, between them)."""
        pos, previous_is_word = 0, False
        for start, end, is_word in [*sorted(self.covered), (len(self.src), len(self.src), False)]:
            gap = self.src[pos:start]
            if start > pos or end > start:
                if not gap and previous_is_word and is_word and start > 0:
                    return "two words with nothing between them"
                i = 0
                while i < len(gap):
                    byte = gap[i:i + 1]
                    if byte in (b" ", b"\t", b"\n"):
                        i += 1
                    elif gap[i:i + 2] == b"\\\n":
                        i += 2  # whether it joins words is checked against our own lexer
                    else:
                        return f"text the parser did not account for ({gap[i:i + 40].decode('utf-8', 'replace')!r})"
                previous_is_word = is_word
            pos = max(pos, end)
        return None


_LEX = re.compile(r"""
    (?P<blank>[ \t]+|\\\n)
  | (?P<sep>&&|\|\||;;|\|&|[;\n|])
  | (?P<redirect>&>>|&>|>>|>&|>\||<&|<>|<<|>|<)
  | (?P<other>[&()\#])
  | (?P<word>(?:[^ \t\n;&|<>()'"\\]|\\[\s\S]|'[^']*'|"(?:[^"\\]|\\[\s\S])*")+)
""", re.VERBOSE)


def _lex_plain(command: str) -> tuple[list[list[str]], list[tuple[str, str]]] | None:
    """Our own reading of the plain subset of bash (words, && || ; | newline, simple
    redirections), independent of tree-sitter: the words of each simple command and the
    redirections in order, or None for anything outside that subset. An allowed command must read
    the same both ways, so a parser quirk cannot turn into an allow."""
    commands: list[list[str]] = [[]]
    redirects: list[tuple[str, str]] = []
    redirected = False
    pending: str | None = None
    descriptor = ""
    pos, n = 0, len(command)
    for m in _LEX.finditer(command):
        if m.start() != pos:
            return None  # something no token reads (an unterminated quote)
        pos = m.end()
        kind, text = m.lastgroup, m.group()
        if kind == "blank":
            continue
        if kind == "sep":
            if text in (";;", "|&") or pending is not None or (redirected and not commands[-1]):
                return None
            commands.append([])
            redirected = False
        elif kind == "redirect":
            if text == "<<" or pending is not None:
                return None
            pending, descriptor = descriptor + text, ""
        elif kind == "other":
            return None
        else:
            if pending is None and text.isdigit() and pos < n and command[pos] in "<>":
                descriptor = text  # an IO number: `2>/dev/null`
                continue
            raw = text if "'" in text else text.replace("\\\n", "")
            value, _why = _literal(raw)
            if value is None:
                return None
            if pending is not None:
                redirects.append((pending, value))
                redirected, pending = True, None
            else:
                commands[-1].append(value)
    if pos != n or pending is not None or (redirected and not commands[-1]):
        return None
    return [words for words in commands if words], redirects


def _starts(tokens: list[str | None] | tuple[str | None, ...]) -> tuple[tuple[int, ...], int]:
    """Where a command may begin in these words: the start, after leading assignments, and
    anywhere after a wrapper (sudo, env, xargs, ...) or find's -exec; and the first non-assignment."""
    starts = {0}
    first = next((i for i, t in enumerate(tokens) if not (t and _ASSIGNMENT.match(t))), len(tokens))
    starts.add(first)
    for i, token in enumerate(tokens):
        if token is not None and (_basename(token) in WRAPPERS or token in EXEC_OPTIONS):
            starts.update(range(i + 1, len(tokens)))
    return tuple(sorted(s for s in starts if s < len(tokens))), first


def _occurrences(src: bytes, root: Any, depth: int, out: list[Occurrence]) -> None:
    """Every command in the tree, nested ones included, read leniently; and the scripts hidden in
    `bash -c '…'`, `eval …` and heredocs fed to a shell."""
    for node in _commands_in(root):
        tokens: list[str | None] = []
        for child in node.children:
            if child.type == "variable_assignment" or child.type == "command_name" or (
                    child.is_named and not child.type.endswith("redirect")):
                target = child.children[0] if child.type == "command_name" and child.child_count == 1 else child
                tokens.append(_literal(_text(src, target), lenient=True)[0])
        if not tokens:
            continue
        starts, first = _starts(tokens)
        nested: list[str] = []
        for i, token in enumerate(tokens):
            base = _basename(token) if token else None
            if base == "eval":
                nested.append(" ".join(t for t in tokens[i + 1:] if t))
            if base in SHELLS:
                for j in range(i + 1, len(tokens) - 1):
                    flag = tokens[j]
                    if flag and flag.startswith("-") and not flag.startswith("--") and "c" in flag:
                        if tokens[j + 1]:
                            nested.append(tokens[j + 1])  # type: ignore[arg-type]
                        break
        parent = node.parent
        redirects = list(node.children) + (list(parent.children) if parent is not None and
                                           parent.type == "redirected_statement" else [])
        if tokens[first:first + 1] and tokens[first] and _basename(tokens[first]) in SHELLS:  # type: ignore[arg-type]
            for redirect in redirects:
                if redirect.type == "heredoc_redirect":
                    nested.extend(_text(src, c) for c in redirect.children if c.type == "heredoc_body")
                elif redirect.type == "herestring_redirect":
                    nested.extend(v for c in redirect.named_children
                                  if (v := _literal(_text(src, c), lenient=True)[0]))
        out.append(Occurrence(_text(src, node), tuple(tokens), starts))
        if depth < MAX_NESTING:
            for script in nested:
                if len(script) <= MAX_SCRIPT:
                    data = script.encode("utf-8", "surrogatepass")
                    _occurrences(data, _parser().parse(data).root_node, depth + 1, out)


def analyze(command: str) -> Script:
    """Read a run_shell command the way bash would, for rule matching."""
    script = Script()
    if len(command) > MAX_SCRIPT:
        script.problems.append(f"a command longer than {MAX_SCRIPT} characters")
        return script
    if not command.strip():
        script.problems.append("an empty command")
        return script
    if command.isascii():
        hidden = sorted({f"U+{ord(m.group()):04X}" for m in _CONTROL_ASCII.finditer(command)})
    else:
        hidden = sorted({f"U+{ord(c):04X}" for c in command if _hidden_or_control(c)})
    if hidden:
        script.problems.append(f"control or invisible characters ({', '.join(hidden[:5])})")
    src = command.encode("utf-8", "surrogatepass")
    root = _parser().parse(src).root_node
    if root.has_error:
        script.problems.append("something bash cannot parse (a syntax error)")
    _occurrences(src, root, 0, script.occurrences)
    lexed = _lex_plain(command)
    if lexed is not None:
        # forbid/prompt rules also see the commands as our own reader splits them, in case the
        # grammar joined two of them (a line continuation after a newline, say).
        seen = {o.tokens for o in script.occurrences}
        for words in lexed[0]:
            if tuple(words) not in seen:
                script.occurrences.append(Occurrence(" ".join(words), tuple(words), _starts(words)[0]))
    reader = _Reader(src)
    reader.program(root)
    script.commands = reader.commands
    script.problems.extend(p for p in reader.problems if p not in script.problems)
    if not script.problems:
        if not reader.commands:
            script.problems.append("no command")
        else:
            left = reader.uncovered()
            if left:
                script.problems.append(left)
            elif lexed != ([list(c.tokens or ()) for c in reader.commands],
                           [(op, target) for _at, op, target in sorted(reader.redirects)]):
                script.problems.append("words that bash would split or join differently than they look")
    return script


# ---------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    decision: str
    pattern: tuple[tuple[str, ...], ...]  # one tuple of alternatives per argv position
    reason: str | None = None
    examples: tuple[str, ...] = ()
    not_examples: tuple[str, ...] = ()
    except_args: tuple[str, ...] = ()
    exact: bool = False
    scope: str = "user"  # user | project | preset
    path: str = ""  # the file it came from
    display: str = ""  # how the file is named to people
    line: int = 0
    file_sha256: str = ""

    @property
    def where(self) -> str:
        return f"{self.display or self.path}:{self.line}"

    @property
    def id(self) -> str:
        key = json.dumps([self.scope, self.decision, self.pattern, self.except_args, self.exact])
        return hashlib.sha256(key.encode()).hexdigest()[:6]

    def pattern_text(self) -> str:
        words = [alts[0] if len(alts) == 1 else "[" + "|".join(alts) + "]" for alts in self.pattern]
        text = " ".join(words) + ("" if self.exact else " …")
        if self.except_args:
            text += "  (except " + ", ".join(self.except_args) + ")"
        return text

    @cached_property
    def _except_re(self) -> re.Pattern[str] | None:
        """One regex for all except_args (fnmatch patterns; `--opt` also covers `--opt=…`)."""
        if not self.except_args:
            return None
        parts = [fnmatch.translate(p) for p in self.except_args]
        parts += [re.escape(p + "=") + ".*" for p in self.except_args if p.startswith("--")]
        return re.compile("|".join(f"(?:{p})" for p in parts), re.DOTALL)

    def _excluded(self, args: Iterable[str | None]) -> bool:
        pattern = self._except_re
        return pattern is not None and any(arg is not None and pattern.fullmatch(arg) for arg in args)

    def matches(self, tokens: tuple[str | None, ...], start: int = 0) -> bool:
        """The pattern is a prefix of tokens[start:] (exact: all of it), and no excepted argument follows."""
        rest = tokens[start:]
        if len(rest) < len(self.pattern) or (self.exact and len(rest) != len(self.pattern)):
            return False
        for i, alts in enumerate(self.pattern):
            token = rest[i]
            if token is None or token not in alts:
                return False
        return not self._excluded(rest[len(self.pattern):])

    def matches_anywhere(self, occurrence: Occurrence) -> bool:
        """forbid/prompt: the command (or one it wraps) matches, its command word read by basename."""
        for start in occurrence.starts:
            tokens = occurrence.tokens
            word = tokens[start]
            if word is not None and "/" in word and not _ASSIGNMENT.match(word):
                tokens = tokens[:start] + (_basename(word),) + tokens[start + 1:]
            if self.matches(tokens, start) or self.matches(occurrence.tokens, start):
                return True
        return False

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "decision": self.decision, "pattern": [list(a) if len(a) > 1 else a[0] for a in self.pattern],
                "exact": self.exact, "except_args": list(self.except_args), "reason": self.reason,
                "examples": list(self.examples), "not_examples": list(self.not_examples),
                "scope": self.scope, "file": self.path, "where": self.where, "file_sha256": self.file_sha256}


@dataclass(frozen=True)
class RuleFile:
    path: str
    display: str
    scope: str
    sha256: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "scope": self.scope, "sha256": self.sha256}


@dataclass(frozen=True)
class Finding:
    """A prompt or forbid rule that matched a command somewhere in the script."""

    rule: Rule
    command: str


@dataclass(frozen=True)
class CommandCheck:
    command: SimpleCommand
    allowed_by: Rule | None
    excluded_by: tuple[str, ...] = ()  # allow rules whose prefix matched but an argument took it out
    wrapped: CommandCheck | None = None  # the command a wrapper runs (`timeout 5 pytest`), judged on its own

    def explain(self, *, wrapped: bool = True) -> str:
        """Why this command is (not) allowed; `wrapped`: with what a wrapper runs, on one line."""
        runs = f"; it runs `{self.wrapped.command.text}`: {self.wrapped.explain()}" if self.wrapped and wrapped else ""
        if self.allowed_by is not None:
            return f"allowed by {self.allowed_by.where} ({self.allowed_by.pattern_text()})" + runs
        if self.command.problems:
            return "not plain: " + "; ".join(self.command.problems)
        if self.wrapped and self.excluded_by:
            return "; ".join(self.excluded_by) + runs
        if self.excluded_by:
            return "no allow rule matches (" + "; ".join(self.excluded_by) + ")"
        return "no allow rule matches"

    def chain(self) -> list[CommandCheck]:
        """This check and those of the commands it wraps, outermost first."""
        return [self, *(self.wrapped.chain() if self.wrapped else [])]

    def to_json(self) -> dict[str, Any]:
        tokens = self.command.tokens
        return {"text": self.command.text, "argv": list(tokens) if tokens is not None else None,
                "problems": list(self.command.problems),
                "allowed_by": self.allowed_by.where if self.allowed_by else None,
                "allowed_by_id": self.allowed_by.id if self.allowed_by else None,
                "explain": self.explain(), "wrapped": self.wrapped.to_json() if self.wrapped else None}


@dataclass(frozen=True)
class Verdict:
    decision: str  # allow | prompt | forbid
    checks: tuple[CommandCheck, ...]
    findings: tuple[Finding, ...]
    problems: tuple[str, ...]

    @property
    def rule(self) -> Rule | None:
        """The rule that decided: the first forbid/prompt finding, or the first allow rule."""
        for decision in ("forbid", "prompt"):
            for finding in self.findings:
                if finding.rule.decision == decision:
                    return finding.rule
        return self.allow_rules[0] if self.decision == "allow" and self.allow_rules else None

    @property
    def allow_rules(self) -> list[Rule]:
        rules: list[Rule] = []
        for check in self.checks:
            for part in check.chain():
                if part.allowed_by is not None and part.allowed_by not in rules:
                    rules.append(part.allowed_by)
        return rules

    def why(self) -> str:
        """One line: what decided."""
        if self.decision in ("forbid", "prompt") and self.rule is not None and self.rule.decision == self.decision:
            rule = self.rule
            return f"{rule.decision} rule {rule.where} ({rule.pattern_text()})" + (f": {rule.reason}" if rule.reason else "")
        if self.decision == "allow":
            return "allowed by " + ", ".join(f"{r.where} ({r.pattern_text()})" for r in self.allow_rules)
        if self.problems:
            return "it contains " + "; ".join(self.problems)
        missing = [c for c in self.checks if c.allowed_by is None]
        return "; ".join(f"`{c.command.text}`: {c.explain()}" for c in missing)

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "why": self.why(),
            "commands": [c.to_json() for c in self.checks],
            "matched": [{"decision": f.rule.decision, "rule": f.rule.where, "id": f.rule.id, "command": f.command,
                         "reason": f.rule.reason} for f in self.findings],
            "problems": list(self.problems),
        }


@dataclass
class Policy:
    rules: list[Rule] = field(default_factory=list)
    files: list[RuleFile] = field(default_factory=list)
    presets: list[str] = field(default_factory=list)

    def decide(self, command: str) -> Verdict:
        """forbid > prompt > allow; allow only for a plain sequence of simple commands each allowed."""
        script = analyze(command)
        findings = []
        words = {_basename(t) for o in script.occurrences for t in o.tokens if t} | \
            {t for o in script.occurrences for t in o.tokens if t}
        for decision in ("forbid", "prompt"):
            for rule in self.rules:
                if rule.decision != decision or words.isdisjoint(rule.pattern[0]):
                    continue  # its command word appears nowhere: it cannot match
                for occurrence in script.occurrences:
                    if rule.matches_anywhere(occurrence):
                        findings.append(Finding(rule, occurrence.text))
        allow = [r for r in self.rules if r.decision == "allow"]
        checks = tuple(_check(sc, allow) for sc in script.commands)
        if any(f.rule.decision == "forbid" for f in findings):
            decision = "forbid"
        elif findings or script.problems or not checks or any(c.allowed_by is None for c in checks):
            decision = "prompt"
        else:
            decision = "allow"
        return Verdict(decision, checks, tuple(findings), tuple(script.problems))


def _check(command: SimpleCommand, allow: list[Rule], depth: int = 0) -> CommandCheck:
    if command.tokens is None:
        return CommandCheck(command, None)
    matching = [rule for rule in allow if rule.matches(command.tokens)]
    if matching:
        # The outermost check guards every command the words may start (so all wrapped ones).
        danger = _guarded(command.tokens) if depth == 0 else guard(command.tokens)
        if danger:
            return CommandCheck(command, None, (f"{matching[0].where} matches, but not with {danger}",))
        return _through_wrapper(command, matching, allow, depth)
    excluded = []
    for rule in allow:
        if rule.except_args and replace(rule, except_args=()).matches(command.tokens):
            excluded.append(f"{rule.where} does not cover {', '.join(rule.except_args)}")
    return CommandCheck(command, None, tuple(excluded))


def _through_wrapper(command: SimpleCommand, matching: list[Rule], allow: list[Rule], depth: int) -> CommandCheck:
    """A rule naming a wrapper (`allow timeout`) covers the wrapper only: what it runs needs an
    allow rule of its own, else `timeout 5 rm -rf /` would pass as `timeout …`."""
    tokens: tuple[str, ...] = command.tokens  # type: ignore[assignment]
    rule = matching[0]
    if _basename(tokens[0]) not in WRAPPERS:
        return CommandCheck(command, rule)
    inner, why = wrapped_command(tokens)
    if not why and inner and depth >= MAX_WRAPPERS:
        why = f"more than {MAX_WRAPPERS} wrappers in a row"
    if why:
        return CommandCheck(command, None, (f"{rule.where} matches, but {why}",))
    if not inner:
        return CommandCheck(command, rule)  # `env`, `nice` alone: the wrapper's own rule decides
    # A rule that goes on past the wrapper (`["timeout", "60", "pytest"]`) names what it runs too.
    skipped = len(tokens) - len(inner)
    rest = {replace(r, pattern=r.pattern[skipped:]): r for r in matching if len(r.pattern) > skipped}
    sub = _check(SimpleCommand(shlex.join(inner), inner, ()), [*rest, *allow], depth + 1)
    if sub.allowed_by in rest:
        rule = rest[sub.allowed_by]
        sub = replace(sub, allowed_by=rule)
    if sub.allowed_by is None:
        return CommandCheck(command, None, (f"{rule.where} ({rule.pattern_text()}) covers the wrapper only",),
                            wrapped=sub)
    return CommandCheck(command, rule, wrapped=sub)


def _guarded(tokens: tuple[str, ...]) -> str | None:
    """A built-in guard's reason against this command, or one it wraps (`timeout 5 sed …`)."""
    for start in _starts(tokens)[0]:
        why = guard(tokens[start:])
        if why:
            return why
    return None


# ---------------------------------------------------------------------------- files

_RULE_KEYS = {"decision", "pattern", "reason", "examples", "not_examples", "except_args", "exact"}
_TOP_KEYS = {"preset", "presets", "rule"}
_RULE_HEADER = re.compile(r"^\s*\[\[\s*rule\s*\]\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[\[?\s*[A-Za-z0-9_.\-]+\s*\]\]?\s*(#.*)?$")


def user_policy_path() -> Path:
    """$XDG_CONFIG_HOME/devagent/policy.toml (default ~/.config/devagent/policy.toml)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "devagent" / "policy.toml"


def project_policy_path(repo: Path) -> Path:
    return Path(repo) / PROJECT_FILE


def find_project_root(start: Path) -> Path | None:
    """The top of the git work tree holding `start` (the directory with `.git`), if any."""
    path = Path(start).resolve()
    for candidate in (path, *path.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def _display(path: Path, scope: str) -> str:
    if scope == "project":
        return str(PROJECT_FILE)
    if scope == "preset":
        return f"preset:{path.stem}"
    if scope == "thread":
        return "this thread's rules"
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home):] if home != "/" and text.startswith(home + os.sep) else text


def _token_ok(token: Any) -> bool:
    return isinstance(token, str) and token != "" and not any(c.isspace() or _hidden_or_control(c) for c in token)


def _parse_rule(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: a [[rule]] must be a table")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown key {sorted(unknown)[0]!r} in a rule (known: {', '.join(sorted(_RULE_KEYS))})")
    decision = raw.get("decision")
    if decision not in DECISIONS:
        raise PolicyError(f"{where}: decision must be one of allow, prompt, forbid (got {decision!r})")
    pattern = raw.get("pattern")
    if not isinstance(pattern, list) or not pattern:
        raise PolicyError(f"{where}: pattern must be a non-empty list of argv tokens, e.g. [\"git\", [\"log\", \"show\"]]")
    alternatives = []
    for token in pattern:
        alts = token if isinstance(token, list) else [token]
        if not alts or not all(_token_ok(t) for t in alts):
            raise PolicyError(f"{where}: pattern token {token!r} must be a non-empty string without spaces "
                              "(one argv word), or a list of such strings")
        alternatives.append(tuple(alts))
    for key in ("examples", "not_examples", "except_args"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PolicyError(f"{where}: {key} must be a list of strings")
    reason = raw.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise PolicyError(f"{where}: reason must be a string")
    exact = raw.get("exact", False)
    if not isinstance(exact, bool):
        raise PolicyError(f"{where}: exact must be true or false")
    return {"decision": decision, "pattern": tuple(alternatives), "reason": reason,
            "examples": tuple(raw.get("examples", [])), "not_examples": tuple(raw.get("not_examples", [])),
            "except_args": tuple(raw.get("except_args", [])), "exact": exact}


def _line_of(lines: list[str], start: int, end: int, key: str, default: int) -> int:
    for number in range(start, min(end, len(lines))):
        if re.match(rf"\s*{key}\s*=", lines[number]):
            return number + 1
    return default


def check_examples(rule: Rule, lines: list[str] | None = None, block: tuple[int, int] | None = None) -> None:
    """Each example must be decided by this rule alone as its decision says; no not_example may be."""
    solo = Policy([rule])
    for key, samples, wanted in (("examples", rule.examples, True), ("not_examples", rule.not_examples, False)):
        line = _line_of(lines, block[0], block[1], key, rule.line) if lines and block else rule.line
        for sample in samples:
            verdict = solo.decide(sample)
            if rule.decision == "allow":
                hit = verdict.decision == "allow"
            else:
                hit = any(f.rule is rule for f in verdict.findings)
            if hit != wanted:
                if wanted:
                    detail = f"it would {verdict.decision}: {verdict.why()}"
                    raise PolicyError(f"{rule.display or rule.path}:{line}: example {sample!r} does not match this "
                                      f"{rule.decision} rule ({rule.pattern_text()}); {detail}")
                raise PolicyError(f"{rule.display or rule.path}:{line}: not_example {sample!r} matches this "
                                  f"{rule.decision} rule ({rule.pattern_text()})")


def read_rule_file(path: Path, scope: str, *, display: str | None = None) -> tuple[list[Rule], list[str], RuleFile]:
    """The rules and preset names in one file; PolicyError (file:line) for anything wrong."""
    shown = display or _display(path, scope)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{shown}: cannot read the rules file: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8")
        parsed = tomllib.loads(text)
    except UnicodeDecodeError:
        raise PolicyError(f"{shown}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        where = f"{shown}:{m.group(1)}" if m else shown
        message = re.sub(r" \(at line.*", "", str(exc))
        raise PolicyError(f"{where}: not valid TOML: {message}") from None
    lines = text.splitlines()
    unknown = set(parsed) - _TOP_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise PolicyError(f"{shown}:{_line_of(lines, 0, len(lines), re.escape(key), 1)}: unknown key {key!r} "
                          "(a file holds `preset = \"…\"` and [[rule]] tables)")
    presets = parsed.get("presets", [])
    if "preset" in parsed:
        presets = [parsed["preset"], *presets] if isinstance(presets, list) else presets
    preset_line = _line_of(lines, 0, len(lines), "presets?", 1)
    if not isinstance(presets, list) or not all(isinstance(p, str) for p in presets):
        raise PolicyError(f"{shown}:{preset_line}: preset must be a name (or presets a list of names)")
    for name in presets:
        if name not in available_presets():
            raise PolicyError(f"{shown}:{preset_line}: unknown preset {name!r} (available: {', '.join(available_presets())})")
    raw_rules = parsed.get("rule", [])
    if not isinstance(raw_rules, list):
        raise PolicyError(f"{shown}: `rule` must be written as [[rule]] tables")
    headers = [i for i, line in enumerate(lines) if _RULE_HEADER.match(line)]
    if len(headers) != len(raw_rules):
        raise PolicyError(f"{shown}: write each rule as its own [[rule]] table (found {len(raw_rules)} rules "
                          f"but {len(headers)} [[rule]] headers)")
    rules = []
    for index, (raw, header) in enumerate(zip(raw_rules, headers)):
        end = _block_end(lines, header)
        fields = _parse_rule(raw, f"{shown}:{header + 1}")
        rule = Rule(**fields, scope=scope, path=str(path), display=shown, line=header + 1, file_sha256=digest)
        check_examples(rule, lines, (header, end))
        rules.append(rule)
    return rules, presets, RuleFile(str(path), shown, scope, digest)


def _block_end(lines: list[str], header: int) -> int:
    for number in range(header + 1, len(lines)):
        if _ANY_HEADER.match(lines[number]):
            return number
    return len(lines)


_preset_cache: dict[tuple[str, str], tuple[list[Rule], RuleFile]] = {}


def read_preset(name: str) -> tuple[list[Rule], RuleFile]:
    path = PRESETS_DIR / f"{name}.toml"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    cached = _preset_cache.get((name, digest))
    if cached is None:
        rules, _presets, rule_file = read_rule_file(path, "preset")
        cached = _preset_cache[(name, digest)] = (rules, rule_file)
    return cached


def load_policy(repo: Path | None, *, user_file: Path | None = None, thread_file: Path | None = None) -> Policy:
    """The user's rules, then the project's (`.devagent/policy.toml` in the user's checkout `repo`,
    never a thread's workspace), then the thread's own (saved from its approval screen, kept
    beside, not inside, its workspace), with the presets they name. Missing files are no rules."""
    policy = Policy()
    sources = [(user_file or user_policy_path(), "user")]
    if repo is not None:
        sources.append((project_policy_path(repo), "project"))
    if thread_file is not None:
        sources.append((thread_file, "thread"))
    for path, scope in sources:
        if not path.is_file():
            if path.exists() or path.is_symlink():
                raise PolicyError(f"{_display(path, scope)}: not a regular file")
            continue
        rules, presets, rule_file = read_rule_file(path, scope)
        policy.files.append(rule_file)
        for name in presets:
            if name not in policy.presets:
                preset_rules, preset_file = read_preset(name)
                policy.presets.append(name)
                policy.rules.extend(preset_rules)
                policy.files.append(preset_file)
        policy.rules.extend(rules)
    return policy


# ---------------------------------------------------------------------------- proposing and saving rules


@dataclass(frozen=True)
class ProposedRule:
    """A rule the approval screen can offer for a command it shows."""

    decision: str
    pattern: tuple[str, ...]
    exact: bool = False
    example: str | None = None
    reason: str | None = None

    def describe(self) -> str:
        words = " ".join(self.pattern)
        return f"{self.decision} exactly `{words}`" if self.exact else f"{self.decision} `{words} …`"

    def to_toml(self) -> str:
        lines = ["[[rule]]", f"decision = {_toml_str(self.decision)}",
                 "pattern = [" + ", ".join(_toml_str(t) for t in self.pattern) + "]"]
        if self.exact:
            lines.append("exact = true")
        if self.reason:
            lines.append(f"reason = {_toml_str(self.reason)}")
        if self.example:
            lines.append(f"examples = [{_toml_str(self.example)}]")
        return "\n".join(lines) + "\n"


def _toml_str(value: str) -> str:
    # JSON strings are TOML basic strings as long as no surrogate escapes appear (ensure_ascii=False).
    return json.dumps(value, ensure_ascii=False)


def _proposal_for(tokens: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    head = tokens[0]
    if "=" in head or "/" in head or head in NO_PREFIX:
        if head == "git" and len(tokens) >= 2 and _SUBCOMMAND.fullmatch(tokens[1]) and tokens[1] not in ("config", "-c"):
            return tokens[:2], False
        return tokens, True
    prefix = [head]
    for token in tokens[1:3]:
        if not _SUBCOMMAND.fullmatch(token):
            break
        prefix.append(token)
        break  # one subcommand word: `npm test`, `cargo build`, `pytest tests` stays narrow
    return tuple(prefix), False


def propose_rule(command: str) -> ProposedRule | None:
    """The rule that would cover this command: the longest safe argv prefix of its simple command
    (`pytest -q tests/x.py` → allow `pytest …`), the exact argv for tools that run code given in
    their arguments, or None when the command is not a plain sequence of simple commands that one
    rule could cover."""
    script = analyze(command)
    if script.problems or not script.commands or any(c.tokens is None for c in script.commands):
        return None
    proposals = {_proposal_for(c.tokens) for c in script.commands if c.tokens}  # type: ignore[arg-type]
    if len(proposals) != 1:
        return None
    pattern, exact = proposals.pop()
    example = command if "\n" not in command and len(command) <= 200 and len(script.commands) == 1 else None
    proposed = ProposedRule("allow", pattern, exact=exact, example=example)
    rule = Rule("allow", tuple((t,) for t in pattern), exact=exact)
    if Policy([rule]).decide(command).decision != "allow":
        return None
    return proposed


def offer_rules(command: str, policy: Policy | None = None) -> tuple[list[ProposedRule], str | None]:
    """What `a` on the approval screen offers for this command: one rule per distinct simple
    command (each the longest safe prefix, or the exact argv), all of which together allow the
    whole command; or no rule and why (shown on the screen). `policy`: the rules in force, so a
    command that a prompt or forbid rule holds is not offered an allow rule that cannot win."""
    if policy is not None:
        held = policy.decide(command).rule
        if held is not None and held.decision in ("prompt", "forbid"):
            return [], f"rule {held.where} ({held.pattern_text()}) asks for this command every time"
    script = analyze(command)
    if script.problems:
        return [], "no rule can cover it: it contains " + "; ".join(script.problems[:3])
    if not script.commands or any(c.tokens is None for c in script.commands):
        return [], "no rule can cover it"
    for simple in script.commands:
        danger = _guarded(simple.tokens)  # type: ignore[arg-type]
        if danger:
            return [], f"no rule can cover `{simple.text}`: it uses {danger}"
    patterns: list[tuple[tuple[str, ...], bool]] = []
    for simple in script.commands:
        tokens: tuple[str, ...] = simple.tokens  # type: ignore[assignment]
        head = _basename(tokens[0])
        inline_code = len(tokens) >= 3 and tokens[1] in ("-c", "-e")
        if head in _RUNS_ITS_INPUT and not inline_code:
            # An exact `sh` (or `python3 x.py`) rule would run whatever is piped or written to it.
            return [], f"no rule is offered for `{simple.text}`: {head} runs whatever it is given"
        proposal = _proposal_for(tokens)
        if proposal not in patterns:
            patterns.append(proposal)
    single = len(script.commands) == 1 and "\n" not in command and len(command) <= 200
    offered = [ProposedRule("allow", pattern, exact=exact, example=command if single else None)
               for pattern, exact in patterns]
    rules = [Rule("allow", tuple((t,) for t in r.pattern), exact=r.exact) for r in offered]
    if Policy(rules).decide(command).decision != "allow":
        return [], "no rule can cover it safely"
    return offered, None


def rule_file_path(scope: str, repo: Path | None = None, thread_file: Path | None = None) -> Path:
    if scope == "thread" and thread_file is not None:
        return thread_file
    if scope == "user":
        return user_policy_path()
    if scope == "project":
        if repo is None:
            raise PolicyError("a project rule needs the repository (run inside it, or pass --repo)")
        return project_policy_path(repo)
    raise PolicyError(f"scope must be 'project' or 'user' (got {scope!r})")


def _write_checked(path: Path, text: str, scope: str) -> None:
    """Write a rule file atomically, but only if it still loads (examples included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        read_rule_file(tmp, scope, display=_display(path, scope))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_rule(scope: str, rule: ProposedRule, repo: Path | None = None, thread_file: Path | None = None) -> Path:
    """Append `rule` to the user's, the project's or a thread's rule file; returns the file written."""
    path = rule_file_path(scope, repo, thread_file)
    old = path.read_text(encoding="utf-8") if path.exists() else (
        "# devagent command rules: allow / prompt / forbid (see `devagent rules`)\n")
    text = old + ("" if old.endswith("\n") or not old else "\n") + "\n" + rule.to_toml()
    _write_checked(path, text, scope)
    return path


def rule_from_command(decision: str, command: str, reason: str | None = None) -> ProposedRule:
    """`devagent rules add allow "git log"`: the words of one plain simple command as a pattern."""
    if decision not in DECISIONS:
        raise PolicyError(f"decision must be one of allow, prompt, forbid (got {decision!r})")
    script = analyze(command)
    if script.problems or len(script.commands) != 1 or script.commands[0].tokens is None:
        why = "; ".join(script.problems) or "more than one command"
        raise PolicyError(f"a rule pattern is the words of one plain command (this has {why})")
    return ProposedRule(decision, script.commands[0].tokens, reason=reason)  # type: ignore[arg-type]


def remove_rule(rule: Rule) -> Path:
    """Delete a rule's [[rule]] table from its file (preset rules cannot be removed)."""
    if rule.scope == "preset":
        raise PolicyError(f"rule {rule.id} comes from the {rule.display} preset; remove the preset line instead")
    path = Path(rule.path)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    start = rule.line - 1
    if not _RULE_HEADER.match(lines[start] if start < len(lines) else ""):
        raise PolicyError(f"{rule.where}: the file changed since it was read; run the command again")
    end = _block_end([ln.rstrip("\n") for ln in lines], start)
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1  # blank lines and comments before the next table belong to that table
    while end < len(lines) and not lines[end].strip() and (start == 0 or not lines[start - 1].strip()):
        end += 1  # no doubled blank line where the rule was
    new_text = "".join(lines[:start] + lines[end:])
    before = tomllib.loads(text).get("rule", [])
    after = tomllib.loads(new_text).get("rule", []) if new_text.strip() else []
    index = [i for i, line in enumerate(text.splitlines()) if _RULE_HEADER.match(line)].index(rule.line - 1)
    if after != before[:index] + before[index + 1:]:
        raise PolicyError(f"{rule.where}: cannot remove this rule safely; edit the file by hand")
    _write_checked(path, new_text, rule.scope)
    return path


__all__ = [
    "Policy", "Rule", "RuleFile", "Verdict", "Finding", "CommandCheck", "ProposedRule", "PolicyError",
    "analyze", "load_policy", "propose_rule", "offer_rules", "save_rule", "remove_rule", "rule_from_command",
    "user_policy_path", "project_policy_path", "find_project_root", "available_presets",
]
