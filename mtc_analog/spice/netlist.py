"""A netlist as data (title, inlined library, body, initial conditions, transient, probes) and its text.

:meth:`Netlist.render` gives the stand-alone ``.cir`` text (runs with ``ngspice -b``; its ``.control``
block runs the transient and writes the probed waveforms as a binary SPICE rawfile next to the
netlist); :meth:`Netlist.to_circuit` wraps the same text in a PySpice ``Circuit``.

Simulator settings (SPEC §9): ``.options reltol=1e-4 abstol=1e-15 gmin=1e-15`` (pA-level slow filters
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
from .values import spice_comment, spice_filename, spice_name, spice_number

#: Default simulator options (SPEC §9). The runner's retry policy overrides some of them.
DEFAULT_OPTIONS: dict[str, Any] = {"reltol": 1e-4, "abstol": 1e-15, "gmin": 1e-15, "vntol": 1e-7, "method": "trap"}
#: Name of the rawfile the stand-alone control block writes next to the netlist.
RAW_FILE = "waveforms.raw"

_CONTROL_RE = re.compile(r"^\.control\b.*?^\.endc\b[^\n]*\n?", re.S | re.M | re.I)
_TRAN_HINT = "'.tran TSTEP TSTOP [TSTART [TMAX]]'"
_TRAN_RE = re.compile(r"^\.tran\s+(\S+)\s+(\S+)(?:\s+(\S+))?(?:\s+(\S+))?[^\n]*$", re.M | re.I)


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
        lines += ["", "* ---- simulator settings (SPEC 9) ----", self.option_line(), self.tran_line()]
        lines += self.save_lines()
        if control:
            raw = spice_filename(self.raw_file, "rawfile name")
            lines += [
                "",
                "* ---- stand-alone run: `ngspice -b network.cir` writes the probed waveforms next to this file ----",
                ".control",
                "set filetype=binary",
                "run",
                f"write $inputdir/{raw}",
                "quit 0",  # batch mode otherwise exits 1 ("no .plot lines"); failures show in the log
                ".endc",
            ]
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


def strip_control(text: str) -> str:
    """Netlist text without its ``.control ... .endc`` block (shared mode drives the run itself)."""
    return _CONTROL_RE.sub("", text)


def set_simulator_settings(text: str, options: dict[str, Any] | None = None, t_max: float | None = None) -> str:
    """Append ``.options`` overrides (later options win) and/or rewrite TMAX of the ``.tran`` line."""
    if t_max is not None:
        match = _TRAN_RE.search(text)
        if match is None:
            raise NetlistValueError(f"netlist has no {_TRAN_HINT} line to rewrite; add one (e.g. '.tran 1u 10m')")
        tmax = spice_number(t_max, "maximum time step TMAX", "s", positive=True)
        text = text[:match.start()] + f".tran {tmax} {match.group(2)} {match.group(3) or 0} {tmax}" + text[match.end():]
    if options:
        line = Netlist("x", "", [], {}, 1.0, 1.0, [], options=dict(options)).option_line()
        text = _insert_before_end(text, line)
    return text


def tran_settings(text: str) -> tuple[float, float]:
    """(t_stop, t_max) [s] of the netlist's ``.tran`` line; :class:`NetlistValueError` if it has none."""
    match = _TRAN_RE.search(text)
    if match is None:
        raise NetlistValueError(f"netlist has no {_TRAN_HINT} line: only transient analyses are supported; "
                                "add one (e.g. '.tran 1u 10m') or re-export it with `mtc-analog export`")
    t_stop = parse_spice_number(match.group(2))
    if match.group(4):
        return t_stop, parse_spice_number(match.group(4))
    return t_stop, min(parse_spice_number(match.group(1)), t_stop / 50)  # ngspice's default TMAX


_SUFFIX = {"t": 1e12, "g": 1e9, "meg": 1e6, "k": 1e3, "m": 1e-3, "mil": 25.4e-6, "u": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}
_NUMBER_RE = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)(meg|mil|[tgkmunpf])?[a-z]*$", re.I)


def parse_spice_number(text: str) -> float:
    """A SPICE number with an optional scale suffix (``2u``, ``1meg``, ``5e-5``)."""
    match = _NUMBER_RE.match(text.strip())
    if match is None:
        raise NetlistValueError(f"not a SPICE number: {text!r} (expected e.g. 2u, 1meg, 5e-5)")
    return float(match.group(1)) * _SUFFIX.get((match.group(2) or "").lower(), 1.0)


def _insert_before_end(text: str, line: str) -> str:
    # before the .control block if any, else before .end
    match = re.search(r"^\.control\b", text, re.M | re.I) or re.search(r"^\.end\s*$", text, re.M | re.I)
    if match is None:
        return text + line + "\n"
    return text[:match.start()] + line + "\n" + text[match.start():]
