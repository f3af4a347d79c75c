"""Range checks: does every mapped value fit the hardware target? (docs/reference.md §8)

What is checked, against :class:`~mtc_analog.hardware.target.HardwareTarget`:

- bias currents in ``[i_min, i_max]`` (leakage floor .. weak-inversion ceiling): OTA tail currents,
  filter biases, synapse transconductor biases ``|gm| V_s``, bias currents, readout. Signed values
  are checked by magnitude; a zero gain/weight/bias is an *absent* device, never a violation, and
  one below ``i_negligible`` is *negligible*: :func:`enforce_ranges` leaves it out (sets it to 0) and
  reports the change whether or not ``clip`` is set. (Filter biases are never absent.)
- voltages inside the operating window (rails minus ``v_headroom``): the reference voltage of every
  present element, the transduction thresholds in use, and each neuron's rest voltage such that the
  membrane's expected swing ``swing_min..swing_max`` [V_s] around it stays inside the window.
- capacitors in ``[c_min, c_max]``: membrane, filters, low-pass stages.
- filter biases (MTC filters and low-pass stages) at least ``filter_bias_min`` (``max(i_min, i_min_filter)``:
  slow 5T followers below ~100 pA are off by 12-24 % and re-slew slowly on sky130);
- reference voltages and the membrane's swing inside the cells' input common-mode range as well
  (``target.input_window``: they drive OTA inputs; on sky130 the ota_lin tails need ~0.72 V at the input).

Each violation says how to make it fit (``fix``).

Resistors (leak, readout load) are not limited: the target gives no bound for them.

:func:`check_ranges` returns every violation at once; :func:`enforce_ranges` raises
:class:`~mtc_analog.errors.HardwareRangeError` listing them, or with ``clip=True`` clips each offending
value to the limit it broke (sign kept) and returns the list of changes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import HardwareRangeError, InputError
from ..neuron.equations import ELEMENTS
from .mapping import FilterCircuit, LayerCircuit, NetworkCircuit, NeuronCircuit, ReadoutCircuit, unmap_filter
from .target import HardwareTarget

_MODEL_ELEMENTS = {element.name: element for element in ELEMENTS}


@dataclass(frozen=True)
class RangeViolation:
    """One mapped value outside the target's range."""

    location: str  #: e.g. "layer 0 / neuron 3 / element slow_plus"
    quantity: str  #: e.g. "tail current"
    value: float  #: the offending value (magnitude for signed currents) [unit]
    limit: float  #: the limit it broke [unit]
    unit: str  #: "A" | "V" | "F"
    bound: str = "max"  #: "min" (value below limit) | "max" (value above limit)
    model: str = ""  #: the model parameter behind it, e.g. "a_s_plus = 0.00025"
    fix: str = ""  #: how to make it fit, e.g. "scale C_x up or t_u down"

    def __str__(self) -> str:
        side = "below the minimum" if self.bound == "min" else "above the maximum"
        model = f" (model {self.model})" if self.model else ""
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"{self.location}: {self.quantity} {si(self.value, self.unit)} is {side} {si(self.limit, self.unit)}{model}{fix}"


@dataclass(frozen=True)
class RangeChange:
    """One value changed by clipping."""

    location: str
    quantity: str
    old: float  #: [unit], signed
    new: float  #: [unit], signed
    unit: str

    def __str__(self) -> str:
        if self.new == 0:
            return f"{self.location}: {self.quantity} {si(self.old, self.unit)} is negligible: left out (0)"
        return f"{self.location}: {self.quantity} clipped {si(self.old, self.unit)} -> {si(self.new, self.unit)}"


Circuit = NetworkCircuit | NeuronCircuit


def check_ranges(circuit: Circuit, target: HardwareTarget | None = None) -> list[RangeViolation]:
    """Every value of ``circuit`` outside ``target``'s limits (empty list: the circuit fits)."""
    target = _target_of(circuit, target)
    violations: list[RangeViolation] = []

    def record(check: CheckedValues, values: np.ndarray) -> np.ndarray:
        violations.extend(_violations(check, values))
        return values

    transform_values(circuit, target, record)
    return violations


def enforce_ranges(
    circuit: Circuit, target: HardwareTarget | None = None, clip: bool = False
) -> tuple[Circuit, list[RangeChange]]:
    """Return ``(circuit, [])`` if every value fits; otherwise raise :class:`HardwareRangeError`
    listing all violations, or with ``clip=True`` return the clipped circuit and what was changed."""
    target = _target_of(circuit, target)
    violations = check_ranges(circuit, target)
    if violations and not clip:
        raise HardwareRangeError(violations)
    changes: list[RangeChange] = []

    def clip_values(check: CheckedValues, values: np.ndarray) -> np.ndarray:
        clipped = _clip(check, values) if violations else _drop_negligible(check, values)
        for index in np.argwhere(clipped != values):
            index = tuple(int(k) for k in index)
            changes.append(RangeChange(check.where(index), check.quantity, float(values[index]), float(clipped[index]), check.unit))
        return clipped

    changed = transform_values(circuit, target, clip_values)
    return (changed, changes) if changes else (circuit, [])


def si(value: float, unit: str) -> str:
    """A value with an SI prefix: ``si(2.5e-13, "A") == "250 fA"``."""
    if value == 0 or not np.isfinite(value):
        return f"{value:g} {unit}"
    prefixes = [(1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "u"), (1e-3, "m"), (1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "G")]
    scale, prefix = prefixes[0]
    for candidate in prefixes:
        if abs(value) >= candidate[0] * 0.9995:
            scale, prefix = candidate
    return f"{value / scale:.4g} {prefix}{unit}"


# ---- the walk over every checked value ---------------------------------------------------------
@dataclass(frozen=True)
class CheckedValues:
    """A group of mapped values (scalar or array) sharing a unit and a limit, as seen by a visitor."""

    where: Callable[[tuple], str]  #: index -> location string
    quantity: str
    unit: str
    low: float
    high: float
    optional: bool  #: zero = absent device (not checked, never clipped)
    model_name: str  #: model parameter, for the message ("" = none)
    to_model: Callable[[float], float] | None  #: SI value -> model value
    negligible: float = 0.0  #: optional values with magnitude below this are left out, not flagged
    fix_low: str = ""  #: what to change when a value is below ``low``
    fix_high: str = ""  #: what to change when a value is above ``high``


Visitor = Callable[[CheckedValues, np.ndarray], np.ndarray]


def transform_values(circuit: Circuit, target: HardwareTarget, visit: Visitor) -> Circuit:
    """Call ``visit(check, values)`` on every limited value (in a fixed order); rebuild the circuit
    from what it returns. Range checks, clipping and mismatch are all visitors."""
    if isinstance(circuit, NeuronCircuit):
        return _walk_neuron(circuit, "neuron", target, visit)
    layers = [_walk_layer(layer, index, target, visit) for index, layer in enumerate(circuit.layers)]
    # the readout's currents and capacitors against its own unit and limits (target.i_unit_readout)
    readout = _walk_readout(circuit.readout, len(circuit.layers) - 1, target.readout_target(), visit)
    return dataclasses.replace(circuit, layers=layers, readout=readout)


def _walk_layer(layer: LayerCircuit, index: int, target: HardwareTarget, visit: Visitor) -> LayerCircuit:
    where = f"layer {index}"
    source = "input" if index == 0 else f"layer {index - 1} neuron"
    neurons = [_walk_neuron(neuron, f"{where} / neuron {i}", target, visit) for i, neuron in enumerate(layer.neurons)]
    synapse_gm = _via_bias(
        visit,
        _current_check(lambda ij: f"{where} / neuron {ij[0]} / synapse from {source} {ij[1]}", "synapse bias |gm| V_s", True, "weight", target.model_current, target),
        layer.synapse_gm,
        target,
    )
    bias = visit(
        _current_check(lambda i: f"{where} / neuron {i[0]} / bias", "bias current", True, "bias", target.model_current, target),
        np.asarray(layer.bias_current, dtype=float),
    )
    return dataclasses.replace(layer, neurons=neurons, synapse_gm=synapse_gm, bias_current=bias)


def _walk_readout(readout: ReadoutCircuit, last: int, target: HardwareTarget, visit: Visitor) -> ReadoutCircuit:
    gm = _via_bias(
        visit,
        _current_check(lambda ij: f"readout / output {ij[0]} / synapse from layer {last} neuron {ij[1]}", "synapse bias |gm| V_s", True, "weight", target.model_current, target),
        readout.gm,
        target,
    )
    bias = visit(
        _current_check(lambda i: f"readout / output {i[0]} / bias", "bias current", True, "bias", target.model_current, target),
        np.asarray(readout.bias_current, dtype=float),
    )
    lowpass = [_walk_filter(stage, f"readout / lowpass stage {k}", target, visit) for k, stage in enumerate(readout.lowpass)]
    return dataclasses.replace(readout, gm=gm, bias_current=bias, lowpass=lowpass)


def _walk_neuron(neuron: NeuronCircuit, where: str, target: HardwareTarget, visit: Visitor) -> NeuronCircuit:
    low, high = target.input_window  # the membrane drives OTA inputs (leak, filters, fast element)
    v_s = target.v_s
    c_m = _scalar(visit, _cap_check(f"{where} / membrane", "membrane capacitor C_m", "tau_m/R", lambda c: c / target.c_unit, target), neuron.c_m)
    # the rest voltage must leave room for the expected swing on both sides
    swing = f"the membrane would leave {low:.3g}..{high:.3g} V (the rails minus v_headroom and the cells' input range)"
    v_rest = _scalar(
        visit,
        CheckedValues(
            _fixed(f"{where} / membrane"),
            f"rest voltage (room for the swing {target.swing_min:g}..{target.swing_max:g} V_s)",
            "V", low - target.swing_min * v_s, high - target.swing_max * v_s, False, "u_rest", target.model_voltage,
            fix_low=f"{swing}: retrain with a higher U_rest or move the target's v_rest up",
            fix_high=f"{swing}: retrain with a lower U_rest or move the target's v_rest down",
        ),
        neuron.v_rest,
    )
    elements = []
    for element in neuron.elements:
        at = f"{where} / element {element.name}"
        model = _MODEL_ELEMENTS.get(element.name)
        gain, offset = (model.gain, model.offset) if model else ("gain", "offset")
        tail = _scalar(visit, _current_check(_fixed(at), "tail current", True, gain, target.model_current, target), element.tail_current)
        v_ref = element.v_ref
        if abs(element.tail_current) >= max(target.i_negligible, np.finfo(float).tiny):  # absent: never wired
            v_ref = _scalar(visit, _voltage_check(at, "reference voltage", offset, target, inputs=True), element.v_ref)
        elements.append(dataclasses.replace(element, tail_current=tail, v_ref=v_ref))
    filters = {
        timescale: None if circuit is None else _walk_filter(circuit, f"{where} / filter {timescale}", target, visit)
        for timescale, circuit in neuron.filters.items()
    }
    t = neuron.transduction
    at = f"{where} / transduction"
    if t.kind == "clip":
        t = dataclasses.replace(
            t,
            v_th=_scalar(visit, _voltage_check(at, "threshold voltage", "u_th", target), t.v_th),
            v_sat=_scalar(visit, _voltage_check(at, "saturation voltage", "u_sat", target), t.v_sat),
        )
    else:
        t = dataclasses.replace(t, v_c=_scalar(visit, _voltage_check(at, "centre voltage", "u_c", target), t.v_c))
    return dataclasses.replace(neuron, c_m=c_m, v_rest=v_rest, elements=tuple(elements), filters=filters, transduction=t)


def _walk_filter(circuit: FilterCircuit, where: str, target: HardwareTarget, visit: Visitor) -> FilterCircuit:
    # the policy keeps C inside the budget, so a bias below the floor means tau is too long for c_max
    tau = f"tau ({circuit.timescale})"
    capacitance = _scalar(visit, _cap_check(where, "capacitor", tau, lambda c: unmap_filter(dataclasses.replace(circuit, capacitance=c), target), target), circuit.capacitance)
    bias_check = dataclasses.replace(
        _current_check(_fixed(where), "bias current", False, tau, lambda i: unmap_filter(dataclasses.replace(circuit, bias_current=i), target), target),
        low=target.filter_bias_min,
        fix_low=_filter_floor_fix(circuit, target),
        fix_high="scale C_x down or t_u up in the target, or retrain with a longer tau")
    bias = _scalar(visit, bias_check, circuit.bias_current)
    return dataclasses.replace(circuit, capacitance=capacitance, bias_current=bias)


def _filter_floor_fix(circuit: FilterCircuit, target: HardwareTarget) -> str:
    """What a filter biased below the floor needs: C_x = floor tau / V_s, inside c_max, or a shorter tau in seconds."""
    tau_s = target.seconds(unmap_filter(circuit, target)) if circuit.bias_current > 0 else float("inf")
    needed = target.filter_bias_min * tau_s / target.v_s
    return (f"scale C_x up to >= {si(needed, 'F')} (c_max is {si(target.c_max, 'F')}: raise it if the area allows), or "
            f"t_u down in the target (tau_x is {si(tau_s, 's')}), or retrain with a shorter tau")


# ---- checks, violations, clipping --------------------------------------------------------------
def _fixed(location: str) -> Callable[[tuple], str]:
    return lambda index: location


def _current_check(where: Callable[[tuple], str], quantity: str, optional: bool, model: str, to_model: Callable[[float], float], target: HardwareTarget) -> CheckedValues:
    return CheckedValues(where, quantity, "A", target.i_min, target.i_max, optional, model, to_model,
                         target.i_negligible if optional else 0.0,
                         fix_low="raise i_unit in the target or retrain with larger gains/weights (or --clip)",
                         fix_high="lower i_unit in the target (weak inversion ends above i_max) or retrain with smaller gains/weights")


def _cap_check(where: str, quantity: str, model: str, to_model: Callable[[float], float], target: HardwareTarget) -> CheckedValues:
    return CheckedValues(_fixed(where), quantity, "F", target.c_min, target.c_max, False, model, to_model,
                         fix_low="raise t_u or i_unit in the target, or retrain with a longer time constant",
                         fix_high="lower t_u or i_unit in the target, or retrain with a shorter time constant")


def _voltage_check(where: str, quantity: str, model: str, target: HardwareTarget, inputs: bool = False) -> CheckedValues:
    """A voltage inside the operating window; ``inputs``: it drives an OTA input, so also inside the
    cells' input common-mode range (``v_in_min..v_in_max``)."""
    low, high = target.input_window if inputs else target.operating_window
    where_to = "the cells' input common-mode range" if inputs else "the rails minus v_headroom"
    return CheckedValues(_fixed(where), quantity, "V", low, high, False, model, target.model_voltage,
                         fix_low=f"it must stay inside {where_to}: retrain with a larger {model} or move v_rest up",
                         fix_high=f"it must stay inside {where_to}: retrain with a smaller {model} or move v_rest down")


def _via_bias(visit: Visitor, check: CheckedValues, gm: np.ndarray, target: HardwareTarget) -> np.ndarray:
    """Visit transconductances as their bias currents |gm| V_s; untouched entries keep their exact value."""
    gm = np.asarray(gm, dtype=float)
    before = gm * target.v_s
    after = visit(check, before)
    return np.where(after == before, gm, after / target.v_s)


def _scalar(visit: Visitor, check: CheckedValues, value: float) -> float:
    return float(visit(check, np.asarray(float(value))))


def _violations(check: CheckedValues, values: np.ndarray) -> list[RangeViolation]:
    if values.ndim == 0:  # fast path: most checks are one scalar
        value = float(values)
        magnitude = abs(value) if check.unit == "A" else value
        if (check.optional and abs(value) < max(check.negligible, np.finfo(float).tiny)) or check.low <= magnitude <= check.high:
            return []
    magnitude = np.abs(values) if check.unit == "A" else values
    present = _present(check, values)
    # NaN fails both comparisons' negations: report it against the lower limit
    below = present & ~(magnitude >= check.low)
    above = present & (magnitude > check.high)
    found = []
    for mask, limit, bound in ((below, check.low, "min"), (above, check.high, "max")):
        for index in np.argwhere(mask):
            index = tuple(int(k) for k in index)
            model = f"{check.model_name} = {check.to_model(float(values[index])):.4g}" if check.model_name and check.to_model else ""
            fix = check.fix_low if bound == "min" else check.fix_high
            found.append(RangeViolation(check.where(index), check.quantity, float(magnitude[index]), limit, check.unit, bound, model, fix))
    return found


def _present(check: CheckedValues, values: np.ndarray) -> np.ndarray:
    """Devices that exist: all of them, or for optional ones those not zero and not negligible."""
    if not check.optional:
        return np.ones(values.shape, dtype=bool)
    return (values != 0) & ~(np.abs(values) < check.negligible)


def _drop_negligible(check: CheckedValues, values: np.ndarray) -> np.ndarray:
    if not check.optional or check.negligible <= 0:
        return values
    return np.where(_present(check, values) | (values == 0) | np.isnan(values), values, 0.0)


def _clip(check: CheckedValues, values: np.ndarray) -> np.ndarray:
    values = _drop_negligible(check, values)
    if check.unit == "A":  # signed currents: clip the magnitude, keep the sign, leave absent ones at 0
        clipped = np.sign(values) * np.clip(np.abs(values), check.low, check.high)
        return np.where(values == 0, 0.0, clipped) if check.optional else clipped
    return np.clip(values, check.low, check.high)


def _target_of(circuit: Circuit, target: HardwareTarget | None) -> HardwareTarget:
    if target is None:
        if isinstance(circuit, NetworkCircuit):
            return circuit.target
        raise InputError("check_ranges of a single NeuronCircuit needs the target it was mapped for")
    return target


def check_input_range(x: np.ndarray, target: HardwareTarget, what: str = "network input") -> None:
    """Raise :class:`InputError` unless every input sample fits the target's operating window.

    Network inputs become PWL voltage sources ``v = v_rest + x V_s`` (model units -> V): like every
    other mapped voltage they must lie inside the rails minus ``v_headroom``. The message names the
    first offending sample, the limit and the input range that fits."""
    x = np.asarray(x, dtype=float)
    low, high = target.operating_window
    volts = target.voltage(x)
    bad = ~((volts >= low) & (volts <= high))  # NaN counts as outside
    if not bad.any():
        return
    index = tuple(int(k) for k in np.argwhere(bad)[0])
    sample = index[0]
    channel = f", input {index[1]}" if len(index) > 1 else ""
    value, v = float(x[index]), float(volts[index])
    limit, side = (high, "above the maximum") if v > high else (low, "below the minimum")
    x_low, x_high = float(target.model_voltage(low)), float(target.model_voltage(high))
    raise InputError(
        f"{what}: sample {sample}{channel}: x = {value:.6g} becomes {si(v, 'V')}, {side} {si(limit, 'V')} "
        f"(rails {target.vss:g}..{target.vdd:g} V minus v_headroom {target.v_headroom:g} V); {int(bad.sum())} value(s) "
        f"outside; inputs must lie in [{x_low:.4g}, {x_high:.4g}] model units: rescale or clip the input, or widen the rails")


def check_input_current(i_model: np.ndarray, target: HardwareTarget, what: str = "input current") -> None:
    """Raise :class:`InputError` unless every input current [I_u] stays within the bias ceiling ``i_max``.

    A single neuron's stimulus becomes a PWL current source into its membrane: like every mapped
    current it must stay in weak inversion (|I| <= i_max). The message names the first offending
    sample and the limit."""
    i_model = np.atleast_1d(np.asarray(i_model, dtype=float))
    amps = target.current(i_model)
    bad = ~(np.abs(amps) <= target.i_max)  # NaN counts as outside
    if not bad.any():
        return
    index = int(np.argwhere(bad)[0][0])
    raise InputError(
        f"{what}: sample {index}: {i_model[index]:.6g} I_u becomes {si(float(amps[index]), 'A')}, above the bias-current "
        f"ceiling {si(target.i_max, 'A')} (|I| <= {target.i_max / target.i_unit:.4g} I_u); lower the current or change "
        "the target's i_unit / i_max")
