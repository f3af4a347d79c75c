"""Behavioural circuit target: ideal OTAs as B-sources (exact tanh), linear transconductors as G-sources.

The MTC neuron subcircuit is *generated* from :data:`mtc_analog.neuron.equations.ELEMENTS`: each
element becomes an ``ota_element`` whose input polarity carries the element's sign (docs/reference.md §8), reading
the node of its own state variable. Nothing here re-types the neuron equations:

    C_m dv_m/dt = -(v_m - v_rest)/R_l + I_in + sum_e  I_b,e * tanh(-sign_e * (v_x(e) - V_ref,e) / V_s)

which, with the mapping of §8, is ``tau_m dU/dt = -(U - U_rest) + R I_in - R I_tot``.
``netlists/behavioral/mtc_neuron.lib`` is a rendered copy of :func:`neuron_subckt` (kept in sync by a test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import NetlistValueError
from ..neuron.equations import ELEMENTS, TIMESCALES
from . import library
from .target import NeuronNodes
from .values import spice_comment, spice_name, spice_number, spice_numbers

#: Port of the neuron subcircuit carrying each model state variable (``u_f`` -> ``m`` without fast filter).
_STATE_PORT = {"u_m": "m", "u_f": "f", "u_s": "s", "u_us": "us"}
_FILTER_PORT = {"fast": "f", "slow": "s", "ultraslow": "us"}
FILTER_KINDS = ("linear", "ota")
TRANSDUCTION_KINDS = ("clip", "sigmoid")


def neuron_variant_name(filter_kind: str, fast_filter: bool) -> str:
    if filter_kind not in FILTER_KINDS:
        raise NetlistValueError(f"unknown filter kind {filter_kind!r}: expected one of {FILTER_KINDS}")
    return f"mtc_neuron_{filter_kind}" + ("" if fast_filter else "_nofast")


def neuron_ports(fast_filter: bool) -> list[str]:
    return ["m"] + (["f"] if fast_filter else []) + ["s", "us", "vrest"]


def neuron_params(fast_filter: bool) -> list[str]:
    """Subcircuit parameter names, in instance order."""
    names = ["cm", "rl", "vs"]
    for element in ELEMENTS:
        names += [f"ib_{element.name}", f"vref_{element.name}"]
    for timescale in TIMESCALES:
        if timescale == "fast" and not fast_filter:
            continue
        names += [f"c_filt_{timescale}", f"ib_filt_{timescale}"]
    return names


def mismatch_param(label: str, name: str) -> str:
    """Neuron parameter carrying parameter ``name`` of its cell ``X_<label>`` (see :func:`neuron_subckt`)."""
    return f"mm_{label}_{name}"


def neuron_subckt(filter_kind: str, fast_filter: bool, level: str = "",
                  leak: str = "R_l m vrest {rl}", notes: Sequence[str] = (),
                  cell_params: Any = None) -> str:
    """Text of the MTC neuron subcircuit for one filter kind, with or without the fast filter.

    Every circuit level shares this structure (membrane capacitor, leak, one OTA per element with its
    sign as input polarity, one follower-integrator per filter); a level names itself in ``level``,
    passes its own ``leak`` statement and extra comment lines (``notes``).

    ``cell_params`` (a level whose cells take per-device parameters, e.g. sky130's threshold shifts):
    ``cell_params(label)`` -> the parameter names of the cell instanced as ``X_<label>`` (``leak``, an
    element name, ``filt_<timescale>``), each a name (default 0) or a ``(name, default)`` pair; each becomes a
    neuron parameter ``mm_<label>_<name>`` (declared on one continuation line per cell) passed down on that
    cell's line."""
    header: list[str] = []

    def wired(line: str, label: str) -> str:
        names = [n if isinstance(n, tuple) else (n, 0) for n in (cell_params(label) if cell_params is not None else ())]
        if not names:
            return line
        header.append("+ " + " ".join(f"{mismatch_param(label, n)}={d}" for n, d in names))
        return line + "\n+ " + " ".join(f"{n}={{{mismatch_param(label, n)}}}" for n, _ in names)

    name = neuron_variant_name(filter_kind, fast_filter)
    ports = neuron_ports(fast_filter)
    lines = [
        f"* {name}: MTC neuron{level}, {filter_kind} follower-integrator filters, "
        + ("fast filter present (tau_f > 0)." if fast_filter else "no fast filter (tau_f = 0: the fast element reads v_m)."),
        "* Ports: " + " ".join(ports) + "   (membrane, filtered copies, resting-potential node)",
        "* Params: cm [F], rl [ohm], vs [V]; ib_<element> [A], vref_<element> [V]; c_filt_<timescale> [F], ib_filt_<timescale> [A].",
        *notes,
        "* Generated from mtc_analog.neuron.equations.ELEMENTS (sign -> OTA input polarity); do not edit by hand.",
        f".subckt {name} {' '.join(ports)} params: "
        + " ".join(f"{p}=0" if p not in ("cm", "rl", "vs") else f"{p}=1" for p in neuron_params(fast_filter)),
        "C_m m 0 {cm}",
        wired(leak, "leak"),
    ]
    for element in ELEMENTS:
        port = _STATE_PORT[element.variable]
        if port == "f" and not fast_filter:
            port = "m"
        # sign +1 (restoring): current into m = I_b tanh((V_ref - V_x)/V_s); sign -1 (regenerative): tanh((V_x - V_ref)/V_s)
        sub = "ota_vref_minus" if element.sign > 0 else "ota_vref_plus"
        lines += [
            f"* element {element.name}: sign {element.sign:+d}, reads {element.variable} ({element.timescale} timescale)",
            wired(f"X_{element.name} m {port} {sub} ib={{ib_{element.name}}} vref={{vref_{element.name}}} vs={{vs}}",
                  element.name),
        ]
    for timescale in TIMESCALES:
        if timescale == "fast" and not fast_filter:
            continue
        port = _FILTER_PORT[timescale]
        lines.append(wired(
            f"X_filt_{timescale} m {port} filter_{filter_kind} c={{c_filt_{timescale}}} ib={{ib_filt_{timescale}}} vs={{vs}}",
            f"filt_{timescale}"))
    lines.append(f".ends {name}")
    at = next(k for k, line in enumerate(lines) if line.startswith(".subckt")) + 1
    lines[at:at] = header
    return "\n".join(lines) + "\n"


def _has_fast_filter(circuit: Any) -> bool:
    return circuit.filters.get("fast") is not None


class BehavioralTarget:
    """Ideal behavioural OTAs: exact tanh B-sources, linear G-source transconductors, ideal capacitors."""

    name = "behavioral"
    library_dir = library.NETLIST_DIR / "behavioral"

    def neuron_variant(self, circuit: Any) -> str:
        kinds = {f.kind for f in circuit.filters.values() if f is not None}
        if len(kinds) != 1:
            raise NetlistValueError(f"a neuron's filters must share one kind (linear or ota), got {sorted(kinds)}")
        return neuron_variant_name(kinds.pop(), _has_fast_filter(circuit))

    def library(self, variants: set[str]) -> str:
        parts = [library.read(self.library_dir / f) for f in
                 ("ota_element.lib", "follower_integrator.lib", "transduction.lib", "synapse.lib", "readout.lib")]
        for variant in sorted(variants):
            kind = variant.split("_")[2]
            parts.append(neuron_subckt(kind, not variant.endswith("_nofast")))
        return "\n".join(parts)

    def neuron_lines(self, instance: str, nodes: NeuronNodes, circuit: Any, v_s: float, vrest_node: str,
                     leak_node: str | None = None) -> list[str]:
        spice_name(instance, "neuron instance name")
        fast = _has_fast_filter(circuit)
        if fast != (nodes.f is not None):
            raise NetlistValueError(f"neuron {instance}: fast-filter node given = {nodes.f is not None} but circuit has fast filter = {fast}")
        where = f"neuron {instance}"
        values = {
            "cm": spice_number(circuit.c_m, f"{where} / C_m", "F", positive=True),
            "rl": spice_number(circuit.r_leak, f"{where} / R_l", "ohm", positive=True),
            "vs": spice_number(v_s, "V_s", "V", positive=True),
        }
        by_name = {e.name: e for e in circuit.elements}
        for element in ELEMENTS:
            mapped = by_name.get(element.name)
            if mapped is None:
                raise NetlistValueError(f"{where}: element {element.name!r} missing from the mapped circuit")
            if int(mapped.sign) != element.sign:
                raise NetlistValueError(f"{where} / element {element.name}: mapped sign {mapped.sign} != model sign {element.sign}")
            values[f"ib_{element.name}"] = spice_number(mapped.tail_current, f"{where} / element {element.name} / tail current", "A", nonnegative=True)
            values[f"vref_{element.name}"] = spice_number(mapped.v_ref, f"{where} / element {element.name} / V_ref", "V")
        for timescale in TIMESCALES:
            filt = circuit.filters.get(timescale)
            if filt is None:
                if timescale != "fast":
                    raise NetlistValueError(f"{where}: the {timescale} filter is missing (only the fast one may be instantaneous)")
                continue
            values[f"c_filt_{timescale}"] = spice_number(filt.capacitance, f"{where} / {timescale} filter / C", "F", positive=True)
            values[f"ib_filt_{timescale}"] = spice_number(filt.bias_current, f"{where} / {timescale} filter / bias", "A", positive=True)
        ports = [nodes.m] + ([nodes.f] if fast else []) + [nodes.s, nodes.us, leak_node or vrest_node]
        for port in ports:
            spice_name(port, f"{where} node")
        params = " ".join(f"{k}={values[k]}" for k in neuron_params(fast))
        lines = [f"X{instance} {' '.join(ports)} {self.neuron_variant(circuit)} {params}"]
        lines.append(self.transduction_line(instance, nodes, circuit.transduction, v_s, vrest_node))
        return lines

    def transduction_line(self, instance: str, nodes: NeuronNodes, tr: Any, v_s: float, vrest_node: str) -> str:
        where = f"neuron {instance} / transduction"
        vs = spice_number(v_s, "V_s", "V", positive=True)
        spice_name(nodes.out, f"{where} output node")
        if tr.kind == "clip":
            vth = spice_number(tr.v_th, f"{where} / V_th", "V")
            vsat = spice_number(tr.v_sat, f"{where} / V_sat", "V")
            if not float(tr.v_sat) > float(tr.v_th):
                raise NetlistValueError(f"{where}: V_sat = {tr.v_sat} V must be above V_th = {tr.v_th} V")
            return f"XT{instance} {nodes.out} {nodes.m} {vrest_node} transduction_clip vth={vth} vsat={vsat} vs={vs}"
        if tr.kind == "sigmoid":
            vc = spice_number(tr.v_c, f"{where} / V_c", "V")
            return f"XT{instance} {nodes.out} {nodes.m} {vrest_node} transduction_sigmoid vc={vc} vs={vs}"
        raise NetlistValueError(f"{where}: unknown kind {tr.kind!r}, expected one of {TRANSDUCTION_KINDS}")

    def internal_initial_conditions(self, instance: str, circuit: Any) -> dict[str, float]:
        return {}  # no internal nodes: references are folded into the OTA expressions

    def operating_point_cells(self, body: Sequence[str]) -> list[dict[str, Any]]:
        """OTAs of ``body`` whose internal nodes the operating-point guard reads: none (ideal B-sources)."""
        return []

    def supply_source(self) -> tuple[str, float] | None:
        """(voltage source, volts) feeding every cell, for power: none (ideal cells draw no supply)."""
        return None

    def synapse_lines(self, prefix: str, out_nodes: Sequence[str], in_nodes: Sequence[str], gm: np.ndarray,
                      vrest_node: str, places: Sequence[tuple[str, str] | None] | None = None,
                      readout: bool = False) -> list[str]:
        gm = np.asarray(gm, dtype=np.float64)
        if gm.shape != (len(out_nodes), len(in_nodes)):
            raise NetlistValueError(f"synapses {prefix}: gm has shape {gm.shape}, expected {(len(out_nodes), len(in_nodes))}")
        text = spice_numbers(gm, f"synapses {prefix} / g_m", "S")
        rows, cols = np.nonzero(gm)  # a zero weight is no transconductor at all
        return [f"XS{prefix}_{i}_{j} {out_nodes[i]} {in_nodes[j]} {vrest_node} synapse gm={text[i, j]}"
                for i, j in zip(rows.tolist(), cols.tolist())]

    def bias_lines(self, prefix: str, nodes: Sequence[str], current: np.ndarray) -> list[str]:
        current = np.asarray(current, dtype=np.float64).reshape(-1)
        text = spice_numbers(current, f"bias currents {prefix}", "A")
        # "I n+ n- value": positive current flows from n+ through the source to n-, i.e. into the node.
        return [f"IB{prefix}_{i} 0 {nodes[i]} DC {text[i]}" for i in np.nonzero(current)[0].tolist()]

    def readout_lines(self, prefix: str, out_node: str, r_load: float, vrest_node: str,
                      place: str | None = None, stand_in: bool = False) -> list[str]:
        r = spice_number(r_load, f"readout {prefix} / R_load", "ohm", positive=True)
        return [f"XR{prefix} {spice_name(out_node)} {vrest_node} readout_load rload={r}"]

    def lowpass_lines(self, prefix: str, in_node: str, out_node: str, stage: Any, v_s: float,
                      place: str | None = None) -> list[str]:
        where = f"low-pass {prefix}"
        c = spice_number(stage.capacitance, f"{where} / C", "F", positive=True)
        ib = spice_number(stage.bias_current, f"{where} / bias", "A", positive=True)
        vs = spice_number(v_s, "V_s", "V", positive=True)
        # a low-pass stage is a first-order follower-integrator: the same subcircuits as the MTC filters
        sub = "filter_linear" if getattr(stage, "kind", "linear") == "linear" else "filter_ota"
        return [f"XL{prefix} {spice_name(in_node)} {spice_name(out_node)} {sub} c={c} ib={ib} vs={vs}"]


TARGET = BehavioralTarget()


def render_neuron_library() -> str:
    """Text of ``netlists/behavioral/mtc_neuron.lib`` (all four variants)."""
    head = [
        spice_comment("mtc_neuron_<filter>[_nofast] - the MTC neuron (behavioural), generated from"),
        spice_comment("mtc_analog.neuron.equations.ELEMENTS by mtc_analog.spice.behavioral.render_neuron_library()."),
        spice_comment("Models: C_m dv/dt = -(v - v_rest)/R_l + I_in + sum of the four OTA element currents;"),
        spice_comment("each filter node follows v_m through a follower-integrator (linear or OTA/tanh)."),
        spice_comment("Needs ota_element.lib and follower_integrator.lib. Units: F, ohm, V, A."),
        "",
    ]
    body = [neuron_subckt(kind, fast) for kind in FILTER_KINDS for fast in (True, False)]
    return "\n".join(head) + "\n".join(body)


def neuron_library_path() -> Path:
    return BehavioralTarget.library_dir / "mtc_neuron.lib"
