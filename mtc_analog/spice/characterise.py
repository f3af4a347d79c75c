"""Network-level characterisation of a mapped sky130 network: every cell measured in situ, for the calibrated model.

    fits = characterise_network(circuit, execution=ex)          # circuit: a mapped NetworkCircuit
    spec = calibrate_network(unmap_network(circuit), fits, circuit.target)   # mtc_analog.hardware.calibration

What is measured (SI units; fitted here, folded into model parameters by
:func:`mtc_analog.hardware.calibration.calibrate_network`, which is pure):

- **neurons**, two short ngspice runs (DC sweep of the cells, AC probe of the neurons) per chunk of up to
  ``max_neurons`` neurons (chunks fan out through
  :class:`~mtc_analog.execution.Execution` when there are several): for each neuron, each element OTA with
  its output held at the neuron's rest voltage by a 0 V ammeter and its input swept over its own
  rest +- ``span`` (fit: I_sat+, I_sat-, offset, slope), the leak cell (a line over :data:`LEAK_RANGE`) and
  each filter cell (small-signal conductance), and the membrane node capacitance (AC probe at 100 kHz of the whole neuron
  at its operating point). The same measurements as :func:`mtc_analog.spice.sky130.characterise_neuron`,
  for many neurons per run: each neuron's swept node is its own rest voltage plus one shared sweep (E source),
  so neurons with different rest voltages share the run;
- **transconductors**, one run: every synapse (as the target writes it, :meth:`synapse_lines`), the readout
  load and the low-pass stages, each output held at v_rest by an ammeter, the input swept over
  +- ``TRANSCONDUCTOR_SPAN`` V_s. A synapse is reduced to a straight line ``I = g (v - v_rest) + I_0`` fitted
  over the input range it sees (layer 0: ``input_range`` in model units, e.g. the scored stream's span;
  deeper layers and the readout: the transduction output 0..1 V_s), the readout load over +-2 V_s of the
  readout node, the low-pass stages as small-signal conductances (+-0.5 V_s) and closed loop (their DC
  transfer over the readout range: gain ~0.99 per stage); plus one AC run probing each low-pass output node
  as the cascade loads it (total capacitance, ~+6 % over the capacitor, and feedback conductance).

Cell names (``ota_vref_plus/minus``, ``ota_lin``, ``ota5t``) are the sky130 library's: this module measures
the sky130 target (its :meth:`~mtc_analog.spice.sky130.Sky130Target.characterise_network` hook calls it).
"""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import SimulationError
from .builder import neuron_nodes
from .sky130 import CELL_COPIES, FILTER_MATCHING, LEAK_MATCHING, filter_copies
from .values import spice_number

#: Sweep half-width of the neuron cells [V]: every reference within +-1.5 V_s of rest and both tanh tails.
NEURON_SPAN = 0.4
#: Sweep step [V] (~18 points per V_s: plenty for a tanh fit).
SWEEP_STEP = 0.004
#: Sweep half-width of the transconductors [V_s].
TRANSCONDUCTOR_SPAN = 3.0
#: Fit range of hidden-layer synapses and the readout synapses [V_s above v_rest]: the transduction output.
GRADED_RANGE = (0.0, 1.0)
#: Fit range of the readout load [V_s around v_rest]: the z-scored prediction stays inside it.
READOUT_RANGE = (-2.0, 2.0)
#: Output sweep half-width [V] for output conductances (+-1.4 V_s: where membranes and the readout node swing).
OUTPUT_SPAN = 0.1
#: Small-signal range for the filters and the low-pass stages [V_s].
SMALL_SIGNAL = 0.5
#: Fit range of the leak [V_s around rest]: where membranes spend their time between spikes and plateaus.
#: ota_lin is a few % super-linear at 2 V_s; on the 2-neuron test network a +-2.5 V_s fit lowered the calibrated
#: model's membrane NRMSE against the circuit from 0.101 (+-0.5 V_s) to 0.090 (+-3.5 V_s: 0.111).
LEAK_RANGE = (-2.5, 2.5)
_OPTIONS = ".options reltol=1e-4 abstol=1e-15 gmin=1e-15"


def _num(x: float, what: str) -> str:
    return spice_number(x, f"characterisation / {what}")


def _run(lines: list[str], outputs: Sequence[str], label: str, workdir: str | None, timeout_s: float) -> dict[str, np.ndarray]:
    """Run one characterisation netlist in ``ngspice -b``; return its ``wrdata`` tables by file name."""
    from .runner import check_simulator

    check_simulator()
    with tempfile.TemporaryDirectory(prefix="mtc_char_", dir=workdir) as tmp:
        folder = Path(tmp)
        (folder / "char.cir").write_text("\n".join(lines) + "\n")
        try:
            proc = subprocess.run(["ngspice", "-b", "char.cir"], cwd=folder, capture_output=True, text=True,
                                  timeout=timeout_s)
            log = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired:
            raise SimulationError(f"characterisation run {label} did not finish within {timeout_s:g} s "
                                  "(raise --timeout or lower --max-neurons)") from None
        missing = [name for name in outputs if not (folder / name).exists()]
        if missing:
            raise SimulationError(f"characterisation run {label} failed: no {', '.join(missing)}", log_tail=log[-2000:])
        return {name: np.loadtxt(folder / name, skiprows=1, ndmin=2) for name in outputs}


# ---- neurons --------------------------------------------------------------------------------------
def neuron_chunk_lines(neurons: Sequence[Any], target: Any, spice_target: Any,
                       clamp_level: float = 0.0, instances: Sequence[str] | None = None
                       ) -> tuple[list[str], list[str], list[dict]]:
    """Two netlists characterising ``neurons`` (NeuronCircuits) and the column layout per neuron: the DC sweep of
    every cell, and the AC probe of every whole neuron. Two runs, because a neuron instance in the DC netlist
    would be re-solved at every sweep point for nothing (16 neurons: 45 s CPU in one run, see
    :func:`characterise_neuron_chunk`).

    The DC sweep source ``Vdx`` moves every neuron's swept node ``x<k> = v_rest_k + dx`` together; element
    outputs are held at rest + ``clamp_level`` V_s. ``instances``: each neuron's instance name in the network
    netlist (``l<layer>n<index>``); a target with transistor mismatch (``cell_mismatch``) then gives every cell
    the draws it has in that network, so a Monte-Carlo chip's own cells are measured."""
    from .builder import neuron_nodes

    instances = list(instances) if instances is not None else [f"n{k}" for k in range(len(neurons))]
    drawn = getattr(spice_target, "cell_mismatch", lambda key, kind: "")
    cells_of = getattr(spice_target, "neuron_cell_kinds", lambda neuron: {})
    variants = {spice_target.neuron_variant(n) for n in neurons}
    head = "* sky130 per-cell characterisation of a chunk of neurons (mtc_analog.spice.characterise)"
    dc_lines = [head, spice_target.library(set()), "Vdx dx 0 DC 0", "Vdo do 0 DC 0"]
    ac_lines = [head + ": membrane capacitance", spice_target.library(variants)]
    layout, dc_columns, ac_columns = [], [], []
    for k, neuron in enumerate(neurons):
        vr = float(neuron.v_rest)
        dc_lines += [f"Vr{k} r{k} 0 DC {_num(vr, 'V_rest')}", f"Ex{k} x{k} r{k} dx 0 1",
                     f"Vrc{k} rc{k} 0 DC {_num(vr + clamp_level * target.v_s, 'clamp')}", f"Ec{k} c{k} rc{k} do 0 1"]
        elements = [e for e in neuron.elements if e.tail_current > 0]
        kinds = cells_of(neuron)

        def mm(label: str, k: int = k, kinds: dict = kinds) -> str:
            return drawn(f"{instances[k]}/{label}", kinds[label]) if label in kinds else ""

        entry: dict[str, Any] = {"elements": [], "filters": []}
        for j, e in enumerate(elements):
            sub = "ota_vref_minus" if e.sign > 0 else "ota_vref_plus"
            dc_lines += [f"Ve{k}_{j} eo{k}_{j} c{k} DC 0",
                         f"Xe{k}_{j} eo{k}_{j} x{k} {sub} ib={_num(e.tail_current, 'ib')} "
                         f"vref={_num(e.v_ref, 'vref')} vs={_num(target.v_s, 'vs')}{mm(e.name)}"]
            entry["elements"].append((e, len(dc_columns)))
            dc_columns.append(f"i(Ve{k}_{j})")
        # leak: output and - input on the swept node through a 0 V ammeter, + input at the neuron's rest
        dc_lines += [f"Vam{k} x{k} lo{k} DC 0",
                     f"Xleak{k} lo{k} r{k} x{k} ota_lin g={_num(1 / neuron.r_leak, 'g')} km={LEAK_MATCHING} kc={CELL_COPIES}{mm('leak')}"]
        entry["leak"] = len(dc_columns)
        dc_columns.append(f"i(Vam{k})")
        for j, (ts, f) in enumerate((ts, f) for ts, f in neuron.filters.items() if f is not None):
            copies = filter_copies(float(f.bias_current))  # as the network's netlist builds it (sky130.filter_copies)
            cell = (f"ota_lin g={_num(f.bias_current / target.v_s, 'g')} km={FILTER_MATCHING} kc={copies}" if f.kind == "linear"
                    else f"ota5t ib={_num(f.bias_current, 'ib')} kc={copies}")
            dc_lines += [f"Vf{k}_{j} fo{k}_{j} 0 DC {_num(vr, 'clamp')}",
                         f"Xf{k}_{j} fo{k}_{j} x{k} fo{k}_{j} {cell}{mm('filt_' + ts)}"]
            entry["filters"].append((ts, f, len(dc_columns)))
            dc_columns.append(f"i(Vf{k}_{j})")
        # AC: the neuron itself at its operating point, 1 A AC into its membrane (neurons share no node but
        # ideal sources, so the responses do not mix)
        nodes = neuron_nodes(0, k, neuron.filters.get("fast") is not None)
        ac_lines += [f"Vrn{k} rn{k} 0 DC {_num(vr, 'V_rest')}"]
        ac_lines += spice_target.neuron_lines(instances[k], nodes, neuron, target.v_s, f"rn{k}", f"rn{k}")
        ac_lines.append(f"Iac{k} 0 {nodes.m} DC 0 AC 1")
        entry["ac"] = len(ac_columns)
        ac_columns.append(f"cm{k}")
        layout.append(entry)
    dc_lines += [_OPTIONS, ".control", "set wr_singlescale", "set wr_vecnames", "option numdgt=12",
                 f"dc Vdx {-NEURON_SPAN:.6f} {NEURON_SPAN:.6f} {SWEEP_STEP}", "wrdata dc.txt " + " ".join(dc_columns),
                 # element outputs swept with inputs at rest: their output conductance loads the membrane
                 f"dc Vdo {-OUTPUT_SPAN:.6f} {OUTPUT_SPAN:.6f} {SWEEP_STEP}", "wrdata out.txt " + " ".join(dc_columns),
                 "quit", ".endc", ".end"]
    ac_lines += [_OPTIONS, ".control", "set wr_singlescale", "set wr_vecnames", "option numdgt=12", "ac lin 1 1e5 1e5"]
    for k, neuron in enumerate(neurons):
        m = neuron_nodes(0, k, neuron.filters.get("fast") is not None).m
        ac_lines.append(f"let cm{k} = imag(1/v({m}))/(2*pi*1e5)")
    ac_lines += ["wrdata ac.txt " + " ".join(ac_columns), "quit", ".endc", ".end"]
    return dc_lines, ac_lines, layout


def fit_neuron_chunk(neurons: Sequence[Any], layout: list[dict], dc: np.ndarray, ac: np.ndarray, target: Any,
                     membrane_range: tuple[float, float] = LEAK_RANGE) -> list:
    """CellFits per neuron from one chunk's DC table (dx, columns...) and AC table. The leak is a straight line
    over ``membrane_range`` [V_s around rest] (the span the membranes cover: ota_lin is a few % super-linear at
    2 V_s, so a small-signal fit underestimates the leak of a depolarised membrane)."""
    from scipy.optimize import curve_fit

    from ..hardware.calibration import CellFits, ElementFit

    dx, cols = dc[:, 0], dc[:, 1:]
    ac_values = ac.reshape(-1)[1:] if ac.size > 1 else ac.reshape(-1)  # wrdata: frequency, then the values
    small = np.abs(dx) <= SMALL_SIGNAL * target.v_s
    fits = []
    for neuron, entry in zip(neurons, layout):
        vr = float(neuron.v_rest)
        elements = {}
        for e, col in entry["elements"]:
            sigma = -float(e.sign)  # sign -1 elements: current rises with the input

            def model(x, ip, im, c, vs, sigma=sigma):
                t = np.tanh(sigma * (x - c) / vs)
                return ip * (1 + t) / 2 - im * (1 - t) / 2

            try:
                (ip, im, c, vs), _ = curve_fit(model, vr + dx, cols[:, col],
                                               p0=[e.tail_current, e.tail_current, e.v_ref, target.v_s], maxfev=20000)
            except RuntimeError:  # no convergence (a reference outside the sweep): keep the mapped element
                continue
            elements[e.name] = ElementFit(float(ip), float(im), float(c - e.v_ref), float(vs), float(e.v_ref))
        leak = -cols[:, entry["leak"]]  # current the leak cell pushes into the swept node
        span = (dx >= membrane_range[0] * target.v_s - 1e-9) & (dx <= membrane_range[1] * target.v_s + 1e-9)
        slope, icpt = np.polyfit(dx[span], leak[span], 1)
        g_filters, c_filters, v_filter_off = {}, {}, {}
        for ts, f, col in entry["filters"]:
            g_filters[ts], v_filter_off[ts] = filter_line(dx[small], cols[:, col][small])
            c_filters[ts] = float(f.capacitance)
        fits.append(CellFits(elements, float(-slope), float(-icpt / slope), float(ac_values[entry["ac"]]),
                             g_filters, c_filters, v_filter_off=v_filter_off))
    return fits


def filter_line(dx: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """A filter cell's small-signal line from its DC sweep (input ``v_rest + dx``, output held at ``v_rest``,
    ``current`` into the output): its conductance ``g`` [S] and where its output settles above its input,
    ``I_0 / g`` [V] (the follower's offset)."""
    slope, icpt = np.polyfit(dx, current, 1)
    return float(slope), float(icpt / slope)


def characterise_neuron_chunk(item: dict[str, Any]) -> list:
    """One chunk (module level: Execution workers import it): ``item`` holds neurons, target, spice target."""
    neurons, target, spice_target = item["neurons"], item["target"], item["spice_target"]
    dc_lines, ac_lines, layout = neuron_chunk_lines(neurons, target, spice_target, item.get("clamp_level", 0.0),
                                                    item.get("instances"))
    timeout = item.get("timeout_s", 600.0)
    tables = _run(dc_lines, ("dc.txt", "out.txt"), item["label"] + " (DC)", item.get("workdir"), timeout)
    dc = tables["dc.txt"]
    ac = _run(ac_lines, ("ac.txt",), item["label"] + " (AC)", item.get("workdir"), timeout)["ac.txt"]
    fits = fit_neuron_chunk(neurons, layout, dc, ac, target, tuple(item.get("membrane_range", LEAK_RANGE)))
    return [dataclasses.replace(f, g_outputs=g) for f, g in zip(fits, element_output_conductance(layout, tables["out.txt"]))]


def element_output_conductance(layout: list[dict], table: np.ndarray) -> list[float]:
    """Per neuron: the summed output conductance [S] of its element OTAs (from the output sweep)."""
    do, cols = table[:, 0], table[:, 1:]
    return [float(sum(-np.polyfit(do, cols[:, col], 1)[0] for _, col in entry["elements"])) for entry in layout]


# ---- synapses, readout load, low-pass stages ------------------------------------------------------
def transconductor_lines(circuit: Any, spice_target: Any, readout_level: float = 0.0) -> tuple[list[str], dict[str, Any]]:
    """Netlist lines measuring every synapse, the readout load and the low-pass stages in one DC sweep of
    ``Vdx`` (input node ``sx = v_rest + dx``), and the column layout. The readout synapses' outputs and the
    low-pass stages sit at ``readout_level`` [V_s] above v_rest, where the readout node does (ota_lin offsets
    move with the common mode); the low-pass inputs sweep around it."""
    target = circuit.target
    vr = float(target.v_rest)
    v_out = vr + float(readout_level) * target.v_s  # where the readout node and the low-pass stages sit
    lines = ["* sky130 transconductor characterisation (mtc_analog.spice.characterise)", spice_target.library(set()),
             f"Vrest vrest 0 DC {_num(vr, 'V_rest')}", "Vdx dx 0 DC 0", "Esx sx vrest dx 0 1",
             f"Vlev lev 0 DC {_num(v_out, 'readout level')}", "Esl sl lev dx 0 1",
             "Vdo do 0 DC 0", "Eor orest vrest do 0 1", "Eol olev lev do 0 1"]
    columns: list[str] = []
    layout: dict[str, Any] = {"synapses": [], "readout": [], "load": [], "lowpass": []}

    def synapse(prefix: str, gm: float, place: tuple[str, str], clamp: str = "orest", readout: bool = False) -> int:
        lines.append(f"V{prefix} o{prefix} {clamp} DC 0")
        lines.extend(spice_target.synapse_lines(prefix, [f"o{prefix}"], ["sx"], np.array([[gm]]), "vrest",
                                                places=[place], readout=readout))
        columns.append(f"i(V{prefix})")
        return len(columns) - 1

    # each cell stands where it stands in the network netlist (builder's node names): a target with
    # transistor mismatch then gives it that chip's draws
    previous = [f"in{j}" for j in range(circuit.n_in)]
    for index, layer in enumerate(circuit.layers):
        gm = np.asarray(layer.synapse_gm, dtype=float)
        nodes = [neuron_nodes(index, i, False) for i in range(layer.size)]
        layout["synapses"].append([(i, j, synapse(f"s{index}_{i}_{j}", gm[i, j], (nodes[i].m, previous[j])))
                                   for i, j in zip(*np.nonzero(gm))])
        previous = [n.out for n in nodes]
    readout = circuit.readout
    gm = np.asarray(readout.gm, dtype=float)
    layout["readout"] = [(i, j, synapse(f"r_{i}_{j}", gm[i, j], (f"ro{i}", previous[j]), "olev", readout=True))
                         for i, j in zip(*np.nonzero(gm))]
    for k in range(gm.shape[0]):
        # load: its node swept (through an ammeter), the current it pushes into that node
        lines += [f"Vld{k} sx ld{k} DC 0",
                  *spice_target.readout_lines(f"ld{k}", f"ld{k}", readout.r_load, "vrest", place=f"ro{k}")]
        layout["load"].append(len(columns))
        columns.append(f"i(Vld{k})")
    # the low-pass stages are measured once, as output 0's cascade (its draws, with mismatch)
    for s, stage in enumerate(readout.lowpass):
        # follower: output held at v_rest, input swept -> current into the output = g (v_in - v_out)
        lines += [f"Vlp{s} lpi{s} 0 DC {_num(v_out, 'clamp')}",
                  *spice_target.lowpass_lines(f"lp{s}", "sl", f"lpi{s}", stage, target.v_s, place=f"lp0_{s}")]
        layout["lowpass"].append((stage, len(columns)))
        columns.append(f"i(Vlp{s})")
    layout["lowpass_closed"] = []
    for s, stage in enumerate(readout.lowpass):
        # the same stage closed loop (output free, input sx swept around v_rest): its DC transfer, whose slope
        # (~0.99: output conductance, offset moving with the common mode) the cascade multiplies
        lines += spice_target.lowpass_lines(f"lq{s}", "sx", f"lqo{s}", stage, target.v_s, place=f"lp0_{s}")
        layout["lowpass_closed"].append(len(columns))
        columns.append(f"v(lqo{s})")
    span = TRANSCONDUCTOR_SPAN * target.v_s
    lines += [_OPTIONS, ".control", "set wr_singlescale", "set wr_vecnames", "option numdgt=12",
              f"dc Vdx {-span:.6f} {span:.6f} {SWEEP_STEP}", "wrdata dc.txt " + " ".join(columns),
              # synapse outputs swept with their inputs at rest: output conductances load membranes and readout node
              f"dc Vdo {-OUTPUT_SPAN:.6f} {OUTPUT_SPAN:.6f} {SWEEP_STEP}", "wrdata out.txt " + " ".join(columns),
              "quit", ".endc", ".end"]
    return lines, layout


def lowpass_ac_lines(circuit: Any, spice_target: Any, readout_level: float = 0.0) -> list[str]:
    """Netlist lines of an AC probe of every low-pass stage's output node as the cascade loads it (the stage
    itself, input at the readout level, plus the next stage's input, as in the circuit): 1 A AC into each
    output; ``c<k>`` = the node's total capacitance [F] (the capacitor, the gates and junctions on it: the
    mapping counts only the capacitor), ``g<k>`` its conductance [S] (the stage's feedback: its own - input
    and output conductance), probed at ~1/(2 pi tau)."""
    from ..hardware.mapping import unmap_filter

    target, readout = circuit.target, circuit.readout
    order = len(readout.lowpass)
    freq = 1.0 / (2 * np.pi * unmap_filter(readout.lowpass[0], target) * target.t_unit)
    v_out = float(target.v_rest) + float(readout_level) * target.v_s
    lines = ["* sky130 low-pass node capacitance probe (mtc_analog.spice.characterise)", spice_target.library(set()),
             f"Vrest vrest 0 DC {_num(float(target.v_rest), 'V_rest')}", f"Vlev lev 0 DC {_num(v_out, 'readout level')}"]
    for k, stage in enumerate(readout.lowpass):
        lines += [*spice_target.lowpass_lines(f"lpa{k}", "lev", f"lpo{k}", stage, target.v_s, place=f"lp0_{k}"),
                  f"Iac{k} 0 lpo{k} DC 0 AC 1"]
        if k + 1 < order:  # the next stage's input gates sit on this node; its output is held (no feedback here)
            lines += [f"Vdm{k} lpd{k} lev DC 0",
                      *spice_target.lowpass_lines(f"lpd{k}", f"lpo{k}", f"lpd{k}", readout.lowpass[k + 1], target.v_s,
                                                  place=f"lp0_{k + 1}")]
    lines += [_OPTIONS, ".control", "set wr_singlescale", "set wr_vecnames", "option numdgt=12",
              f"ac lin 1 {freq:.6g} {freq:.6g}"]
    for k in range(order):
        lines += [f"let c{k} = imag(1/v(lpo{k}))/(2*pi*{freq:.6g})", f"let g{k} = real(1/v(lpo{k}))"]
    lines += ["wrdata ac.txt " + " ".join(f"c{k} g{k}" for k in range(order)), "quit", ".endc", ".end"]
    return lines


def _line(dx: np.ndarray, current: np.ndarray, v_range: tuple[float, float], v_s: float,
          anchored: bool = False) -> tuple[float, float]:
    """Least-squares ``I = g dx + I_0`` over ``v_range`` [V_s]: (g [S], I_0 [A]) (or a voltage: (gain, V_0 [V])).

    ``anchored``: ``I_0`` is the measured current at dx = 0 and only ``g`` is fitted — for graded inputs
    (transduction outputs), which sit at exactly 0 whenever their neuron is below threshold, most of the time."""
    lo, hi = min(v_range), max(v_range)
    if hi - lo < 0.2:  # a (nearly) constant input: the local slope around it
        lo, hi = lo - 0.1, hi + 0.1
    keep = (dx >= lo * v_s - 1e-9) & (dx <= hi * v_s + 1e-9)
    if anchored:
        i0 = float(np.interp(0.0, dx, current))
        g = float(np.sum(dx[keep] * (current[keep] - i0)) / np.sum(dx[keep] ** 2))
        return g, i0
    g, i0 = np.polyfit(dx[keep], current[keep], 1)
    return float(g), float(i0)


def characterise_transconductors(item: dict[str, Any]) -> dict[str, Any]:
    """Synapse, readout-load and low-pass fits of a network (module level: Execution workers import it)."""
    from ..hardware.calibration import TransconductorFits

    circuit, spice_target = item["circuit"], item["spice_target"]
    target = circuit.target
    readout_range = tuple(item.get("readout_range", READOUT_RANGE))
    level = 0.5 * (readout_range[0] + readout_range[1])
    lines, layout = transconductor_lines(circuit, spice_target, level)
    tables = _run(lines, ("dc.txt", "out.txt"), item["label"], item.get("workdir"), item.get("timeout_s", 600.0))
    ac_lines = lowpass_ac_lines(circuit, spice_target, level)
    ac = _run(ac_lines, ("ac.txt",), item["label"] + " (low-pass AC)", item.get("workdir"), item.get("timeout_s", 600.0))
    # wrdata (single scale): the frequency, then each vector's value; c<k> and g<k> are real
    values = ac["ac.txt"].reshape(-1)[1:]
    c_total, g_fb = values[0::2], values[1::2]
    dx, cols = tables["dc.txt"][:, 0], tables["dc.txt"][:, 1:]
    do, outs = tables["out.txt"][:, 0], tables["out.txt"][:, 1:]

    def g_out(col: int) -> float:  # current into the output falls as the output rises: conductance > 0
        # Theil-Sen (median of pairwise slopes): a sweep point can land on a spurious DC solution where every cell's
        # current jumps at once (seen with the readout's 16-copy cells: +35..137 nA at one of 51 points, which turned
        # a least-squares slope negative and the calibrated readout's load conductance below zero)
        from scipy.stats import theilslopes

        return float(-theilslopes(outs[:, col], do)[0])

    gm, offsets, g_outs = [], [], []
    for index, layer in enumerate(circuit.layers):
        measured = np.zeros_like(np.asarray(layer.synapse_gm, dtype=float))
        offset, g_o = np.zeros(measured.shape[0]), np.zeros(measured.shape[0])
        v_range = tuple(item["input_range"]) if index == 0 else GRADED_RANGE
        for i, j, col in layout["synapses"][index]:
            # the synapse pushes i(V) into its output: I = g_signed dx + I_0 (negative weights: g < 0)
            measured[i, j], i0 = _line(dx, cols[:, col], v_range, target.v_s, anchored=index > 0)
            offset[i] += i0
            g_o[i] += g_out(col)
        gm.append(measured)
        offsets.append(offset)
        g_outs.append(g_o)
    readout = circuit.readout
    r_gm = np.zeros_like(np.asarray(readout.gm, dtype=float))
    r_off, r_go = np.zeros(r_gm.shape[0]), np.zeros(r_gm.shape[0])
    for i, j, col in layout["readout"]:
        r_gm[i, j], i0 = _line(dx, cols[:, col], GRADED_RANGE, target.v_s, anchored=True)
        r_off[i] += i0
        r_go[i] += g_out(col)
    load_g, load_off = np.zeros(r_gm.shape[0]), np.zeros(r_gm.shape[0])
    for k, col in enumerate(layout["load"]):
        g, i0 = _line(dx, -cols[:, col], readout_range, target.v_s)  # into the node
        load_g[k], load_off[k] = -g, i0
    lowpass = [_line(dx, cols[:, col], (-SMALL_SIGNAL, SMALL_SIGNAL), target.v_s) for _, col in layout["lowpass"]]
    closed = []  # DC transfer of each stage closed loop over the readout range: (gain, offset [V_s] at v_rest)
    for col in layout["lowpass_closed"]:
        slope, icpt = _line(dx, cols[:, col] - float(target.v_rest), readout_range, target.v_s)
        closed.append((slope, icpt / target.v_s))
    return TransconductorFits(
        synapse_gm=gm, synapse_offset=offsets, readout_gm=r_gm, readout_offset=r_off,
        readout_load_g=load_g, readout_load_offset=load_off,
        lowpass_g=np.asarray([g for g, _ in lowpass], dtype=float),
        lowpass_c=np.asarray([stage.capacitance for stage in readout.lowpass], dtype=float),
        lowpass_offset=np.asarray([i0 for _, i0 in lowpass], dtype=float),
        synapse_g_out=g_outs, readout_g_out=r_go,
        lowpass_gain=np.asarray([a for a, _ in closed], dtype=float),
        lowpass_dc_offset=np.asarray([c for _, c in closed], dtype=float),
        lowpass_g_fb=np.asarray(g_fb, dtype=float), lowpass_c_total=np.asarray(c_total, dtype=float))


# ---- the network ------------------------------------------------------------------------------------
def characterise_network(circuit: Any, spice_target: Any, execution: Any = None, max_neurons: int | None = 64,
                         input_range: tuple[float, float] = (-2.0, 2.0),
                         readout_range: tuple[float, float] = READOUT_RANGE,
                         membrane_range: tuple[float, float] = LEAK_RANGE, element_clamp: float = 0.0,
                         workdir: str | None = None, timeout_s: float = 600.0):
    """Every cell of ``circuit`` (a mapped NetworkCircuit) measured: :class:`~mtc_analog.hardware.calibration.NetworkFits`.

    Runs: one per chunk of ``max_neurons`` neurons and one for the transconductors; with an ``execution``
    and more than two runs they fan out through it, otherwise they run here one after the other.
    ``input_range`` [model units]: the span of the network input the layer-0 synapses are fitted over;
    ``readout_range`` [V_s]: the span of the readout node (e.g. the model's readout) the load is fitted over."""
    from ..hardware.calibration import NetworkFits

    size = max_neurons or max(layer.size for layer in circuit.layers)
    items, where = [], []
    for index, layer in enumerate(circuit.layers):
        for start in range(0, layer.size, size):
            chunk = layer.neurons[start:start + size]
            items.append({"neurons": chunk, "target": circuit.target, "spice_target": spice_target,
                          "label": f"layer {index} neurons {start}-{start + len(chunk) - 1}",
                          "instances": [f"l{index}n{start + k}" for k in range(len(chunk))],
                          "workdir": workdir, "timeout_s": timeout_s, "clamp_level": element_clamp,
                          "membrane_range": tuple(membrane_range)})
            where.append(index)
    items.append({"circuit": circuit, "spice_target": spice_target, "input_range": tuple(input_range),
                  "readout_range": tuple(readout_range),
                  "label": "transconductors", "workdir": workdir, "timeout_s": timeout_s})
    functions = [characterise_neuron_chunk] * (len(items) - 1) + [characterise_transconductors]
    if execution is not None and len(items) > 2:
        results = execution.map(_dispatch, list(zip(functions, items)),
                                labels=[f"characterise-{k}" for k in range(len(items))], desc="characterise")
    else:
        results = [fn(item) for fn, item in zip(functions, items)]
    neurons: list[list] = [[] for _ in circuit.layers]
    for index, fits in zip(where, results[:-1]):
        neurons[index].extend(fits)
    return NetworkFits(neurons=neurons, transconductors=results[-1])


def _dispatch(pair: tuple) -> Any:
    fn, item = pair
    return fn(item)
