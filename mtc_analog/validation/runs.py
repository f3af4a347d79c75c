"""Model-versus-circuit runs: drive the discrete model and its ngspice circuit with the same input.

    result = validate_network(network, task, ValidationSettings(circuit_filter="linear"))
    result.summary["spike_coincidence"], result.summary["output_nrmse_vs_model"]

The input is a contiguous stretch of the task's test split, preceded by ``washout`` samples (the
same warm-up the training's evaluation uses), so both runs start from rest and see identical data.
The model is the trained :class:`~mtc_analog.network.SpikingRegressor` (its own dt, method and
filter); the circuit is its :meth:`to_spec` mapped onto a hardware target (optionally with the other
filter kind, to measure what the slew-limited OTA filter costs) and simulated by ngspice. Circuit
waveforms come back to model units only through the target (:mod:`.align`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import HardwareRangeError, InputError
from ..neuron.spikes import spike_level
from .align import model_time_grid, resample, to_model_units
from .fidelity import Comparison, Thresholds, Traces, compare, spike_trains

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class ValidationSettings:
    """How to validate. Units: ``window_steps`` in model steps (Gamma's window = window_steps * dt)."""

    target: Any = None  #: HardwareTarget (None: the behavioural defaults)
    circuit_filter: str | None = None  #: "linear" | "ota" for the circuit's neuron filters (None: as trained)
    samples: int = 200  #: scored test samples
    washout: int = 100  #: warm-up samples streamed before them (part of both runs, not of the task score)
    thresholds: Thresholds = field(default_factory=Thresholds)
    window_steps: float = 2.0  #: coincidence window in model steps (docs/reference.md §10: e.g. 2 dt)
    clip: bool = False  #: clip out-of-range mapped values instead of failing (changes are reported)
    max_neurons: int | None = 64  #: largest netlist chunk (split simulation above it)
    workers: int | None = None  #: local-cluster worker processes for the chunks (None: one per core)
    scheduler: str | None = None  #: Dask scheduler address for the chunks (None: $MTC_ANALOG_SCHEDULER or local)
    timeout_s: float | None = 600.0  #: per ngspice run
    circuit_target: str = "behavioral"  #: circuit level (netlist target module)
    operating_point: bool = True  #: save OTA internal nodes + supply current: operating-point guard and power
    #: design-time compensation rounds before simulating (characterise -> calibrate -> re-map; targets that can be
    #: characterised only, :mod:`.compensated`); 0: the circuit as the ideal mapping builds it
    compensate: int = 0


@dataclass
class ValidationResult:
    """Everything a report needs: the numbers (``summary``, JSON-able) and the traces behind them."""

    summary: dict[str, Any]
    comparison: Comparison
    model: Traces
    circuit: Traces
    ground_truth: np.ndarray  #: (T, n_out) z-scored target of the streamed samples
    network_circuit: Any  #: the mapped NetworkCircuit that was simulated
    spike_thresholds: list[float]
    score_from_sample: int
    circuit_native: dict[str, Any] = field(default_factory=dict)  #: native time [t_u] + membranes, for dt studies
    range_changes: list = field(default_factory=list)  #: mapped values changed to fit the target (RangeChange)
    #: the network as the ideal mapping builds it (NetworkSpec), which compensation aimed at (None: no compensation)
    compensation_target: Any = None


# ------------------------------------------------------------------------------------------ input


def scoring_stream(task: Any, samples: int, washout: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(x, y, lead)``: the first ``samples`` test samples with up to ``washout`` samples before them."""
    part = task.split("test")
    if samples < 1:
        raise InputError(f"--samples must be >= 1, got {samples}")
    if samples > len(part):
        raise InputError(f"--samples {samples} exceeds the test split ({len(part)} samples)")
    first = max(0, part.start - int(washout))
    stop = part.start + samples
    return task.x[first:stop].astype(np.float64), task.y[first:stop].astype(np.float64), part.start - first


# ------------------------------------------------------------------------------------------ model


def model_traces(network: Any, x: np.ndarray, threshold: float, label: str = "model", deviation: Any = None) -> Traces:
    """Run ``network`` (a SpikingRegressor) on ``x`` (T, n_in), batch 1, and collect its traces (``deviation``:
    as :meth:`~mtc_analog.network.SpikingRegressor.forward`)."""
    from ..training.evaluate import stream

    output = stream(network, x, record_membrane=True, deviation=deviation)
    membranes = [u[:, 0, :].double().numpy() for u in output.hidden_u]
    grid = model_time_grid(membranes[0].shape[0], network.config.dt)
    return Traces(
        time=grid,
        membrane=membranes,
        lowpass=output.lowpass[:, 0, :].double().numpy(),
        prediction=output.prediction[:, 0, :].double().numpy(),
        spike_times=[spike_trains(grid, u, threshold) for u in membranes],
        label=label,
    )


def rediscretised(network: Any, refine: int, method: str) -> Any:
    """The same trained network with dt / ``refine``, ``substeps * refine`` and ``method``.

    Same weights and neuron parameters (the state dict carries over); only the discretisation
    changes, so comparing it with the circuit isolates discretisation error.
    """
    from ..network import NetworkConfig, SpikingRegressor

    cfg = dataclasses.replace(network.config, dt=network.config.dt / refine,
                              substeps=network.config.substeps * refine, method=method)
    refined = SpikingRegressor(NetworkConfig.from_dict(cfg.to_dict()))
    refined.load_state_dict(network.state_dict())
    return refined


# ---------------------------------------------------------------------------------------- circuit


def map_for_validation(network: Any, settings: ValidationSettings) -> tuple[Any, list]:
    """The network's spec mapped onto the target (circuit filter overridden), ranges enforced."""
    from ..hardware import enforce_ranges, load_target, map_network

    target = settings.target if settings.target is not None else load_target(None)
    spec = network.to_spec()
    if settings.circuit_filter is not None:
        for layer in spec.layers:
            layer.filter = settings.circuit_filter
    circuit = map_network(spec, target)
    try:
        circuit, changes = enforce_ranges(circuit, target, clip=settings.clip)
    except HardwareRangeError as exc:
        raise HardwareRangeError(
            exc.violations,
            f"the network does not fit the hardware target {target.name!r}: "
            f"{len(exc.violations)} mapped value(s) outside its range",
        ) from None
    return circuit, changes


def simulate_circuit(circuit: Any, x: np.ndarray, settings: ValidationSettings,
                     target: Any = None) -> tuple[Any, dict[str, Any]]:
    """ngspice transient of ``circuit`` on ``x``; (Waveforms, node map). ``target``: a circuit target object
    instead of ``settings.circuit_target`` (e.g. one with a Monte-Carlo instance's device mismatch)."""
    from ..execution import Execution
    from ..spice.split import simulate_network

    # The cluster starts only if the network is split into more than one chunk.
    with Execution(scheduler=settings.scheduler, workers=settings.workers, progress=False,
                   requirements=("ngspice",)) as execution:
        return simulate_network(circuit, x, max_neurons=settings.max_neurons, timeout_s=settings.timeout_s,
                                target_name=settings.circuit_target if target is None else target, execution=execution,
                                operating_point=settings.operating_point)


def circuit_traces(waves: Any, nodes: dict[str, Any], target: Any, dt: float, substeps: int,
                   n_steps: int, thresholds: list[float]) -> tuple[Traces, dict[str, Any]]:
    """Circuit waveforms -> :class:`Traces` on the model grid (spikes from the native time points)."""
    time_model = target.model_time(waves.time)
    grid = model_time_grid(n_steps, dt)
    membranes, native_membranes, trains = [], [], []
    for layer, entries in enumerate(nodes["layers"]):
        volts = np.stack([waves[e["membrane"]] for e in entries], axis=1)
        _, u_native = to_model_units(target, waves.time, volts)
        native_membranes.append(u_native)
        membranes.append(resample(time_model, u_native, grid))
        trains.append(spike_trains(time_model, u_native, thresholds[layer]))
    lp_volts = np.stack([waves[stages[-1]] for stages in nodes["lowpass"]], axis=1)
    _, lowpass_native = to_model_units(target, waves.time, lp_volts)
    lowpass = resample(time_model, lowpass_native, grid)
    traces = Traces(grid, membranes, lowpass, lowpass[substeps - 1 :: substeps], trains, label="circuit")
    native = {"time": time_model, "membrane": native_membranes, "lowpass": lowpass_native}
    return traces, native


def traces_on_grid(native: dict[str, Any], dt: float, substeps: int, n_steps: int,
                   trains: list[list[np.ndarray]]) -> Traces:
    """The circuit's native waveforms resampled onto another model grid (for the dt study)."""
    grid = model_time_grid(n_steps, dt)
    membranes = [resample(native["time"], u, grid) for u in native["membrane"]]
    lowpass = resample(native["time"], native["lowpass"], grid)
    return Traces(grid, membranes, lowpass, lowpass[substeps - 1 :: substeps], trains, label="circuit")


# ------------------------------------------------------------------------------------------ main


def validate_network(network: Any, task: Any, settings: ValidationSettings = ValidationSettings(),
                     progress: Progress = _quiet) -> ValidationResult:
    """Run model and circuit on the same test input and compare them (docs/reference.md §10)."""
    cfg = network.config
    if cfg.neuron != "mtc":
        raise InputError(f"only MTC networks have a circuit; this checkpoint holds a {cfg.neuron!r} network")
    x, y, lead = scoring_stream(task, settings.samples, settings.washout)
    n_steps = x.shape[0] * cfg.substeps
    thresholds = [spike_level(cfg)] * len(cfg.hidden)
    progress(f"mapping {sum(cfg.hidden)} neurons onto the {settings.circuit_target} target "
             f"(circuit filter {settings.circuit_filter or cfg.filter})")
    circuit, changes = map_for_validation(network, settings)
    progress(f"running the model on {x.shape[0]} samples ({n_steps} steps of dt = {cfg.dt} t_u)")
    model = model_traces(network, x, thresholds[0])
    compensation, wanted = None, None
    if settings.compensate:
        from ..hardware import unmap_network
        from .compensated import compensate_circuit

        wanted = unmap_network(circuit)
        circuit, compensation = compensate_circuit(circuit, settings, x, model.lowpass, settings.compensate, progress)
    progress(f"simulating the circuit in ngspice ({n_steps * cfg.dt:g} t_u = "
             f"{circuit.target.seconds(n_steps * cfg.dt):g} s of circuit time, TMAX = dt)")
    start = time.perf_counter()
    waves, nodes = simulate_circuit(circuit, x, settings)
    sim_wall = time.perf_counter() - start
    circ, native = circuit_traces(waves, nodes, circuit.target, cfg.dt, cfg.substeps, n_steps, thresholds)
    window = settings.window_steps * cfg.dt
    comparison = compare(model, circ, window, target=y, thresholds=settings.thresholds, score_from_sample=lead)
    summary = dict(comparison.summary)
    summary["setup"] = {
        "hidden": list(cfg.hidden), "dt": cfg.dt, "substeps": cfg.substeps, "model_method": cfg.method,
        "model_filter": cfg.filter, "circuit_filter": settings.circuit_filter or cfg.filter,
        "circuit_target": settings.circuit_target, "hardware_target": circuit.target.name,
        "samples_scored": settings.samples, "washout_samples": lead, "neuron_steps": n_steps,
        "spike_threshold": thresholds[0], "simulation_wall_s": sim_wall,
        "ngspice_attempts": "; ".join(waves.meta.get("attempts", [])),
        "clipped_values": len(changes), "compensation_iterations": settings.compensate,
    }
    summary["clip_changes"] = [str(c) for c in changes[:50]]
    linear_range = getattr(circuit.target, "linear_range", None)
    if linear_range is not None:  # where the target's leak and linear filters stop following the model's lines
        from ..training.swing import swing_of

        summary["membrane_swing"] = swing_of([u[lead * cfg.substeps:] for u in model.membrane],
                                             [float(layer.u_rest) for layer in network.layers], linear_range)
    if compensation is not None:
        summary["compensation"] = compensation
    summary.update(hardware_summary(waves, nodes, circuit, x.shape[0], circ, settings))
    return ValidationResult(summary, comparison, model, circ, y, circuit, thresholds, lead, native,
                            range_changes=changes, compensation_target=wanted)


def hardware_summary(waves: Any, nodes: dict[str, Any], circuit: Any, n_samples: int, circ: Traces,
                     settings: ValidationSettings) -> dict[str, Any]:
    """``operating_point`` (the transient guard) and ``power`` (supply, energy, area) entries of the report."""
    from .operating_point import operating_point_report
    from .power import count_spikes, library_text, power_report

    library = library_text(settings.circuit_target) if (nodes.get("operating_point") or {}).get("cells") else ""
    return {"operating_point": operating_point_report(waves, nodes, circuit.target),
            "power": power_report(waves, nodes, circuit, n_samples, count_spikes(circ.spike_times), library)}


def dt_study(network: Any, result: ValidationResult, task: Any, settings: ValidationSettings,
             refinements: tuple[int, ...] = (1, 2, 4, 8), methods: tuple[str, ...] | None = None,
             progress: Progress = _quiet) -> list[dict[str, Any]]:
    """Re-run the model at dt / r against the *same* circuit run, with the network's own integrator and
    with RK4 (``methods``: default those two, once each).

    Each row: ``method``, ``dt``, ``output_nrmse_vs_circuit``, ``spike_coincidence``, ``membrane_nrmse``
    (circuit vs that model), and ``output_nrmse_vs_finest`` (that model vs the finest RK4 model —
    the model's own discretisation error). A gap that shrinks with dt is discretisation; one that
    levels off is the circuit.
    """
    if methods is None:
        methods = tuple(dict.fromkeys((network.config.method, "rk4")))
    x, _, _ = scoring_stream(task, settings.samples, settings.washout)
    window = settings.window_steps * network.config.dt  # fixed window in t_u, so rows are comparable
    rows, predictions = [], {}
    for method in methods:
        for r in refinements:
            progress(f"dt study: {method} at dt = {network.config.dt / r:g} t_u")
            model_r = rediscretised(network, r, method)
            cfg = model_r.config
            traces = model_traces(model_r, x, result.spike_thresholds[0], label=f"{method} dt/{r}")
            n_steps = x.shape[0] * cfg.substeps
            circ = traces_on_grid(result.circuit_native, cfg.dt, cfg.substeps, n_steps, result.circuit.spike_times)
            comparison = compare(traces, circ, window, thresholds=Thresholds(None, None, None))
            predictions[(method, r)] = traces.prediction
            rows.append({
                "method": method, "refine": r, "dt": cfg.dt,
                "output_nrmse_vs_circuit": comparison.summary["output_nrmse_vs_model"],
                "spike_coincidence": comparison.summary["spike_coincidence"],
                "membrane_nrmse": comparison.summary["membrane_nrmse"],
            })
    finest = predictions.get(("rk4", max(refinements)), predictions[(methods[-1], max(refinements))])
    from .metrics import signal_nrmse

    for row in rows:
        row["output_nrmse_vs_finest"] = signal_nrmse(predictions[(row["method"], row["refine"])], finest)
    return rows
