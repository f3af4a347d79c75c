"""Where the operating point of every sky130 OTA can be read: its internal nodes, by hierarchical name.

Used by the operating-point guard (:mod:`mtc_analog.validation.operating_point`) through the target hook
:meth:`~mtc_analog.spice.sky130.Sky130Target.operating_point_cells`: the builder gives the netlist body, this
module finds every OTA in it and says which nodes to save and what each one means.

Per cell (``netlists/sky130/``):

- ``ota5t`` (elements, ``filter_ota``): tail node ``t`` (drain of the tail nfet, source of the input pair);
- ``ota_lin`` (``leak_lin``, ``filter_linear``, synapses, readout load, ``lowpass_linear``): tail nodes ``ta``/``tb``
  and the sources of the output-side pair transistors ``a2``/``b2`` (the degeneration diodes sit between them
  and the tails).

The checks (a tail nfet needs ``V(tail) >= 4 U_T``, an output-side pair transistor ``V(out) - V(source) >=
4 U_T``, the output a margin from each rail) are the validation module's; this one only knows the cells.
Instance names are those the builder and the target's line writers give (lower case, as ngspice reports):
``Xl<l>n<i>`` neurons, ``XSl<l>_<i>_<j>`` synapses, ``XSro_<k>_<j>`` readout synapses, ``XRro<k>`` readout
loads, ``XLlp<k>_<s>`` low-pass stages.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from ..neuron.equations import ELEMENTS, TIMESCALES
from .sky130 import CELL_COPIES, library_filter_copies

_FILTER_PORT = {"fast": 1, "slow": -3, "ultraslow": -2}  #: index of each filter's node among the neuron's ports
_PATHS = {"ota5t": (("t",), ("t",)), "ota_lin": (("ta", "tb"), ("a2", "b2"))}  #: kind -> (tails, pair sources)


def _cell(where: dict[str, Any], cell: str, kind: str, path: str, out: str, subckt: str | None = None,
          scale: float = 1.0) -> dict[str, Any]:
    """``subckt``: the library subcircuit whose devices this cell is, for area counts (default: ``kind``;
    a synapse or the readout load wraps an ota_lin at its own matching), ``scale`` times (a filter built with
    other cell copies than the subcircuit's default)."""
    tails, sources = _PATHS[kind]
    return {**where, "cell": cell, "kind": kind, "subckt": subckt or kind, "scale": scale, "instance": path,
            "out": out.lower(), "tails": [f"{path}.{n}" for n in tails], "sources": [f"{path}.{n}" for n in sources]}


def _split(line: str) -> tuple[str, list[str], str, dict[str, str]]:
    """(instance, ports, subcircuit, params) of an ``X`` line."""
    tokens = line.split()
    params = dict(tok.split("=", 1) for tok in tokens[1:] if "=" in tok)
    plain = [tok for tok in tokens[1:] if "=" not in tok]
    return tokens[0].lower(), plain[:-1], plain[-1].lower(), params


def _present(value: str | None) -> bool:
    try:
        return value is not None and float(value) != 0.0
    except ValueError:  # a SPICE suffix (not written by our writers): count it as present
        return True


def operating_point_cells(body: Sequence[str]) -> list[dict[str, Any]]:
    """Every OTA instanced in ``body`` (netlist lines): location, kind, output node and internal nodes."""
    cells: list[dict[str, Any]] = []
    for line in body:
        if not line[:1] in ("X", "x"):
            continue
        inst, ports, sub, params = _split(line)
        if m := re.fullmatch(r"xl(\d+)n(\d+)", inst):
            where = {"layer": int(m[1]), "neuron": int(m[2]), "where": f"layer {m[1]} / neuron {m[2]}"}
            if not sub.startswith("mtc_neuron_"):
                continue
            membrane, filter_kind = ports[0], sub.split("_")[2]
            cells.append(_cell(where, "leak", "ota_lin", f"{inst}.x_leak.xl", membrane, "leak_lin"))
            for element in ELEMENTS:  # an element with no tail current is not wired (absent device)
                if _present(params.get(f"ib_{element.name}")):
                    cells.append(_cell(where, f"element {element.name}", "ota5t", f"{inst}.x_{element.name}.xota", membrane,
                                       "ota_vref_plus"))  # for area counts: the element cell (its tail matching)
            fast = len(ports) == 5
            for timescale in TIMESCALES:
                if timescale == "fast" and not fast:
                    continue
                default = library_filter_copies(filter_kind)  # the subcircuit's kc
                copies = float(params.get(f"mm_filt_{timescale}_kc", default))
                cells.append(_cell(where, f"filter {timescale}", "ota5t" if filter_kind == "ota" else "ota_lin",
                                   f"{inst}.x_filt_{timescale}.xota", ports[_FILTER_PORT[timescale]],
                                   None if filter_kind == "ota" else "filter_linear", copies / default))
        elif m := re.fullmatch(r"xsl(\d+)_(\d+)_(\d+)", inst):
            where = {"layer": int(m[1]), "neuron": int(m[2]), "where": f"layer {m[1]} / neuron {m[2]}"}
            source = "input" if m[1] == "0" else f"layer {int(m[1]) - 1} neuron"
            cells.append(_cell(where, f"synapse from {source} {m[3]}", "ota_lin", f"{inst}.xs", ports[0], sub))
        elif m := re.fullmatch(r"xsro_(\d+)_(\d+)", inst):
            cells.append(_cell({"layer": None, "neuron": None, "where": f"readout / output {m[1]}"},
                               f"synapse from neuron {m[2]}", "ota_lin", f"{inst}.xs", ports[0], sub,
                               float(params.get("kc", CELL_COPIES)) / CELL_COPIES))  # readout cells: more copies
        elif m := re.fullmatch(r"xrro(\d+)", inst):
            cells.append(_cell({"layer": None, "neuron": None, "where": f"readout / output {m[1]}"},
                               "load", "ota_lin", f"{inst}.xl", ports[0], sub))
        elif m := re.fullmatch(r"xllp(\d+)_(\d+)", inst):
            cells.append(_cell({"layer": None, "neuron": None, "where": f"readout / output {m[1]}"},
                               f"lowpass stage {m[2]}", "ota5t" if sub == "filter_ota" else "ota_lin",
                               f"{inst}.xota", ports[1], sub))
    return cells


__all__ = ["operating_point_cells"]
