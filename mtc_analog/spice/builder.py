"""Assemble netlists for one neuron or a whole mapped network, from a circuit target and the library.

Node naming (all checked identifiers): ``vrest`` (the V_rest reference), ``in<j>`` (network input j,
``v = v_rest + x V_s``), ``l<layer>n<i>_m|_f|_s|_us|_o`` (membrane, filters, transduction output of
neuron i), ``ro<k>`` (readout summing node, ``v_rest + y0 V_s``), ``lp<k>_<stage>`` (low-pass stages,
the last one is the prediction). A single neuron is ``l0n0_*`` driven by a PWL current into ``l0n0_m``.

The node map (``Netlist.nodes``, written into mapping.json)::

    {"kind": "neuron" | "network", "vrest": "vrest", "inputs": ["in0", ...], "input_current": node|None,
     "layers": [[{"membrane": n, "filters": {"fast": n|None, "slow": n, "ultraslow": n}, "output": n}, ...], ...],
     "readout": ["ro0", ...], "lowpass": [["lp0_0", ..., "lp0_3"], ...]}

Time alignment with the discrete model: circuit time 0 is the model's initial state; model step t
(the state *after* consuming input t) corresponds to circuit time ``(t + 1) * dt``. An input sample k is
held over ``[k P, (k+1) P)`` (P = sample period), with a linear edge of :data:`EDGE_FRACTION` * TMAX
ending at ``k P``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError, NetlistValueError
from ..neuron.equations import MTCState
from .netlist import Netlist
from .target import CircuitTarget, NeuronNodes, get_target
from .values import spice_name, spice_numbers

VREST = "vrest"
#: Width of a PWL input edge, as a fraction of TMAX (a sharper edge costs ngspice ~50 % more time points
#: after every sample change for no gain: the model itself is only O(dt) accurate).
EDGE_FRACTION = 5e-2
#: PWL points per continuation line.
_PWL_PER_LINE = 8


def neuron_nodes(layer: int, index: int, fast_filter: bool) -> NeuronNodes:
    p = f"l{layer}n{index}"
    return NeuronNodes(m=f"{p}_m", f=f"{p}_f" if fast_filter else None, s=f"{p}_s", us=f"{p}_us", out=f"{p}_o")


def _node_entry(nodes: NeuronNodes) -> dict[str, Any]:
    return {"membrane": nodes.m, "filters": {"fast": nodes.f, "slow": nodes.s, "ultraslow": nodes.us}, "output": nodes.out}


def pwl_lines(name: str, kind: str, node: str, times: np.ndarray, values: np.ndarray, what: str) -> list[str]:
    """A PWL voltage source (``kind="V"``, node to ground) or current source (``"I"``, into the node)."""
    spice_name(name, "source name")
    spice_name(node, "node")
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or times.size < 1 or np.any(np.diff(times) <= 0) or times[0] < 0:
        raise NetlistValueError(f"{what}: PWL times must be a non-empty, strictly increasing sequence >= 0 s")
    t_text = spice_numbers(times, f"{what} times", "s")
    v_text = spice_numbers(values, f"{what} values", "V" if kind == "V" else "A")
    pairs = [f"{t} {v}" for t, v in zip(t_text.tolist(), v_text.tolist())]
    head = f"{kind}{name} {node} 0" if kind == "V" else f"{kind}{name} 0 {node}"
    lines = [head + " PWL("]
    for k in range(0, len(pairs), _PWL_PER_LINE):
        lines.append("+ " + " ".join(pairs[k:k + _PWL_PER_LINE]))
    lines.append("+ )")
    return lines


def bsource_pwl_lines(name: str, node: str, times: np.ndarray, values: np.ndarray, what: str) -> list[str]:
    """A voltage at ``node`` from a B-source ``V = pwl(time, ...)``: the same waveform as a PWL source, but
    without a simulator breakpoint at every corner (ngspice cuts the step to a tenth after each breakpoint
    and regrows it 2x per step: ~12 timepoints per sample instead of ~1; measured on the sky130 target)."""
    spice_name(name, "source name")
    spice_name(node, "node")
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or times.size < 2 or np.any(np.diff(times) <= 0) or times[0] < 0:
        raise NetlistValueError(f"{what}: PWL times must be a strictly increasing sequence >= 0 s of 2 or more points")
    values = np.asarray(values, dtype=float)
    # pwl() extrapolates its last segment (a PWL source holds the last value): end on a flat segment
    times = np.append(times, times[-1] + max(times[-1], 1e-9))
    values = np.append(values, values[-1])
    t_text = spice_numbers(times, f"{what} times", "s")
    v_text = spice_numbers(values, f"{what} values", "V")
    pairs = [f"{t},{v}" for t, v in zip(t_text.tolist(), v_text.tolist())]
    lines = [f"B{name} {node} 0 V = pwl(time,"]
    for k in range(0, len(pairs), _PWL_PER_LINE):
        lines.append("+ " + ",".join(pairs[k:k + _PWL_PER_LINE]) + ("," if k + _PWL_PER_LINE < len(pairs) else ")"))
    return lines


def held_samples_pwl(samples: np.ndarray, period: float, edge: float) -> tuple[np.ndarray, np.ndarray]:
    """PWL (times, values) of samples each held for ``period`` [s], edges of width ``edge`` ending at k*period."""
    samples = np.asarray(samples, dtype=float)
    n = samples.shape[0]
    if n == 0:
        raise InputError("the input has no samples")
    starts = np.arange(n) * period
    times = np.empty(2 * n - 1)
    values = np.empty((2 * n - 1,) + samples.shape[1:])
    times[0], values[0] = 0.0, samples[0]
    times[1::2] = starts[1:] - edge  # end of the previous sample's plateau
    values[1::2] = samples[:-1]
    times[2::2] = starts[1:]
    values[2::2] = samples[1:]
    return times, values


@dataclass(frozen=True)
class ReplaySource:
    """Node voltages simulated elsewhere, replayed into a netlist by an XSPICE ``filesource``.

    ``path`` holds rows ``time v_1 ... v_K`` [s, V] (linear interpolation between rows). Used only by
    split simulations (internal files), never in exported netlists. A long PWL source would do the
    same but costs time quadratic in its length in ngspice 39 (16k points: 12 s).
    """

    path: str
    nodes: tuple[str, ...]
    initial_volts: tuple[float, ...]

    @classmethod
    def write(cls, path: str | Path, times: np.ndarray, volts: np.ndarray, nodes: Sequence[str]) -> "ReplaySource":
        volts = np.asarray(volts, dtype=float).reshape(len(times), len(nodes))
        np.savetxt(path, np.column_stack([np.asarray(times, dtype=float), volts]), fmt="%.15g")
        return cls(str(path), tuple(nodes), tuple(float(v) for v in volts[0]))


_PATH_RE = re.compile(r"[A-Za-z0-9_./\-]+\Z")


def replay_lines(name: str, source: ReplaySource) -> list[str]:
    """An XSPICE filesource driving ``source.nodes`` (to ground) from its data file."""
    spice_name(name, "replay source name")
    if not _PATH_RE.match(source.path):
        raise NetlistValueError(f"replay file path {source.path!r} must be made of letters, digits and _ . / - only")
    ports = " ".join(f"{spice_name(n, 'replayed node')} 0" for n in source.nodes)
    k = len(source.nodes)
    return [
        f"A{name} %vd([{ports}]) {name}_model",
        f".model {name}_model filesource (file=\"{source.path}\" amploffset=[{' '.join(['0'] * k)}] "
        f"amplscale=[{' '.join(['1'] * k)}] timeoffset=0 timescale=1 timerelative=false amplstep=false)",
    ]


def _transduce_numpy(u_m: np.ndarray, transduction: Any) -> np.ndarray:
    import torch

    from ..neuron.step import transduce

    return transduce(torch.as_tensor(np.asarray(u_m, dtype=np.float64)), transduction).numpy()


def _initial_voltages(target: Any, circuit: Any, state: MTCState | None, model_params: Any) -> dict[str, float]:
    """Volts of (m, f, s, us, out) from a model state (default: every variable at the neuron's U_rest)."""
    from ..hardware.mapping import unmap_neuron

    params, transduction, _ = model_params or unmap_neuron(circuit, target)
    if state is None:
        state = MTCState(*([float(params.u_rest)] * 4))
    u = {k: float(np.asarray(v).reshape(())) for k, v in state._asdict().items()}
    volts = {k: float(target.voltage(v)) for k, v in u.items()}
    s = float(_transduce_numpy(np.array(u["u_m"]), transduction))
    volts["out"] = float(target.voltage(s))
    return volts


def _neuron_block(target_impl: CircuitTarget, target: Any, layer: int, index: int, circuit: Any,
                  state: MTCState | None) -> tuple[list[str], dict[str, float], NeuronNodes]:
    fast = circuit.filters.get("fast") is not None
    nodes = neuron_nodes(layer, index, fast)
    rest_node = VREST
    lines: list[str] = []
    ic: dict[str, float] = {}
    if not np.isclose(circuit.v_rest, target.v_rest, rtol=0, atol=1e-12):
        rest_node = f"l{layer}n{index}_rest"  # a neuron with U_rest != 0 leaks towards its own rest voltage
        lines += [f"V{rest_node} {rest_node} 0 DC {spice_numbers(np.array([circuit.v_rest]), f'{rest_node}', 'V')[0]}"]
        ic[rest_node] = circuit.v_rest
    lines += target_impl.neuron_lines(f"l{layer}n{index}", nodes, circuit, target.v_s, VREST, rest_node)
    volts = _initial_voltages(target, circuit, state, None)
    ic[nodes.m] = volts["u_m"]
    if nodes.f is not None:
        ic[nodes.f] = volts["u_f"]
    ic[nodes.s] = volts["u_s"]
    ic[nodes.us] = volts["u_us"]
    ic[nodes.out] = volts["out"]
    ic.update(target_impl.internal_initial_conditions(f"l{layer}n{index}", circuit))
    return lines, ic, nodes


def build_neuron_netlist(
    circuit: Any,
    target: Any,
    current_times: Sequence[float],
    current_amps: Sequence[float],
    t_stop: float,
    t_max: float,
    initial_state: MTCState | None = None,
    target_name: str = "behavioral",
    title: str = "MTC neuron (mtc_analog)",
    header: Sequence[str] = (),
    operating_point: bool = False,
) -> Netlist:
    """One neuron (a mapped :class:`~mtc_analog.hardware.NeuronCircuit`) driven by a PWL current [A].

    ``initial_state`` is in model units (V_s), default every variable at U_rest. Probes: membrane,
    filters and output. ``operating_point``: as for :func:`build_network_netlist`.
    """
    impl = get_target(target_name)
    lines, ic, nodes = _neuron_block(impl, target, 0, 0, circuit, initial_state)
    body = [f"V{VREST} {VREST} 0 DC {spice_numbers(np.array([target.v_rest]), 'V_rest', 'V')[0]}"]
    body += ["* input current [A] into the membrane"]
    body += pwl_lines("in0", "I", nodes.m, np.asarray(current_times), np.asarray(current_amps), "input current")
    body += ["* neuron l0n0 and its transduction stage"] + lines
    ic = {VREST: target.v_rest, **ic}
    probes = [n for n in (nodes.m, nodes.f, nodes.s, nodes.us, nodes.out) if n is not None]
    node_map = {"kind": "neuron", "vrest": VREST, "inputs": [], "input_current": nodes.m,
                "layers": [[_node_entry(nodes)]], "readout": [], "lowpass": []}
    extra_saves = operating_point_saves(impl, body, probes, node_map) if operating_point else []
    return Netlist(title, impl.library({impl.neuron_variant(circuit)}), body, ic, float(t_stop), float(t_max),
                   probes, header=list(header), nodes=node_map, extra_saves=extra_saves)


def step_current(i0: float, i1: float, t_step: float, t_stop: float, edge: float) -> tuple[np.ndarray, np.ndarray]:
    """PWL (times, values) of a current step from ``i0`` to ``i1`` at ``t_step`` (any consistent units)."""
    if not 0 < t_step < t_stop:
        return np.array([0.0]), np.array([i0 if t_step >= t_stop else i1])
    return np.array([0.0, t_step - edge, t_step]), np.array([i0, i0, i1])


def build_network_netlist(
    net: Any,
    x: np.ndarray,
    initial_states: Sequence[MTCState] | None = None,
    probe_filters: bool = False,
    target_name: str = "behavioral",
    title: str = "MTC network (mtc_analog)",
    header: Sequence[str] = (),
    layer_inputs: dict[int, Sequence["ReplaySource"]] | None = None,
    neuron_subset: dict[int, Sequence[int]] | None = None,
    readout_partial: bool = False,
    operating_point: bool = False,
) -> Netlist:
    """A whole mapped network (:class:`~mtc_analog.hardware.NetworkCircuit`) driven by input samples.

    ``x``: (T, n_in) input samples in model units, each held for ``net.sample_period``; the input node
    j is a PWL voltage source at ``v_rest + x_j V_s``. ``initial_states``: per layer, an MTCState of
    (N,) arrays in model units (default: every variable at U_rest). Probes: membranes, outputs,
    readout and low-pass nodes (and filters with ``probe_filters``).

    Splitting (used by :func:`mtc_analog.spice.split.simulate_network_split`): ``neuron_subset`` keeps
    only some neurons per layer; ``layer_inputs[l]`` (a list of :class:`ReplaySource`, covering every
    previous-layer output node in order) replaces layer l's inputs by the previous layer's simulated outputs; ``readout_partial`` writes,
    instead of the readout and low-pass, one partial-sum node per output ``rp<k>`` at
    ``v_rest + R_load * (this chunk's share of the readout current)`` (exact by linear superposition).

    ``operating_point``: also save what the target's hooks name (``operating_point_cells``: the OTAs' internal
    nodes; ``supply_source``: the supply current) and list them in the node map under ``"operating_point"``
    (``{"cells": [...], "supply": {"source", "volts"} | None}``), for the transient operating-point guard and
    the power figures (:mod:`mtc_analog.validation.operating_point`, :mod:`mtc_analog.validation.power`).
    """
    impl = get_target(target_name)
    target = net.target
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] != net.n_in:
        raise InputError(f"network input must have shape (T, {net.n_in}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InputError("network input contains NaN or Inf")
    from ..hardware.ranges import check_input_range

    check_input_range(x, target)  # PWL source voltages, like every mapped value, inside the rails
    t_stop = x.shape[0] * net.sample_period
    edge = EDGE_FRACTION * net.t_step
    n_layers = len(net.layers)
    subset = {l: list(range(net.layers[l].size)) for l in range(n_layers)}
    if neuron_subset is not None:
        subset = {l: list(neuron_subset.get(l, [])) for l in range(n_layers)}
    layer_inputs = layer_inputs or {}

    body = [f"V{VREST} {VREST} 0 DC {spice_numbers(np.array([target.v_rest]), 'V_rest', 'V')[0]}"]
    ic: dict[str, float] = {VREST: target.v_rest}
    node_map: dict[str, Any] = {"kind": "network", "vrest": VREST, "inputs": [], "input_current": None,
                                "layers": [], "readout": [], "lowpass": []}
    variants: set[str] = set()
    first = min((l for l in range(n_layers) if subset[l]), default=0)

    # inputs of the first simulated layer: the network input, or the previous layer's outputs
    if first in layer_inputs:
        prev_nodes = []
        body.append(f"* layer {first - 1} outputs (simulated in other netlists), replayed from files [V]")
        for c, source in enumerate(layer_inputs[first]):
            body += replay_lines(f"rep{c}", source)
            ic.update(dict(zip(source.nodes, source.initial_volts)))
            prev_nodes += list(source.nodes)
    else:
        times, values = held_samples_pwl(x, net.sample_period, edge)
        prev_nodes = [f"in{j}" for j in range(net.n_in)]
        body.append("* network inputs: v = v_rest + x * V_s, one sample held per sample period")
        for j, node in enumerate(prev_nodes):
            volts = target.voltage(values[:, j])
            if getattr(impl, "breakpoint_free_inputs", False) and len(times) > 1:
                body += bsource_pwl_lines(node, node, times, volts, f"input {j}")
            else:
                body += pwl_lines(node, "V", node, times, volts, f"input {j}")
            ic[node] = float(volts[0])
        node_map["inputs"] = prev_nodes
        first = 0

    s_prev_model = None  # initial graded outputs of the previous layer (model units) for readout IC
    last_outputs: list[str] = []
    for l in range(n_layers):
        layer = net.layers[l]
        chosen = subset[l]
        if l < first:
            node_map["layers"].append([])
            continue
        if not chosen:
            break
        state = initial_states[l] if initial_states is not None else None
        entries, out_nodes, s0 = [], [], []
        body.append(f"* ---- layer {l}: {len(chosen)} of {layer.size} neurons ----")
        for i in chosen:
            neuron = layer.neurons[i]
            st = None if state is None else MTCState(*(np.asarray(v).reshape(-1)[i] for v in state))
            lines, nic, nodes = _neuron_block(impl, target, l, i, neuron, st)
            variants.add(impl.neuron_variant(neuron))
            body += lines
            ic.update(nic)
            entries.append(_node_entry(nodes))
            out_nodes.append(nodes.out)
            s0.append(target.model_voltage(nic[nodes.out]))
        gm = np.asarray(layer.synapse_gm, dtype=float)[chosen]
        body.append(f"* synapses into layer {l}: I_i = sum_j gm_ij (v_j - v_rest) [S]")
        body += impl.synapse_lines(f"l{l}", [f"l{l}n{i}_m" for i in chosen], prev_nodes, gm, VREST)
        body += impl.bias_lines(f"l{l}", [f"l{l}n{i}_m" for i in chosen], np.asarray(layer.bias_current, dtype=float)[chosen])
        node_map["layers"].append(entries)
        prev_nodes = out_nodes
        s_prev_model = np.asarray(s0)
        last_outputs = chosen
        if neuron_subset is not None and l + 1 < n_layers and not subset.get(l + 1):
            break  # a split chunk simulates one layer

    readout = net.readout
    probes = list(node_map["inputs"])
    for entry in (e for layer in node_map["layers"] for e in layer):
        probes += [entry["membrane"], entry["output"]]
        if probe_filters:
            probes += [n for n in entry["filters"].values() if n is not None]
    is_last_layer = len(node_map["layers"]) == n_layers and bool(subset[n_layers - 1])
    if is_last_layer:
        gm = np.asarray(readout.gm, dtype=float)[:, last_outputs]
        n_out = gm.shape[0]
        i0 = gm @ (s_prev_model * target.v_s)
        if readout_partial:
            body.append("* partial readout: this chunk's share of the readout current into R_load (exact superposition)")
            rp = [f"rp{k}" for k in range(n_out)]
            # the chip's readout synapses (their place: into ro<k>) into a stand-in copy of the load
            places = [(f"ro{i}", prev_nodes[j]) for i, j in zip(*(index.tolist() for index in np.nonzero(gm)))]
            body += impl.synapse_lines("rp", rp, prev_nodes, gm, VREST, places=places, readout=True)
            for k, node in enumerate(rp):
                body += impl.readout_lines(f"rp{k}", node, readout.r_load, VREST, stand_in=True)
                ic[node] = float(target.v_rest + readout.r_load * i0[k])
            node_map["readout_partial"] = rp
            probes += rp
        else:
            body.append("* readout: transconductors summing into R_load, then the low-pass cascade")
            ro = [f"ro{k}" for k in range(n_out)]
            body += impl.synapse_lines("ro", ro, prev_nodes, gm, VREST, readout=True)
            body += impl.bias_lines("ro", ro, np.asarray(readout.bias_current, dtype=float))
            lp_all = []
            for k, node in enumerate(ro):
                body += impl.readout_lines(f"ro{k}", node, readout.r_load, VREST)
                ic[node] = float(target.v_rest + readout.r_load * (i0[k] + float(np.asarray(readout.bias_current).reshape(-1)[k])))
                prev, stages = node, []
                for st, stage in enumerate(readout.lowpass):
                    lp = f"lp{k}_{st}"
                    body += impl.lowpass_lines(f"lp{k}_{st}", prev, lp, stage, target.v_s)
                    ic[lp] = target.v_rest  # the model's low-pass starts at 0
                    stages.append(lp)
                    prev = lp
                lp_all.append(stages)
            node_map["readout"], node_map["lowpass"] = ro, lp_all
            probes += ro + [n for stages in lp_all for n in stages]
    extra_saves = operating_point_saves(impl, body, probes, node_map) if operating_point else []
    return Netlist(title, impl.library(variants), body, ic, t_stop, float(net.t_step), probes,
                   header=list(header), nodes=node_map, extra_saves=extra_saves)


def operating_point_saves(impl: CircuitTarget, body: Sequence[str], probes: Sequence[str],
                          node_map: dict[str, Any]) -> list[str]:
    """The vectors the operating-point guard and the power figures need (from the target's hooks); records
    the cells and the supply in ``node_map["operating_point"]``. Nothing for a target without such hooks."""
    cells_of = getattr(impl, "operating_point_cells", None)
    supply_of = getattr(impl, "supply_source", None)
    cells = cells_of(body) if cells_of else []
    supply = supply_of() if supply_of else None
    node_map["operating_point"] = {"cells": cells,
                                   "supply": None if supply is None else {"source": supply[0], "volts": float(supply[1])}}
    probed = {p.lower() for p in probes}
    internal = dict.fromkeys(n for c in cells for n in [c["out"], *c["tails"], *c["sources"]] if n not in probed)
    return [f"v({n})" for n in internal] + ([f"i({supply[0]})"] if supply else [])


def build_readout_netlist(net: Any, partials: Sequence["ReplaySource"], t_stop: float,
                          target_name: str = "behavioral", title: str = "MTC readout (split)") -> Netlist:
    """The readout and low-pass driven by the partial readout sums of the chunks (replayed from files).

    Each chunk c delivers ``v_c(t) = v_rest + R_load * I_c(t)`` on its nodes ``rp<k>``; a transconductor
    ``1/R_load`` per chunk re-creates ``I_c`` in the summing node, so the sum is exact.
    """
    impl = get_target(target_name)
    target = net.target
    readout = net.readout
    n_out = np.asarray(readout.gm).shape[0]
    body = [f"V{VREST} {VREST} 0 DC {spice_numbers(np.array([target.v_rest]), 'V_rest', 'V')[0]}"]
    ic: dict[str, float] = {VREST: target.v_rest}
    ro = [f"ro{k}" for k in range(n_out)]
    lp_all = []
    for c, source in enumerate(partials):
        if len(source.nodes) != n_out:
            raise NetlistValueError(f"partial readout {c} has {len(source.nodes)} nodes, expected {n_out}")
        body += replay_lines(f"part{c}", source)
        ic.update(dict(zip(source.nodes, source.initial_volts)))
        body += impl.synapse_lines(f"c{c}", ro, list(source.nodes), np.eye(n_out) / readout.r_load, VREST,
                                   places=[None] * n_out, readout=True)  # stand-ins recreating the chunk's share
    body += impl.bias_lines("ro", ro, np.asarray(readout.bias_current, dtype=float))
    for k, node in enumerate(ro):
        body += impl.readout_lines(f"ro{k}", node, readout.r_load, VREST)
        i_sum = sum((float(source.initial_volts[k]) - target.v_rest) / readout.r_load for source in partials)
        ic[node] = float(target.v_rest + readout.r_load * (i_sum + float(np.asarray(readout.bias_current).reshape(-1)[k])))
        prev, stages = node, []
        for st, stage in enumerate(readout.lowpass):
            lp = f"lp{k}_{st}"
            body += impl.lowpass_lines(lp, prev, lp, stage, target.v_s)
            ic[lp] = target.v_rest
            stages.append(lp)
            prev = lp
        lp_all.append(stages)
    probes = ro + [n for stages in lp_all for n in stages]
    node_map = {"kind": "readout", "vrest": VREST, "inputs": [], "input_current": None, "layers": [],
                "readout": ro, "lowpass": lp_all}
    return Netlist(title, impl.library(set()), body, ic, float(t_stop), float(net.t_step), probes, nodes=node_map)


__all__ = ["ReplaySource", "replay_lines", "bsource_pwl_lines", "build_neuron_netlist", "build_network_netlist", "build_readout_netlist", "held_samples_pwl", "pwl_lines",
           "step_current", "neuron_nodes", "VREST"]
