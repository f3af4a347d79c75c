"""What a circuit does to the model's parameters, as a transform (training on the hardware).

    deviation = mismatch_deviation(spec, statistics, seed=(S, k), target=target)   # instance k of a Monte Carlo
    deviation = calibration_deviation(table, spec)                                # the target's measured cells
    both = compose(calibration, deviation)
    perturbed_spec = apply_to_spec(spec, deviation)

A :class:`NetworkDeviation` holds, per hidden layer and per model quantity (model units):

.. math::  a' = a \\, f_a \\quad (\\text{gains, time constants, } R, \\text{ weights}), \\qquad
           d' = d + s_d \\quad (\\text{offsets } d_x, \\; U_{rest}), \\qquad b' = b \\, f_b + s_b \\quad (\\text{biases})

and a factor on the readout low-pass time constant (all stages alike: the model has one).

A multiplicative form is exact for the mismatch the Monte Carlo draws: a bias current or a capacitor
multiplied by ``exp(sigma z)`` multiplies its model gain, weight or time constant by a factor that does not
depend on the trained value; an input offset ``sigma_off z`` adds ``sigma_off z / V_s`` to an offset or a rest
voltage. So a deviation drawn once applies to any value the optimiser proposes, with gradients through
the trained parameters (the factors are constants).

:func:`mismatch_deviation` draws through :func:`~mtc_analog.hardware.mismatch.apply_mismatch` on the mapped
network, so seed ``(S, k)`` gives exactly the draws of instance ``k`` of a cell-mode Monte Carlo seeded ``S``:
one source for the statistics and the walk order. The transduction stage is not part of a deviation (the model
has one per layer); a mismatch draw moves the low-pass stages apart, the deviation keeps their mean.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..neuron.equations import SHIFTED_FIELDS, MTCParameters, deviate
from ..spec import NetworkSpec
from .mapping import map_network, unmap_network
from .mismatch import MismatchStatistics, draw_statistics
from .target import HardwareTarget

#: Model quantities that a deviation shifts (model voltage units, V_s); every other field scales.
SHIFTED = SHIFTED_FIELDS
SCALED = tuple(name for name in MTCParameters._fields if name not in SHIFTED)


@dataclass(frozen=True)
class LayerDeviation:
    """One hidden layer: ``params`` maps every :class:`MTCParameters` field to a per-neuron array (a factor
    for :data:`SCALED` fields, a shift for :data:`SHIFTED` ones); ``weight`` / ``bias`` factors and a bias shift
    (an offset current, [I_u]: what a calibration measures where the bias is near zero)."""

    params: dict[str, np.ndarray]
    weight: np.ndarray  #: (N, n_prev) factors
    bias: np.ndarray  #: (N,) factors
    bias_shift: np.ndarray | None = None  #: (N,) [I_u], applied after the factor; None: 0

    def projection(self, weight: Any, bias: Any) -> tuple[Any, Any]:
        """The input projection's (weight, bias) as the circuit realises them (numpy arrays or torch tensors)."""
        bias = bias * _like(self.bias, bias)
        if self.bias_shift is not None:
            bias = bias + _like(self.bias_shift, bias)
        return weight * _like(self.weight, weight), bias


@dataclass(frozen=True)
class NetworkDeviation:
    """Every hidden layer's :class:`LayerDeviation` and the readout's weight / bias factors."""

    layers: tuple[LayerDeviation, ...]
    readout_weight: np.ndarray  #: (n_out, N_last) factors
    readout_bias: np.ndarray  #: (n_out,) factors
    readout_bias_shift: np.ndarray | None = None  #: (n_out,) [I_u]; None: 0
    lowpass_tau: float = 1.0  #: factor on the readout low-pass time constant
    #: the readout's summing-node loading (a calibration's): ``(c0, c1, d0, d1)`` with, per output and
    #: ``S = sum_j |w_j|`` of its trained weights, weights ``x 1 / (c0 + c1 S)`` and bias ``+ d0 + d1 S`` [I_u]
    #: (every readout transconductor's output conductance and offset scale with its bias, i.e. with |w|)
    readout_load: tuple[float, float, float, float] | None = None

    def readout(self, weight: Any, bias: Any) -> tuple[Any, Any]:
        """The readout's (weight, bias) as the circuit realises them (numpy arrays or torch tensors; the summing
        node's loading is computed from these weights, so a gradient flows through it)."""
        bias = bias * _like(self.readout_bias, bias)
        if self.readout_bias_shift is not None:
            bias = bias + _like(self.readout_bias_shift, bias)
        if self.readout_load is not None:
            c0, c1, d0, d1 = self.readout_load
            load = abs(weight).sum(1)
            bias = bias + d0 + d1 * load
            weight = weight / (c0 + c1 * load)[:, None]
        return weight * _like(self.readout_weight, weight), bias

    def is_identity(self) -> bool:
        """Exactly no change: every factor 1.0 and every shift 0.0."""
        if self.readout_load is not None and tuple(self.readout_load) != (1.0, 0.0, 0.0, 0.0):
            return False
        factors = [self.readout_weight, self.readout_bias, np.asarray(self.lowpass_tau)]
        shifts = [_or_zero(self.readout_bias_shift)]
        for layer in self.layers:
            factors += [layer.weight, layer.bias, *(v for k, v in layer.params.items() if k not in SHIFTED)]
            shifts += [_or_zero(layer.bias_shift), *(v for k, v in layer.params.items() if k in SHIFTED)]
        return all(bool(np.all(f == 1.0)) for f in factors) and all(bool(np.all(s == 0.0)) for s in shifts)


def _like(values: Any, reference: Any) -> Any:
    """``values`` as the reference's kind: a torch tensor of its dtype and device, else a float array."""
    if hasattr(reference, "new_tensor"):  # torch, without importing it here
        return reference.new_tensor(np.asarray(values, dtype=float))
    return np.asarray(values, dtype=float)


def _or_zero(values: np.ndarray | None) -> np.ndarray:
    return np.zeros(1) if values is None else np.asarray(values, dtype=float)


def identity(spec: NetworkSpec) -> NetworkDeviation:
    """The deviation that changes nothing (factors 1, shifts 0)."""
    layers = tuple(LayerDeviation({k: np.full(layer.size, 0.0 if k in SHIFTED else 1.0) for k in MTCParameters._fields},
                                  np.ones_like(np.asarray(layer.weight, dtype=float)), np.ones(layer.size))
                   for layer in spec.layers)
    return NetworkDeviation(layers, np.ones_like(np.asarray(spec.readout.weight, dtype=float)),
                            np.ones(np.asarray(spec.readout.bias).shape[0]))


def _ratio(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    new, old = np.asarray(new, dtype=float), np.asarray(old, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(old != 0.0, new / np.where(old != 0.0, old, 1.0), 1.0)


def _columns(layer: Any) -> dict[str, np.ndarray]:
    """A layer spec's parameters, every field as a per-neuron float array."""
    return {name: np.broadcast_to(np.asarray(value, dtype=float), (layer.size,)) for name, value in layer.params._asdict().items()}


def between(nominal: NetworkSpec, actual: NetworkSpec) -> NetworkDeviation:
    """The deviation that turns ``nominal`` into ``actual`` (same shapes; zero values keep factor 1)."""
    layers = []
    for a, b in zip(nominal.layers, actual.layers):
        old, new = _columns(a), _columns(b)
        params = {name: (new[name] - old[name]) if name in SHIFTED else _ratio(new[name], old[name])
                  for name in MTCParameters._fields}
        layers.append(LayerDeviation(params, _ratio(b.weight, a.weight), _ratio(b.bias, a.bias)))
    return NetworkDeviation(tuple(layers), _ratio(actual.readout.weight, nominal.readout.weight),
                            _ratio(actual.readout.bias, nominal.readout.bias),
                            lowpass_tau=float(actual.readout.lowpass_tau / nominal.readout.lowpass_tau))


def mismatch_deviation(spec: NetworkSpec, statistics: MismatchStatistics, seed: int | Sequence[int],
                       target: HardwareTarget) -> NetworkDeviation:
    """The deviation of one mismatch draw: the network mapped onto ``target``, perturbed by
    :func:`~mtc_analog.hardware.mismatch.apply_mismatch` with ``seed``, mapped back, relative to nominal.
    The transconductor and readout-node offsets (drawn last) are bias shifts ([I_u]; readout: output units), not
    factors: a bias near zero still gets them.

    Statistics with zero spreads give factors exactly 1 and shifts exactly 0."""
    circuit = map_network(spec, target)
    nominal = unmap_network(circuit)
    cells_circuit, drawn_circuit = draw_statistics(circuit, statistics, seed, target)
    cells = unmap_network(cells_circuit)
    deviation = between(nominal, cells)
    if drawn_circuit is cells_circuit:  # no transconductor offsets in these statistics
        return deviation
    drawn = unmap_network(drawn_circuit)
    layers = tuple(dataclasses.replace(dev, bias_shift=np.asarray(d.bias, dtype=float) - np.asarray(c.bias, dtype=float))
                   for dev, d, c in zip(deviation.layers, drawn.layers, cells.layers))
    return dataclasses.replace(deviation, layers=layers, readout_bias_shift=np.asarray(drawn.readout.bias, dtype=float)
                               - np.asarray(cells.readout.bias, dtype=float))


def compose(first: NetworkDeviation, then: NetworkDeviation) -> NetworkDeviation:
    """``then`` applied after ``first``: factors multiply, shifts add (a bias shift is scaled by the later factor)."""
    layers = tuple(LayerDeviation({k: (a.params[k] + b.params[k]) if k in SHIFTED else a.params[k] * b.params[k]
                                   for k in a.params}, a.weight * b.weight, a.bias * b.bias,
                                  _or_zero(a.bias_shift) * b.bias + _or_zero(b.bias_shift))
                   for a, b in zip(first.layers, then.layers))
    return NetworkDeviation(layers, first.readout_weight * then.readout_weight, first.readout_bias * then.readout_bias,
                            _or_zero(first.readout_bias_shift) * then.readout_bias + _or_zero(then.readout_bias_shift),
                            first.lowpass_tau * then.lowpass_tau,
                            first.readout_load if first.readout_load is not None else then.readout_load)


def apply_to_spec(spec: NetworkSpec, deviation: NetworkDeviation) -> NetworkSpec:
    """A copy of ``spec`` with ``deviation`` applied (numpy; the torch forward applies the same formula)."""
    layers = []
    for layer, dev in zip(spec.layers, deviation.layers):
        params = deviate(MTCParameters(**_columns(layer)), dev)  # the formulas the torch forward applies
        weight, bias = dev.projection(np.asarray(layer.weight, dtype=float), np.asarray(layer.bias, dtype=float))
        layers.append(dataclasses.replace(layer, params=params, weight=weight, bias=bias))
    weight, bias = deviation.readout(np.asarray(spec.readout.weight, dtype=float), np.asarray(spec.readout.bias, dtype=float))
    readout = dataclasses.replace(spec.readout, weight=weight, bias=bias,
                                  lowpass_tau=float(spec.readout.lowpass_tau) * deviation.lowpass_tau)
    return dataclasses.replace(spec, layers=layers, readout=readout)


# ---- calibration tables (the hardware mode) -----------------------------------------------------------

CALIBRATION_SUFFIX = ".calibration.json"
#: Fewest measured devices a table entry is pooled from (fewer: the entry stays neutral).
MIN_POOL = 4
#: Quantities of a calibration table beside the MTCParameters fields: factors on weights and the low-pass
#: time constant; shifts [I_u] of hidden biases (per neuron) and of the readout bias per readout input (the
#: readout's offset current grows with the number of transconductors summed into it).
TABLE_EXTRA = ("weight", "lowpass_tau", "bias_shift", "readout_weight_c0", "readout_weight_c1", "readout_bias_d0",
               "readout_bias_d1")
#: Table entries that are not positive factors (shifts, loading slopes).
TABLE_SHIFTS = (*SHIFTED, "bias_shift", "readout_weight_c1", "readout_bias_d0", "readout_bias_d1")


@dataclass(frozen=True)
class CalibrationTable:
    """A target's measured cell deviations, one value per quantity (the median over every characterised
    cell): ``values[name]`` is a factor for :data:`SCALED` fields, weights and the low-pass, a shift for
    :data:`TABLE_SHIFTS` ([V_s] offsets and rest, [I_u] biases). ``spread`` holds the interquartile range of each; ``source`` says how it was measured."""

    target: str
    values: dict[str, float]
    spread: dict[str, float]
    source: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def calibration_path(target_name: str) -> Path:
    return Path(__file__).parent / "targets" / f"{target_name.partition(':')[0]}{CALIBRATION_SUFFIX}"


def load_calibration(target_name: str) -> CalibrationTable:
    """The calibration table shipped for ``target_name`` (``hardware/targets/<name>.calibration.json``)."""
    path = calibration_path(target_name)
    if not path.exists():
        have = sorted(p.name[: -len(CALIBRATION_SUFFIX)] for p in path.parent.glob(f"*{CALIBRATION_SUFFIX}"))
        raise InputError(f"--hardware {target_name}: target {target_name!r} has no calibration data ({path.name} not found); "
                         f"targets with calibration data: {', '.join(have) or 'none'} "
                         "(measure one with `python -m mtc_analog.validation.calibration_table`)")
    data = json.loads(path.read_text())
    table = CalibrationTable(data["target"], {k: float(v) for k, v in data["values"].items()},
                             {k: float(v) for k, v in data.get("spread", {}).items()}, data.get("source", ""))
    for name in (*MTCParameters._fields, *TABLE_EXTRA):
        value = table.values.get(name)
        if value is None or not math.isfinite(value) or (name not in TABLE_SHIFTS and value <= 0):
            raise InputError(f"{path}: calibration value {name!r} = {value!r} is missing or invalid "
                             "(need a finite factor > 0, or a finite shift for offsets)")
    return table


def table_from(pairs: Sequence[tuple[NetworkSpec, NetworkSpec]], target: str, source: str) -> CalibrationTable:
    """A :class:`CalibrationTable` from characterised networks, ``(nominal, calibrated)`` spec pairs: per
    quantity the median deviation over every neuron / device whose nominal value is not zero, and its
    interquartile range (fewer than :data:`MIN_POOL` values: the entry stays neutral and ``source`` says so)."""
    pools: dict[str, list[np.ndarray]] = {name: [] for name in (*MTCParameters._fields, "weight", "bias_shift", "lowpass_tau")}
    loads: list[float] = []
    readout_factors: list[float] = []
    readout_shifts: list[float] = []
    for nominal, calibrated in pairs:
        deviation = between(nominal, calibrated)
        for layer, cal, dev in zip(nominal.layers, calibrated.layers, deviation.layers):
            for name, value in _columns(layer).items():
                pools[name].append(dev.params[name][value != 0.0] if name not in SHIFTED else dev.params[name])
            pools["weight"].append(dev.weight[np.asarray(layer.weight) != 0.0])
            pools["bias_shift"].append(np.asarray(cal.bias, dtype=float) - np.asarray(layer.bias, dtype=float))
        loads.append(float(np.abs(np.asarray(nominal.readout.weight, dtype=float)[0]).sum()))  # output 0 (n_out = 1)
        used = np.asarray(nominal.readout.weight) != 0.0
        readout_factors.append(float(np.median(deviation.readout_weight[used])) if used.any() else 1.0)
        readout_shifts.append(float(np.sum(np.asarray(calibrated.readout.bias, dtype=float)[:1]
                                           - np.asarray(nominal.readout.bias, dtype=float)[:1])))
        pools["lowpass_tau"].append(np.array([deviation.lowpass_tau]))
    # the readout's summing node: 1 / factor and the bias shift are straight lines in S = sum |w| (one point per
    # network; with one network, or networks of one S, the slopes stay 0)
    (c0, c1), (d0, d1) = _line(loads, [1.0 / f for f in readout_factors]), _line(loads, readout_shifts)
    values, spread, few = {}, {}, []
    for name, parts in pools.items():
        pool = np.concatenate([np.ravel(p) for p in parts]) if parts else np.array([])
        minimum = 1 if name == "lowpass_tau" else MIN_POOL  # one per network
        if pool.size < minimum:
            values[name], spread[name] = (0.0 if name in TABLE_SHIFTS else 1.0), 0.0
            few.append(name)
            continue
        values[name] = float(np.median(pool))
        spread[name] = float(np.subtract(*np.percentile(pool, [75, 25])))
    values.update(readout_weight_c0=c0, readout_weight_c1=c1, readout_bias_d0=d0, readout_bias_d1=d1)
    residual = [abs(1.0 / (c0 + c1 * s) - f) for s, f in zip(loads, readout_factors)]
    spread.update(readout_weight_c0=max(residual), readout_weight_c1=0.0, readout_bias_d0=max(
        abs(d0 + d1 * s - v) for s, v in zip(loads, readout_shifts)), readout_bias_d1=0.0)
    source += (f"; readout loading fitted over {len(loads)} network(s), sum |w| = "
               + ", ".join(f"{s:.1f}" for s in loads) + " (spread: the fit's largest residual)")
    if few:
        source += f"; left neutral (too few devices measured): {', '.join(few)}"
    return CalibrationTable(target, values, spread, source)


def _line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x`` (b = 0 when x has one distinct value)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.ptp(x) == 0:
        return float(np.mean(y)), 0.0
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def calibration_deviation(table: CalibrationTable, spec: NetworkSpec) -> NetworkDeviation:
    """The table's deviation broadcast over ``spec``'s shapes (every neuron and device alike)."""
    base = identity(spec)
    v = table.values
    layers = tuple(LayerDeviation({k: np.full_like(x, v[k]) for k, x in layer.params.items()},
                                  np.full_like(layer.weight, v["weight"]), layer.bias, np.full_like(layer.bias, v["bias_shift"]))
                   for layer in base.layers)
    return NetworkDeviation(layers, base.readout_weight, base.readout_bias, None, v["lowpass_tau"],
                            (v["readout_weight_c0"], v["readout_weight_c1"], v["readout_bias_d0"], v["readout_bias_d1"]))
