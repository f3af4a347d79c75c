"""A netlist as data (title, inlined library, body, initial conditions, transient, probes) and its text.

:meth:`Netlist.render` gives the stand-alone ``.cir`` text (runs with ``ngspice -b``; its ``.control``
block runs the transient and writes the probed waveforms as a binary SPICE rawfile next to the
netlist, or exits 1 when the transient stops early: see :func:`standalone_control`);
:meth:`Netlist.to_circuit` wraps the same text in a PySpice ``Circuit``. Netlist text is read back
only through :func:`read_netlist` (the checked statement parser of :mod:`.parse`), never by regexes.

Simulator settings (docs/reference.md §9): ``.options reltol=1e-4 abstol=1e-15 gmin=1e-15`` (pA-level slow filters
need both <= 1e-15), the maximum internal step TMAX pinned to at most the model's dt in seconds, and
``.ic`` for every node (reference nodes included, those inside the neuron subcircuit carry their
own). The transient is run *without* ``uic``: ngspice then holds every node at its ``.ic`` value for
the operating point and releases it at t = 0, so the waveform starts exactly at the initial state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import NetlistValueError
from .parse import Deck, Statement, read_deck
from .values import spice_comment, spice_filename, spice_name, spice_number

#: Default simulator options (docs/reference.md §9). The runner's retry policy overrides some of them.
DEFAULT_OPTIONS: dict[str, Any] = {"reltol": 1e-4, "abstol": 1e-15, "gmin": 1e-15, "vntol": 1e-7, "method": "trap"}
#: Name of the rawfile the stand-alone control block writes next to the netlist.
RAW_FILE = "waveforms.raw"

_TRAN_HINT = "'.tran TSTEP TSTOP [TSTART [TMAX]]'"
#: An extra saved vector: an internal node voltage by hierarchical name, or a voltage source's current.
_EXTRA_SAVE_RE = re.compile(r"v\([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\)|i\([A-Za-z_][A-Za-z0-9_]*\)")


@dataclass
class Netlist:
    """Everything ngspice needs for one transient run; node names already validated."""

    title: str
    library: str  #: subcircuit definitions, inlined
    body: list[str]  #: element and instance lines
    initial_conditions: dict[str, float]  #: node -> volts at t = 0
    t_stop: float  #: [s]
    t_max: float  #: maximum internal step [s] (<= model dt)
    probes: list[str]  #: nodes saved and written
    header: list[str] = field(default_factory=list)  #: comment lines (plain text)
    options: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_OPTIONS))
    raw_file: str = RAW_FILE
    nodes: dict[str, Any] = field(default_factory=dict)  #: which node carries what (see builder.node_map docs)
    #: further vectors to save: ``v(x1.x2.node)`` (internal nodes by hierarchical name) or ``i(vsource)``
    extra_saves: list[str] = field(default_factory=list)

    def option_line(self) -> str:
        parts = []
        for key, value in self.options.items():
            spice_name(key, "option name")
            if isinstance(value, str):
                parts.append(f"{key}={spice_name(value, f'option {key}')}")
            else:
                parts.append(f"{key}={spice_number(value, f'option {key}', positive=True)}")
        return ".options " + " ".join(parts)

    def tran_line(self) -> str:
        t_stop = spice_number(self.t_stop, "transient stop time", "s", positive=True)
        t_max = spice_number(self.t_max, "maximum time step TMAX", "s", positive=True)
        return f".tran {t_max} {t_stop} 0 {t_max}"

    def ic_lines(self, per_line: int = 6) -> list[str]:
        items = [f"v({spice_name(node, 'node')})={spice_number(v, f'initial voltage of {node}', 'V')}"
                 for node, v in self.initial_conditions.items()]
        return [".ic " + " ".join(items[k:k + per_line]) for k in range(0, len(items), per_line)]

    def save_lines(self, per_line: int = 8) -> list[str]:
        items = [f"v({spice_name(node, 'probe node')})" for node in self.probes]
        for item in self.extra_saves:
            if not _EXTRA_SAVE_RE.fullmatch(item):
                raise NetlistValueError(f"saved vector {item!r}: expected v(a.b.node) or i(source), letters, digits, '_' and '.'")
            items.append(item)
        return [".save " + " ".join(items[k:k + per_line]) for k in range(0, len(items), per_line)]

    def render(self, control: bool = True) -> str:
        """The netlist text; ``control=False`` leaves out the ``.control`` block (for shared mode)."""
        lines = [spice_comment(self.title, "title")]
        lines += [spice_comment(h, "header line") for h in self.header]
        lines += ["", "* ---- subcircuit library (inlined copies of netlists/) ----", self.library.rstrip("\n"), "",
                  "* ---- circuit ----"]
        lines += self.body
        lines += ["", "* ---- initial conditions: every node (the model's initial state in volts) ----"]
        lines += self.ic_lines()
        lines += ["", "* ---- simulator settings (docs/reference.md §9) ----", self.option_line(), self.tran_line()]
        lines += self.save_lines()
        if control:
            lines += ["", "* ---- stand-alone run: `ngspice -b network.cir` writes the probed waveforms next to this file;",
                      "* it first replaces any earlier rawfile (a placeholder without data), writes the waveforms only",
                      "* when the transient reached t_stop, and exits 1 otherwise ----"]
            lines += standalone_control(spice_filename(self.raw_file, "rawfile name"), self.t_stop)
        lines.append(".end")
        return "\n".join(lines) + "\n"

    def to_circuit(self) -> Any:
        """The same netlist as a PySpice ``Circuit`` (raw SPICE text inside; for PySpice users)."""
        from PySpice.Spice.Netlist import Circuit

        circuit = Circuit(self.title)
        text = self.render(control=False)
        body = text.split("\n", 1)[1].rsplit(".end", 1)[0]  # Circuit writes its own title and .end
        circuit.raw_spice = body
        return circuit


def standalone_control(raw_file: str, t_stop: float) -> list[str]:
    """The ``.control`` block of a stand-alone netlist (the only control block the runner accepts).

    ``quit 1`` unless the transient reached t_stop (ngspice -b would exit 0 after an aborted run);
    the first ``write`` replaces an earlier rawfile by a data-less placeholder, so a stale file can
    never pass for this run's result."""
    reached = spice_number(t_stop * (1 - 1e-6), "transient stop time", "s", positive=True)
    return [
        ".control",
        "set filetype=binary",
        f"write $inputdir/{raw_file}",
        "run",
        f"if time[length(time) - 1] >= {reached}",
        f"write $inputdir/{raw_file}",
        "quit 0",
        "end",
        'echo "mtc_analog: the transient did not reach t_stop: see the messages above"',
        "quit 1",
        ".endc",
    ]


_OWN_RAW_RE = re.compile(r"write \$inputdir/([A-Za-z0-9_][A-Za-z0-9_.\-]*)\Z")
_OWN_IF_RE = re.compile(r"if time\[length\(time\) - 1\] >= \d+(\.\d+)?(e[-+]?\d+)?\Z")
_LEGACY_CONTROL = (".control", "set filetype=binary", "run", "write $inputdir/{raw}", "quit 0", ".endc")


def is_own_control(lines: list[str] | tuple[str, ...]) -> bool:
    """Is this ``.control`` block (stripped non-blank lines) exactly one our exporter writes?

    Only exact copies pass (current and earlier releases); any other block is refused by the parser."""
    lines = [" ".join(line.split()) for line in lines]
    raws = {m.group(1) for line in lines for m in [_OWN_RAW_RE.match(line)] if m}
    if len(raws) != 1:
        return False
    raw = raws.pop()
    if lines == [line.format(raw=raw) for line in _LEGACY_CONTROL]:
        return True
    expected = standalone_control(raw, 1.0)
    if len(lines) != len(expected) or not _OWN_IF_RE.match(lines[4]):
        return False
    expected[4] = lines[4]
    return lines == expected


def read_netlist(text: str, path: Any = None) -> Deck:
    """Parse and check a netlist (see :mod:`.parse`); our own stand-alone control block is removed."""
    return read_deck(text, path, own_control=is_own_control)


def strip_control(text: str) -> str:
    """Netlist text for shared mode: our own ``.control`` block removed, includes inlined.

    A foreign control block (or any construct that runs commands) raises :class:`UnsafeNetlistError`."""
    return read_netlist(text).text()


def _tran(deck: Deck) -> Statement:
    trans = deck.find(".tran")
    if not trans:
        raise NetlistValueError(f"netlist has no {_TRAN_HINT} line: only transient analyses are supported; "
                                "add one (e.g. '.tran 1u 10m') or re-export it with `mtc-analog export`")
    if len(trans) > 1:
        raise NetlistValueError(f"netlist has {len(trans)} .tran lines ({', '.join(s.where for s in trans)}); keep one")
    tokens = [tok for tok in trans[0].tokens[1:] if tok.lower() != "uic"]
    if len(tokens) < 2:
        raise NetlistValueError(f"{trans[0].where}: {trans[0].text!r}: expected {_TRAN_HINT}")
    return trans[0]


def _tran_values(statement: Statement) -> list[float]:
    tokens = [tok for tok in statement.tokens[1:] if tok.lower() != "uic"]
    try:
        return [parse_spice_number(tok) for tok in tokens[:4]]
    except NetlistValueError as exc:
        raise NetlistValueError(f"{statement.where}: {statement.text!r}: {exc}; expected {_TRAN_HINT}") from None


def set_simulator_settings(text: str | Deck, options: dict[str, Any] | None = None, t_max: float | None = None) -> str:
    """Append ``.options`` overrides (later options win) and/or rewrite TMAX of the ``.tran`` statement."""
    deck = text if isinstance(text, Deck) else read_netlist(text)
    if options:  # checked before anything is changed
        line = Netlist("x", "", [], {}, 1.0, 1.0, [], options=dict(options)).option_line()
    if t_max is not None:
        statement = _tran(deck)
        values = _tran_values(statement)
        tmax = spice_number(t_max, "maximum time step TMAX", "s", positive=True)
        start = spice_number(values[2] if len(values) > 2 else 0.0, "transient start time", "s", nonnegative=True)
        stop = spice_number(values[1], "transient stop time", "s", positive=True)
        uic = " uic" if any(tok.lower() == "uic" for tok in statement.tokens) else ""
        deck.replace(statement, f".tran {tmax} {stop} {start} {tmax}{uic}")
    if options:
        deck.insert_before_end(line)
    return deck.text()


def tran_settings(text: str | Deck) -> tuple[float, float]:
    """(t_stop, t_max) [s] of the netlist's ``.tran`` statement; :class:`NetlistValueError` if it has none."""
    deck = text if isinstance(text, Deck) else read_netlist(text)
    values = _tran_values(_tran(deck))
    t_stop = values[1]
    if len(values) > 3:
        return t_stop, values[3]
    return t_stop, min(values[0], t_stop / 50)  # ngspice's default TMAX


def saved_nodes(deck: Deck) -> set[str] | None:
    """Nodes named by ``.save v(node)`` statements (lower case); None when the netlist saves everything."""
    saves = deck.find(".save")
    if not saves:
        return None
    nodes = set()
    for statement in saves:
        for token in statement.tokens[1:]:
            match = re.fullmatch(r"v\(([^,()]+)\)", token, re.I)
            if match:
                nodes.add(match.group(1).lower())
            elif token.lower() == "all":
                return None
            elif not token.startswith(("i(", "I(", "@")):
                nodes.add(token.lower())
    return nodes


_SUFFIX = {"t": 1e12, "g": 1e9, "meg": 1e6, "k": 1e3, "m": 1e-3, "mil": 25.4e-6, "u": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}
_NUMBER_RE = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)(meg|mil|[tgkmunpf])?[a-z]*$", re.I)


def parse_spice_number(text: str) -> float:
    """A SPICE number with an optional scale suffix (``2u``, ``1meg``, ``5e-5``)."""
    match = _NUMBER_RE.match(text.strip())
    if match is None:
        raise NetlistValueError(f"not a SPICE number: {text!r} (expected e.g. 2u, 1meg, 5e-5)")
    return float(match.group(1)) * _SUFFIX.get((match.group(2) or "").lower(), 1.0)
