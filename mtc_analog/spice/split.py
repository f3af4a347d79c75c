"""Simulate a large feedforward network as several smaller netlists in parallel processes.

Why: the behavioural neuron costs super-linear time in one netlist (docs/reference.md §9: 100 neurons 1.9 s,
1000 neurons 52 s, B-source evaluation dominating). Splitting is *exact* for a feedforward network
because an OTA / transconductor input draws no current: a chunk of layer l sees the previous
layer only through its output voltages, and the readout is linear.

Procedure (layer by layer):

1. layer l is cut into contiguous chunks of at most ``max_neurons`` neurons; each chunk is one
   netlist whose inputs are the network's PWL input sources (l = 0) or XSPICE filesources replaying
   the previous layer's simulated outputs at the simulator's own time points (l > 0; a PWL source
   would do, but ngspice 39 evaluates PWL in time quadratic in its length);
2. the chunks of a layer run in parallel through the execution layer (:mod:`mtc_analog.execution`:
   a local Dask cluster by default, or an existing one); each chunk is one task that runs ngspice in
   its own process (:func:`~mtc_analog.spice.runner.run_jobs`, with its timeout and retries). On a
   remote cluster the work directory (replay files) must be on a file system the workers share;
3. chunks of the last layer also write their share of the readout current into a load equal to
   R_load (``rp<k>`` nodes); a final small netlist re-creates the sum with transconductors 1/R_load
   (linear superposition, exact) and runs the bias, the load and the low-pass cascade.

The merged :class:`Waveforms` lie on the final netlist's time grid (which carries every chunk's PWL
corners as breakpoints); chunk waveforms are linearly interpolated onto it.
"""

from __future__ import annotations

import math
import shutil
from typing import Any, Sequence

import numpy as np

import tempfile
from pathlib import Path

from ..errors import InputError
from ..execution import Execution
from .builder import ReplaySource, build_network_netlist, build_readout_netlist
from .parallel import run_parallel
from .runner import SimulationJob, iter_chunks, run_jobs
from .waveforms import Waveforms

#: Default largest chunk (neurons per netlist); docs/reference.md §9 measured 100 neurons at 1.9 s for 5 s of circuit time.
DEFAULT_MAX_NEURONS = 64


def plan_chunks(layer_sizes: Sequence[int], max_neurons: int) -> list[list[list[int]]]:
    """Per layer, the neuron indices of each chunk."""
    if max_neurons < 1:
        raise InputError(f"max_neurons (neurons per netlist) must be >= 1, got {max_neurons}; pass 1 or more, or None to not split")
    return [list(iter_chunks(list(range(n)), math.ceil(n / max_neurons))) for n in layer_sizes]


def simulate_network(
    net: Any,
    x: np.ndarray,
    max_neurons: int | None = DEFAULT_MAX_NEURONS,
    workers: int | None = None,
    timeout_s: float | None = None,
    probe_filters: bool = False,
    target_name: str = "behavioral",
    log_dir: str | None = None,
    execution: Execution | None = None,
    operating_point: bool = False,
) -> tuple[Waveforms, dict[str, Any]]:
    """Simulate ``net`` (a NetworkCircuit) on inputs ``x`` (T, n_in): one netlist if it fits in
    ``max_neurons`` per layer (or ``max_neurons=None``), else split. Returns (waveforms, node map).

    ``execution`` runs the chunks (default: a local Dask cluster of ``workers`` processes, started only
    when there is more than one chunk). ``operating_point``: save the OTAs' internal nodes and the supply
    current (see :func:`~mtc_analog.spice.builder.build_network_netlist`); one netlist only (split runs
    carry no ``"operating_point"`` entry in their node map)."""
    sizes = [layer.size for layer in net.layers]
    if max_neurons is None or max(sizes) <= max_neurons:
        netlist = build_network_netlist(net, x, probe_filters=probe_filters, target_name=target_name,
                                        operating_point=operating_point)
        waves = run_jobs([SimulationJob(netlist.render(control=False), None, "network")], workers=1,
                         timeout_s=timeout_s, log_dir=log_dir)[0]
        waves.meta["chunks"] = [[n] for n in sizes]
        return waves, netlist.nodes
    return simulate_network_split(net, x, max_neurons, workers, timeout_s, probe_filters, target_name, log_dir,
                                  execution)


def simulate_network_split(
    net: Any,
    x: np.ndarray,
    max_neurons: int = DEFAULT_MAX_NEURONS,
    workers: int | None = None,
    timeout_s: float | None = None,
    probe_filters: bool = False,
    target_name: str = "behavioral",
    log_dir: str | None = None,
    execution: Execution | None = None,
) -> tuple[Waveforms, dict[str, Any]]:
    """Always-split simulation (see the module docstring). Returns (merged waveforms, node map)."""
    own_execution = execution is None
    if own_execution:
        execution = Execution(workers=workers, progress=False)
    try:
        return _simulate_split(net, x, max_neurons, timeout_s, probe_filters, target_name, log_dir, execution)
    finally:
        if own_execution:
            execution.close()


def _simulate_split(net: Any, x: np.ndarray, max_neurons: int, timeout_s: float | None, probe_filters: bool,
                    target_name: str, log_dir: str | None, execution: Execution) -> tuple[Waveforms, dict[str, Any]]:
    sizes = [layer.size for layer in net.layers]
    plan = plan_chunks(sizes, max_neurons)
    n_layers = len(sizes)
    own_work = log_dir is None  # temporary replay files and logs: removed after success
    work = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="mtc_spice_split_"))
    work.mkdir(parents=True, exist_ok=True)
    chunk_waves: list[tuple[Waveforms, list[str]]] = []
    node_map: dict[str, Any] = {"kind": "network", "vrest": "vrest", "inputs": [], "input_current": None,
                                "layers": [[None] * n for n in sizes], "readout": [], "lowpass": []}
    replay: list[ReplaySource] = []
    partials: list[ReplaySource] = []
    timings: list[float] = []
    cpu: list[list[float]] = []  # per round (layer, then readout): CPU seconds of each netlist
    n_out = np.asarray(net.readout.gm).shape[0]
    for l, chunks in enumerate(plan):
        last = l == n_layers - 1
        netlists = [
            build_network_netlist(
                net, x, probe_filters=probe_filters, target_name=target_name,
                layer_inputs=None if l == 0 else {l: replay}, neuron_subset={l: chunk}, readout_partial=last,
                title=f"MTC network layer {l} neurons {chunk[0]}..{chunk[-1]} (split)",
            )
            for chunk in chunks
        ]
        results = run_parallel([SimulationJob(n.render(control=False), None, f"layer {l} chunk {c}")
                                for c, n in enumerate(netlists)], execution, timeout_s=timeout_s,
                               log_dir=work / f"layer{l}", desc=f"layer {l} chunks")
        replay = []
        cpu.append([float(w.meta.get("cpu_seconds", 0.0)) for w in results])
        for c, (chunk, netlist, waves) in enumerate(zip(chunks, netlists, results)):
            timings.append(float(waves.meta.get("seconds", 0.0)))
            entries = netlist.nodes["layers"][l]
            if l == 0:
                node_map["inputs"] = netlist.nodes["inputs"]
            for i, entry in zip(chunk, entries):
                node_map["layers"][l][i] = entry
            outputs = [entry["output"] for entry in entries]
            if not last:
                replay.append(ReplaySource.write(work / f"layer{l}_chunk{c}.txt", waves.time,
                                                 np.stack([waves[n] for n in outputs], axis=1), outputs))
            else:
                rp = [f"rp{k}" for k in range(n_out)]
                partials.append(ReplaySource.write(work / f"partial{c}.txt", waves.time,
                                                   np.stack([waves[n] for n in rp], axis=1), [f"c{c}rp{k}" for k in range(n_out)]))
            chunk_waves.append((waves, [n for n in waves.nodes if not n.startswith("rp")]))
    t_stop = np.asarray(x).shape[0] * net.sample_period
    readout_netlist = build_readout_netlist(net, partials, t_stop, target_name=target_name)
    final = run_jobs([SimulationJob(readout_netlist.render(control=False), None, "readout")], workers=1,
                     timeout_s=timeout_s, log_dir=work)[0]
    timings.append(float(final.meta.get("seconds", 0.0)))
    cpu.append([float(final.meta.get("cpu_seconds", 0.0))])
    voltages = {n: v for n, v in final.voltages.items() if not n.startswith("c")}
    for waves, nodes in chunk_waves:
        for node in nodes:
            if node not in voltages:
                voltages[node] = np.interp(final.time, waves.time, waves.voltages[node])
    node_map["readout"], node_map["lowpass"] = readout_netlist.nodes["readout"], readout_netlist.nodes["lowpass"]
    meta = {"chunks": [[len(c) for c in chunks] for chunks in plan], "simulator_seconds": timings, "cpu_seconds": cpu,
            "attempts": final.meta.get("attempts", [])}
    if own_work:
        shutil.rmtree(work, ignore_errors=True)
    else:
        meta["work_dir"] = str(work)
    return Waveforms(final.time, voltages, meta), node_map
