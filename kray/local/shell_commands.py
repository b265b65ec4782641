"""Which programs a container would run: its argv[0] and, for ``sh -c SCRIPT``, the commands the script runs.

Local mode runs a sidecar or init container as a process of this machine, so the programs it names must
exist here. Telling which words of a shell script are programs is a best effort: this module only ever
*drops* a word it is unsure of (variables, substitutions, keywords, builtins, case patterns, function
names, heredoc bodies, anything that does not look like a command name), because a refusal for a valid
script is worse than a missing program found when the container starts. Pure: no I/O.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ash", "ksh"})
_SEPARATOR_CHARS = frozenset(";&|()\n")
_REDIRECT_CHARS = frozenset("<>")
_PUNCTUATION = ";&|()<>\n"
# Words that open a command position: the word after them is a program.
_PREFIX_KEYWORDS = frozenset({"if", "then", "else", "elif", "do", "while", "until", "!", "{", "time"})
# Words whose whole simple command names no program of its own.
_SKIP_KEYWORDS = frozenset({"fi", "done", "case", "esac", "}", "for", "select", "in", "[[", "]]"})
# Builtins of POSIX sh and bash: never programs to look for.
BUILTINS = frozenset(
    {
        ".", ":", "[", "alias", "bg", "bind", "break", "builtin", "caller", "cd", "command", "compgen",
        "complete", "continue", "declare", "dirs", "disown", "echo", "enable", "eval", "exec", "exit",
        "export", "false", "fc", "fg", "getopts", "hash", "help", "history", "jobs", "kill", "let", "local",
        "logout", "mapfile", "popd", "printf", "pushd", "pwd", "read", "readarray", "readonly", "return",
        "set", "shift", "shopt", "source", "suspend", "test", "times", "trap", "true", "type", "typeset",
        "ulimit", "umask", "unalias", "unset", "wait",
    }
)  # fmt: skip
# Builtins that run the next word as a program (``exec redis-server ...``).
_RUNNERS = frozenset({"exec", "command", "builtin", "nohup", "time"})
_COMMAND_NAME = re.compile(r"[A-Za-z0-9_./+@:,-]+")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
MAX_SCRIPT = 100_000
"""Longer scripts are not read (a bound on the work; their inner commands go unchecked)."""


@dataclass(frozen=True, slots=True)
class Program:
    """A program a container runs, and the field (relative to the container) it comes from."""

    name: str
    field: str


def container_programs(container: object) -> tuple[list[Program], str | None]:
    """The programs a container runs, or (``[]``, reason) when it has no command local mode could run."""
    if not isinstance(container, dict):
        return [], None
    command = _strings(container.get("command"))
    args = _strings(container.get("args"))
    if command is None or args is None:
        return [], None  # not a list of strings: validation's to report
    argv = [*command, *args]
    if not argv:
        return [], "has no command: local mode cannot run an image's entrypoint"
    programs = [Program(argv[0], "command" if command else "args")]
    at = shell_script_index(argv)
    if at is not None:
        field = "command" if at < len(command) else "args"
        programs += [Program(name, field) for name in script_programs(argv[at])]
    return programs, None


def shell_script_index(argv: Sequence[str]) -> int | None:
    """Where SCRIPT is in ``sh -c SCRIPT`` (also ``bash -lc -- SCRIPT``, ``/bin/sh -ec ...``); None if not that."""
    if not argv or argv[0].rsplit("/", 1)[-1] not in SHELLS:
        return None
    command_string = False
    for index, word in enumerate(argv[1:], start=1):
        if word == "--":
            continue
        if word.startswith("-") and not word.startswith("--"):
            command_string = command_string or "c" in word[1:]
            continue
        if word.startswith("--"):
            continue  # a long option (bash --noprofile)
        return index if command_string else None  # without -c: sh FILE runs a script file
    return None


def script_programs(script: str) -> list[str]:
    """Programs a shell script runs, in order, each once; words it cannot be sure of are left out."""
    if len(script) > MAX_SCRIPT:
        return []
    try:
        tokens = _tokens(_without_heredocs(script.replace("\\\n", " ")))
    except ValueError:
        return []  # unbalanced quotes: no guessing
    functions = _function_names(tokens)
    found: list[str] = []
    for word in _command_words(tokens):
        if word not in functions and word not in found:
            found.append(word)
    return found


def _strings(value: object) -> list[str] | None:
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _tokens(script: str) -> list[str]:
    lexer = shlex.shlex(script, posix=True, punctuation_chars=_PUNCTUATION)
    lexer.whitespace = " \t\r"
    lexer.whitespace_split = True
    return list(lexer)


def _without_heredocs(script: str) -> str:
    """The script with heredoc bodies (data, not commands) dropped."""
    out: list[str] = []
    ends: list[str] = []
    lines = script.split("\n")
    for line in lines:
        if ends:
            if line.strip() == ends[0]:
                ends.pop(0)
            continue
        out.append(line)
        ends = [match.group(2) for match in _HEREDOC.finditer(line)]
    return "\n".join(out)


def _is_punctuation(token: str) -> bool:
    return bool(token) and all(char in _PUNCTUATION for char in token)


def _function_names(tokens: list[str]) -> set[str]:
    names = set()
    for index, token in enumerate(tokens[:-1]):
        following = tokens[index + 1]
        if not _is_punctuation(token) and following.startswith("()"):
            names.add(token)
        if token == "function" and not _is_punctuation(following):
            names.add(following)
    return names


def _segments(tokens: list[str]) -> Iterator[tuple[list[str], str]]:
    """Simple commands (their words, redirections removed) and the separator that ends each."""
    words: list[str] = []
    skip_next = False
    arithmetic = False
    for token in tokens:
        if not _is_punctuation(token):
            if arithmetic or skip_next:
                skip_next = False
                continue
            words.append(token)
            continue
        if "((" in token or "))" in token:
            arithmetic = token.rfind("((") > token.rfind("))")  # the last of them decides
        if set(token) <= _REDIRECT_CHARS | {"&"} and set(token) & _REDIRECT_CHARS:
            skip_next = True  # the redirection's target is a file name, not a word of the command
            continue
        if set(token) & _SEPARATOR_CHARS:
            yield words, token
            words = []
    yield words, ""


def _command_words(tokens: list[str]) -> Iterator[str]:
    case_depth = 0
    in_array = False
    for words, separator in _segments(tokens):
        if in_array:
            in_array = ")" not in separator
            continue
        if words and words[-1].endswith("=") and separator.startswith("("):
            in_array = ")" not in separator[1:]  # name=( a b ): array items, not commands
            continue
        if words and words[0] == "case":
            case_depth += 1
        elif words and words[0] == "esac":
            case_depth = max(0, case_depth - 1)
        if case_depth > 0 and (separator.startswith(")") or separator == "|"):
            continue  # a case pattern
        word = _program(words)
        if word is not None:
            yield word


def _program(words: list[str]) -> str | None:
    """The program a simple command runs, or None when it runs none (or it cannot be told)."""
    index = 0
    while index < len(words):
        word = words[index]
        if word == "function":
            index += 2  # function NAME { ...: the body's first word is the program
            continue
        if word in _PREFIX_KEYWORDS or word in _RUNNERS or _ASSIGNMENT.match(word):
            index += 1
            continue
        if word in _SKIP_KEYWORDS or word in BUILTINS or word.startswith("-"):
            return None
        return word if _COMMAND_NAME.fullmatch(word) and not word.startswith(".") else None
    return None
