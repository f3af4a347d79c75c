"""A small SPICE statement parser: what ngspice would read, so that a foreign netlist never runs a command.

A netlist is code for ngspice: a ``.control`` block, a ``*#`` line or a ``*ng_script`` title makes
ngspice run front-end commands (``shell``, ``system``-like ``!``, ``source``, ``codemodel``, ``osdi``,
``pre_`` commands ...), from the netlist itself or from any ``.include``/``.lib`` file it names.
:func:`read_deck` reads a netlist the way ngspice does and refuses every such construct with an
:class:`~mtc_analog.errors.UnsafeNetlistError` naming the file, the line, the construct and the fix:

- logical lines: ``+`` continuation lines join the statement before them (comment lines may sit in
  between), ``*`` starts a comment line, `` $ ``/``;`` start inline comments, leading blanks and tabs
  are ignored, dot-commands are case-insensitive;
- ``.include``/``.inc`` FILE and ``.lib`` FILE SECTION are followed as ngspice follows them (a
  relative path is relative to the file that names it), checked the same way and *inlined*: ngspice
  then reads no file but the text it is given (nothing can change between check and use). Cycles
  and missing files are errors; ``.lib`` SECTION ... ``.endl`` definitions are checked even when unused;
- every ``.control`` ... ``.endc`` block (indented, unclosed, nested, in any file) is refused, except
  the stand-alone block our own exporter writes (recognised by ``own_control``: exact lines only),
  which is removed from the deck;
- a statement is either a comment, an element line (a letter first) or one of the dot-commands in
  :data:`ALLOWED_DOT_COMMANDS`; anything else (``.exec``, ``.osdi``, ``.load``, ``*#``, ``!``, ...)
  is refused: an allow-list, so a command ngspice adds later is refused too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import NetlistValueError, UnsafeNetlistError

#: Dot-commands a netlist may contain (lower case). All describe a circuit or an analysis; none runs
#: a command or loads code. ``.include``/``.inc``/``.lib`` are followed and checked.
ALLOWED_DOT_COMMANDS = frozenset({
    ".title", ".end", ".subckt", ".ends", ".model", ".param", ".func", ".global", ".ic", ".nodeset",
    ".tran", ".options", ".option", ".opt", ".save", ".temp", ".include", ".inc", ".lib", ".endl",
    ".meas", ".measure", ".print", ".plot", ".probe", ".width", ".if", ".elseif", ".else", ".endif",
})
#: Prefixes ngspice itself matches (``ciprefix``): ``.controlx`` is a ``.control`` card to ngspice.
_CONTROL_PREFIXES = (".control", ".endc")
_MAX_DEPTH = 32
#: Largest file an ``.include``/``.lib`` may name (sky130 model libraries are a few MiB).
MAX_INCLUDE_BYTES = 256 << 20
FIX = ("remove it: mtc-analog runs the transient itself and never runs a netlist's commands "
       "(a netlist written by `mtc-analog export` has only its own stand-alone block)")


@dataclass(frozen=True)
class Statement:
    """One logical statement: ``text`` with continuations joined and comments removed."""

    text: str
    file: str  #: the file it comes from ("<text>" for a netlist given as a string)
    line: int  #: 1-based physical line where it starts

    @property
    def keyword(self) -> str:
        """Lower-case first token (``.tran``, ``r1`` ...)."""
        return self.text.split(None, 1)[0].lower() if self.text.strip() else ""

    @property
    def tokens(self) -> list[str]:
        return self.text.split()

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class _Item:
    lines: list[str]  #: physical lines as sent to ngspice
    statement: Statement | None = None  #: None: comment / blank / title


@dataclass
class Deck:
    """A parsed, checked netlist: title, then items (statements with their physical lines, comments).

    ``text()`` is what ngspice is given: includes inlined, the own control block removed."""

    title: str
    items: list[_Item] = field(default_factory=list)
    source: str = "<text>"

    @property
    def statements(self) -> list[Statement]:
        return [item.statement for item in self.items if item.statement is not None]

    def find(self, keyword: str) -> list[Statement]:
        return [s for s in self.statements if s.keyword == keyword]

    def text(self) -> str:
        lines = [self.title]
        for item in self.items:
            lines += item.lines
        return "\n".join(lines) + "\n"

    def replace(self, statement: Statement, new_line: str) -> None:
        """Replace one statement (all its physical lines) by ``new_line``."""
        for item in self.items:
            if item.statement is statement:
                item.lines = [new_line]
                item.statement = Statement(new_line, statement.file, statement.line)
                return
        raise KeyError(statement)

    def insert_before_end(self, new_line: str) -> None:
        """Insert a statement before the top-level ``.end`` (or append it, with a ``.end``)."""
        for k, item in enumerate(self.items):
            if item.statement is not None and item.statement.keyword == ".end" and item.statement.file == self.source:
                self.items.insert(k, _Item([new_line], Statement(new_line, "<inserted>", 0)))
                return
        self.items.append(_Item([new_line], Statement(new_line, "<inserted>", 0)))
        self.items.append(_Item([".end"], Statement(".end", "<inserted>", 0)))


def read_deck(
    text: str,
    path: str | os.PathLike | None = None,
    own_control: Callable[[Sequence[str]], bool] | None = None,
) -> Deck:
    """Parse and check a netlist (``text``; ``path`` names it and anchors relative includes).

    Raises :class:`UnsafeNetlistError` for anything that would run a command or load code,
    :class:`NetlistValueError` for a missing include file or section."""
    source = str(path) if path is not None else "<text>"
    base = Path(path).resolve().parent if path is not None else Path.cwd()
    physical = _split_lines(text)
    if not physical:
        raise NetlistValueError(f"{source}: the netlist is empty")
    title = physical[0]
    _check_title(title, source)
    stack = [(str(Path(path).resolve()) if path is not None else source, None)]
    items = _parse_file(physical[1:], 2, source, base, own_control, stack, top=True)
    return Deck(title, items, source)


# ---- one file ----------------------------------------------------------------------------------
def _split_lines(text: str) -> list[str]:
    if "\x00" in text:
        raise UnsafeNetlistError("the netlist contains a NUL byte: not a text netlist")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if text else []
    if lines and lines[-1] == "":  # the final newline ends the last line; it does not open another
        lines.pop()
    return lines


def _check_title(title: str, source: str) -> None:
    # ngspice runs a file whose first line starts with *ng_script as a command script
    stripped = title.strip().lower()
    if stripped.startswith("*ng_script"):
        raise UnsafeNetlistError(f"{source}:1: a '*ng_script' title makes ngspice run the whole file as commands; {FIX}")
    if stripped.startswith(_CONTROL_PREFIXES) or stripped.startswith("*#"):
        raise UnsafeNetlistError(f"{source}:1: the title line {title.strip()[:40]!r} is a control construct; {FIX}")


def _first_token(logical: str) -> str:
    token = logical.split(None, 1)[0] if logical.split() else ""
    return re.split(r"[;$]", token, 1)[0].lower() if token else ""


def _strip_inline_comment(line: str) -> str:
    # ngspice: ';' anywhere, '$' preceded by blank, start inline comments
    line = line.split(";", 1)[0]
    match = re.search(r"(^|\s)\$", line)
    return line[:match.start()] if match else line


def _logical(lines: list[str], first_line: int) -> list[tuple[int, int, str]]:
    """(start index, stop index, logical text) per statement or comment/blank run, in order."""
    out: list[tuple[int, int, str]] = []
    k = 0
    while k < len(lines):
        stripped = lines[k].strip()
        if not stripped or stripped.startswith("*"):
            out.append((k, k + 1, ""))
            k += 1
            continue
        start, parts = k, [_strip_inline_comment(stripped)]
        k += 1
        stop = k
        j = k
        while j < len(lines):  # continuation lines, possibly after comment/blank lines
            s = lines[j].strip()
            if s.startswith("+"):
                parts.append(_strip_inline_comment(s[1:]))
                j += 1
                stop = j
            elif not s or (s.startswith("*") and not s.startswith("*#")):
                j += 1
            else:
                break
        out.append((start, stop, " ".join(parts).strip()))
        k = stop
    return out


def _parse_file(lines: list[str], first_line: int, source: str, base: Path,
                own_control: Callable[[Sequence[str]], bool] | None, stack: list, top: bool,
                section: str | None = None) -> list[_Item]:
    """Items of one file (or of one ``.lib`` section of it when ``section`` is given)."""
    items: list[_Item] = []
    in_section: str | None = None  # name of the .lib section being defined
    found_section = section is None
    done = False
    control_start: int | None = None
    for start, stop, text in _logical(lines, first_line):
        lineno = first_line + start
        where = f"{source}:{lineno}"
        block = lines[start:stop]
        stripped = lines[start].strip()
        # --- a control block: collect it, accept only our own, exactly
        if control_start is not None:
            if text and _first_token(text).startswith(".endc"):
                body = lines[control_start:stop]
                if not (top and own_control is not None and own_control([l.strip() for l in body if l.strip()])):
                    raise UnsafeNetlistError(
                        f"{source}:{first_line + control_start}: a .control ... .endc block runs ngspice commands "
                        f"(shell, source, codemodel, ...); {FIX}")
                control_start = None
            elif text and _first_token(text).startswith(".control"):
                raise UnsafeNetlistError(f"{where}: a nested .control block; {FIX}")
            continue
        if not text:
            if stripped.startswith("*#"):  # ngspice runs '*#' lines as commands
                raise UnsafeNetlistError(f"{where}: a '*#' line is run by ngspice as a command ({stripped[:40]!r}); {FIX}")
            if found_section and not done and (in_section is None if section is None else in_section == section):
                items.append(_Item(block))
            continue
        for physical in block:  # a control card hidden on a continuation line
            s = physical.strip().lstrip("+").strip().lower()
            if s.startswith(_CONTROL_PREFIXES) or s.startswith("*#"):
                if physical.strip().startswith("+"):
                    raise UnsafeNetlistError(f"{where}: a control card inside a continuation line; {FIX}")
        keyword = _first_token(text)
        if keyword.startswith(".control"):
            control_start = start
            continue
        if keyword.startswith(".endc"):
            raise UnsafeNetlistError(f"{where}: '.endc' without '.control' (a control construct); {FIX}")
        statement = Statement(text, source, lineno)
        if keyword.startswith("."):
            if keyword not in ALLOWED_DOT_COMMANDS:
                raise UnsafeNetlistError(
                    f"{where}: '{keyword}' is not a statement mtc-analog accepts (anything that could run commands "
                    f"or load code is refused; accepted: {', '.join(sorted(ALLOWED_DOT_COMMANDS))}); remove it")
        elif not keyword[:1].isalpha():
            raise UnsafeNetlistError(
                f"{where}: {text.split()[0][:20]!r} is neither an element (a letter first), a dot-command nor a "
                f"comment ('*'); ngspice-style command escapes ('!', '*#') are refused; remove it")
        tokens = statement.tokens
        # --- .lib sections: one name opens a definition, FILE NAME includes one
        if keyword == ".lib" and len(tokens) == 2 and not _looks_like_file(tokens[1], base):
            if in_section is not None:
                raise UnsafeNetlistError(f"{where}: .lib section {tokens[1]!r} opened inside section {in_section!r}; close it with .endl")
            in_section = tokens[1].lower()
            if section is not None and in_section == section:
                found_section = True
            continue
        if keyword == ".endl":
            if in_section is None:
                raise NetlistValueError(f"{where}: '.endl' without a '.lib SECTION' line")
            if section is not None and in_section == section:
                done = True  # the requested section is complete; the rest of the file is still checked
            in_section = None
            continue
        selected = found_section and not done and (in_section is None if section is None else in_section == section)
        if keyword in (".include", ".inc", ".lib"):
            if len(tokens) < 2:
                raise NetlistValueError(f"{where}: '{keyword}' needs a file name")
            included = _include(tokens, keyword, where, base, own_control, stack)
            if selected:
                items.append(_Item([f"* ---- {' '.join(tokens)[:200]} (inlined) ----"]))
                items.extend(included)
            continue
        if selected and not (keyword == ".end" and not top):
            items.append(_Item(block, statement))
    if control_start is not None:
        raise UnsafeNetlistError(f"{source}:{first_line + control_start}: a .control block without .endc (ngspice "
                                 f"still runs it); {FIX}")
    if in_section is not None and section is None:
        raise NetlistValueError(f"{source}: .lib section {in_section!r} is not closed with .endl")
    if section is not None and not found_section:
        raise NetlistValueError(f"{source}: no .lib section {section!r} in this file (name it as defined by '.lib {section}')")
    if section is not None and in_section is not None:
        raise NetlistValueError(f"{source}: .lib section {in_section!r} is not closed with .endl")
    return items


def _looks_like_file(token: str, base: Path) -> bool:
    # '.lib NAME' (a section definition) vs '.lib FILE' (ngspice: a whole library file); a path-like or existing name is a file
    name = token.strip("\"'")
    return "/" in name or "." in name or (base / name).is_file()


def _include(tokens: list[str], keyword: str, where: str, base: Path,
             own_control: Callable[[Sequence[str]], bool] | None, stack: list) -> list[_Item]:
    name = tokens[1].strip("\"'")
    section = tokens[2].lower() if keyword == ".lib" and len(tokens) > 2 else None
    path = Path(os.path.expanduser(name))
    if not path.is_absolute():
        path = base / path
    try:
        resolved = path.resolve(strict=True)
        if not resolved.is_file():  # /dev/zero, a fifo, a folder: never read
            raise NetlistValueError(f"{where}: {keyword} {name!r} is not a regular file ({resolved})")
        if resolved.stat().st_size > MAX_INCLUDE_BYTES:
            raise NetlistValueError(f"{where}: {keyword} file {name!r} is larger than {MAX_INCLUDE_BYTES >> 20} MiB")
        text = resolved.read_text(errors="replace")
    except OSError as exc:
        raise NetlistValueError(f"{where}: cannot read {keyword} file {name!r} (looked for {path}): "
                                f"{exc.strerror or exc}; fix the path (relative paths start at the including file)") from None
    key = (str(resolved), section)
    if key in stack:
        chain = " -> ".join(p for p, _ in stack[1:] + [key])
        raise UnsafeNetlistError(f"{where}: {keyword} cycle ({chain}); remove the circular include")
    if len(stack) > _MAX_DEPTH:
        raise UnsafeNetlistError(f"{where}: {keyword} nested deeper than {_MAX_DEPTH} files")
    stack.append(key)
    try:
        return _parse_file(_split_lines(text), 1, str(resolved), resolved.parent, own_control, stack, top=False,
                           section=section)
    finally:
        stack.pop()
