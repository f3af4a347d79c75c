"""Model <-> circuit mapping (docs/reference.md §8): model parameters in V_s / t_u / I_u to SI circuit values, and back.

With ``v = V_rest + U V_s``, currents ``I = i I_u`` and time ``t = tau t_u`` (see
:class:`~mtc_analog.hardware.target.HardwareTarget`), the membrane node obeys

.. math::

    C_m \\dot v = -(v - v_{rest}) / R_l + I_{in} - \\sum_x \\mathrm{sign}_x I_{b,x}
                  \\tanh\\big(\\kappa (v_x - V_{ref,x}) / 2U_T\\big)

which is the model's ``tau_m dU/dt = -(U - U_rest) + R I_in - R I_tot`` exactly when

======================  =======================================================================
model                   circuit
======================  =======================================================================
gain ``a_x``            OTA tail current ``I_b = a_x I_u`` (sign from ``ELEMENTS``)
offset ``d_x``          reference voltage ``V_ref = V_rest + d_x V_s``
``R``                   leak resistor ``R_l = R V_s / I_u``
``tau_m``               ``C_m = tau_m t_u / R_l = tau_m t_u I_u / (R V_s)``
``U_rest``              neuron rest voltage ``V_rest + U_rest V_s``
filter ``tau_x``        follower-integrator, ``tau_x t_u = C_x V_s / I_bx`` (policy below)
weight ``w``            transconductance ``gm = w I_u / V_s`` (signed; bias ``|w| I_u``)
bias ``b``              current ``b I_u`` (signed)
readout                 the same at the readout's unit ``I_u,ro`` (``i_unit_readout``, default I_u):
                        ``gm = w I_u,ro / V_s``, bias ``b I_u,ro``, load ``R = V_s / I_u,ro``, low-pass
                        stages by the filter policy at ``I_u,ro``
transduction ``U_th``   voltages ``V_th, V_sat, V_c = V_rest + U V_s``; output ``V_rest + s V_s``
======================  =======================================================================

Filter capacitor policy: ``C_x = clip(tau_x t_u I_u / V_s, c_min, c_max)``, then
``I_bx = C_x V_s / (tau_x t_u)``. A filter is biased at I_u (the current unit, comfortably inside the
weak-inversion window) whenever its capacitor fits the area budget; slow filters take the largest
allowed capacitor and a proportionally smaller bias current (tau_us = 2500 at c_max = 100 pF: ~3 pA,
still above the 1 pA leakage floor). Very fast filters take c_min and a larger current. The mapping is
exactly invertible because ``tau_x`` is recovered from the stored pair ``(C_x, I_bx)``.

Every per-element loop runs over :data:`mtc_analog.neuron.equations.ELEMENTS` and
:data:`~mtc_analog.neuron.equations.FILTER_VARIABLES`: the circuit has exactly the model's elements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..errors import InputError
from ..neuron.equations import ELEMENTS, FILTER_VARIABLES, FILTERS, MTCParameters, as_numpy, validate_parameters
from ..neuron.step import TRANSDUCTIONS, Transduction
from ..spec import NetworkSpec, NeuronLayerSpec, ReadoutSpec
from .target import HardwareTarget


# ---- circuit records (SI units) ----------------------------------------------------------------
@dataclass(frozen=True)
class OTAElementCircuit:
    """One tanh conductance element: an OTA with tail ``tail_current`` [A] comparing its timescale's
    filtered node with ``v_ref`` [V]; ``sign`` (-1 negative / +1 positive conductance) as in ELEMENTS."""

    name: str
    sign: int
    tail_current: float  #: [A]; 0 = element absent
    v_ref: float  #: [V]
    timescale: str  #: which filtered node the OTA reads ("fast" | "slow" | "ultraslow")


@dataclass(frozen=True)
class FilterCircuit:
    """A first-order follower-integrator: ``C dv_x/dt = I_b tanh((v_in - v_x)/V_s)`` ("ota") or
    ``I_b (v_in - v_x)/V_s`` ("linear"), i.e. time constant ``tau t_u = C V_s / I_b``."""

    timescale: str  #: "fast" | "slow" | "ultraslow" | "lowpass0".."lowpass3"
    capacitance: float  #: [F]
    bias_current: float  #: [A]
    kind: str  #: "linear" | "ota"

    def tau_seconds(self, target: HardwareTarget) -> float:
        """The filter's time constant [s]."""
        return self.capacitance * target.v_s / self.bias_current


@dataclass(frozen=True)
class TransductionCircuit:
    """Graded output stage; its output node sits at ``v_rest + s V_s`` with s in [0, 1]."""

    kind: str  #: "clip" | "sigmoid"
    v_th: float  #: clip: s = 0 below [V]
    v_sat: float  #: clip: s = 1 above [V]
    v_c: float  #: sigmoid centre [V]


@dataclass(frozen=True)
class NeuronCircuit:
    """One MTC neuron as a circuit (SI units)."""

    c_m: float  #: membrane capacitor [F]
    r_leak: float  #: leak resistor [Ohm]
    v_rest: float  #: the neuron's rest voltage (V_rest + U_rest V_s) [V]
    elements: tuple[OTAElementCircuit, ...]  #: one per ELEMENTS entry, same order
    filters: dict[str, FilterCircuit | None]  #: timescale -> filter; None = instantaneous (tau = 0)
    transduction: TransductionCircuit

    def element(self, name: str) -> OTAElementCircuit:
        for element in self.elements:
            if element.name == name:
                return element
        raise KeyError(name)


@dataclass(frozen=True, eq=False)
class LayerCircuit:
    """A hidden layer: its neurons and the transconductors feeding them.

    Current into neuron i: ``sum_j synapse_gm[i, j] (v_j - v_rest) + bias_current[i]``, where v_j are
    the previous layer's output nodes (layer 0: input nodes ``v_rest + x V_s`` driven by PWL sources).
    """

    neurons: list[NeuronCircuit]
    synapse_gm: np.ndarray  #: (N, n_prev) [S], signed
    bias_current: np.ndarray  #: (N,) [A], signed

    @property
    def size(self) -> int:
        return len(self.neurons)


@dataclass(frozen=True, eq=False)
class ReadoutCircuit:
    """Readout transconductors summing into ``r_load`` (node at ``v_rest + y V_s``), then low-pass stages."""

    gm: np.ndarray  #: (n_out, N) [S], signed
    bias_current: np.ndarray  #: (n_out,) [A], signed
    r_load: float  #: [Ohm] = V_s / I_u,ro (the target's readout current unit, ``i_unit_readout``; default I_u)
    lowpass: list[FilterCircuit]  #: cascade, first stage reads the summing node


@dataclass(frozen=True, eq=False)
class NetworkCircuit:
    """A whole feedforward MTC network as a circuit, with the target it was mapped for."""

    target: HardwareTarget
    layers: list[LayerCircuit]
    readout: ReadoutCircuit
    t_step: float  #: the model's dt [s] (the simulator's maximum step)
    sample_period: float  #: how long one input sample is held [s]
    model_method: str = "euler"  #: how the model integrates (kept for the round trip; the circuit is continuous)

    @property
    def n_in(self) -> int:
        return int(self.layers[0].synapse_gm.shape[1])

    def to_dict(self) -> dict[str, Any]:
        """Every mapped value with its unit and its model value (JSON-able; written into mapping.json)."""
        from .serialize import network_circuit_to_dict

        return network_circuit_to_dict(self)


class NeuronModel(NamedTuple):
    """A neuron in model units: what :func:`map_neuron` takes and :func:`unmap_neuron` returns."""

    params: MTCParameters
    transduction: Transduction
    filter: str


# ---- scalar mappings -----------------------------------------------------------------------------
def filter_capacitance(tau: float, target: HardwareTarget) -> float:
    """Capacitor of a follower-integrator of time constant ``tau`` [t_u]: the documented policy."""
    return float(np.clip(tau * target.c_unit, target.c_min, target.c_max))


def map_filter(timescale: str, tau: float, kind: str, target: HardwareTarget) -> FilterCircuit | None:
    """Follower-integrator for ``tau`` [t_u]; ``None`` for tau = 0 (the variable reads the membrane)."""
    if tau == 0:
        return None
    capacitance = filter_capacitance(tau, target)
    return FilterCircuit(timescale, capacitance, capacitance * target.v_s / (tau * target.t_unit), kind)


def unmap_filter(circuit: FilterCircuit | None, target: HardwareTarget) -> float:
    """Time constant [t_u] of a mapped filter (0 for an instantaneous one)."""
    if circuit is None:
        return 0.0
    return circuit.capacitance * target.v_s / (circuit.bias_current * target.t_unit)


def map_transduction(transduction: Transduction, target: HardwareTarget) -> TransductionCircuit:
    if transduction.kind not in TRANSDUCTIONS:
        raise InputError(f"unknown transduction {transduction.kind!r}: expected one of {TRANSDUCTIONS}")
    if not all(np.isfinite([transduction.u_th, transduction.u_sat, transduction.u_c])):
        raise InputError(f"transduction {tuple(transduction)}: thresholds must be finite")
    if transduction.kind == "clip" and not transduction.u_sat > transduction.u_th:
        raise InputError(f"transduction u_sat = {transduction.u_sat} must exceed u_th = {transduction.u_th}")
    return TransductionCircuit(
        transduction.kind,
        target.voltage(transduction.u_th),
        target.voltage(transduction.u_sat),
        target.voltage(transduction.u_c),
    )


def unmap_transduction(circuit: TransductionCircuit, target: HardwareTarget) -> Transduction:
    return Transduction(
        circuit.kind,
        target.model_voltage(circuit.v_th),
        target.model_voltage(circuit.v_sat),
        target.model_voltage(circuit.v_c),
    )


def map_neuron(
    params: MTCParameters,
    transduction: Transduction = Transduction(),
    filter: str = "linear",
    target: HardwareTarget | None = None,
) -> NeuronCircuit:
    """One neuron (scalar parameters in model units) -> :class:`NeuronCircuit` (SI)."""
    target = target or HardwareTarget()
    params = _scalar_params(params)
    _check_neuron(params, filter)
    return _map_checked_neuron(params, transduction, filter, target)


def _map_checked_neuron(params: MTCParameters, transduction: Transduction, filter: str, target: HardwareTarget) -> NeuronCircuit:
    r_leak = params.resistance * target.v_s / target.i_unit
    elements = tuple(
        OTAElementCircuit(
            name=element.name,
            sign=element.sign,
            tail_current=getattr(params, element.gain) * target.i_unit,
            v_ref=target.voltage(getattr(params, element.offset)),
            timescale=element.timescale,
        )
        for element in ELEMENTS
    )
    filters = {
        timescale: map_filter(timescale, getattr(params, tau_name), filter, target)
        for timescale, (_, tau_name) in FILTER_VARIABLES.items()
    }
    return NeuronCircuit(
        c_m=params.tau_m * target.t_unit / r_leak,
        r_leak=r_leak,
        v_rest=target.voltage(params.u_rest),
        elements=elements,
        filters=filters,
        transduction=map_transduction(transduction, target),
    )


def unmap_neuron(circuit: NeuronCircuit, target: HardwareTarget | None = None) -> NeuronModel:
    """A :class:`NeuronCircuit` back to model units: ``(params, transduction, filter)``."""
    target = target or HardwareTarget()
    values: dict[str, float] = {}
    for element in ELEMENTS:
        mapped = circuit.element(element.name)
        values[element.gain] = mapped.tail_current / target.i_unit
        values[element.offset] = target.model_voltage(mapped.v_ref)
    for timescale, (_, tau_name) in FILTER_VARIABLES.items():
        values[tau_name] = unmap_filter(circuit.filters.get(timescale), target)
    values["resistance"] = circuit.r_leak * target.i_unit / target.v_s
    values["tau_m"] = circuit.c_m * circuit.r_leak / target.t_unit
    values["u_rest"] = target.model_voltage(circuit.v_rest)
    kinds = [f.kind for f in circuit.filters.values() if f is not None]
    return NeuronModel(
        MTCParameters(**values),
        unmap_transduction(circuit.transduction, target),
        kinds[0] if kinds else "linear",
    )


# ---- networks --------------------------------------------------------------------------------
def map_network(spec: NetworkSpec, target: HardwareTarget | None = None) -> NetworkCircuit:
    """A trained network (:class:`~mtc_analog.spec.NetworkSpec`, model units) -> :class:`NetworkCircuit`."""
    target = target or HardwareTarget()
    if not spec.layers:
        raise InputError("network has no hidden layer: nothing to map")
    n_prev = spec.n_in
    layers = []
    for index, layer in enumerate(spec.layers):
        where = f"layer {index}"
        weight = _matrix(layer.weight, (layer.size, n_prev), f"{where} weight")
        bias = _matrix(layer.bias, (layer.size,), f"{where} bias")
        columns = _layer_columns(layer.params, layer.size, where)
        rows = [MTCParameters(**{name: float(column[i]) for name, column in columns.items()}) for i in range(layer.size)]
        _check_layer(rows, MTCParameters(**columns), layer.filter, where)
        neurons = [_map_checked_neuron(params, layer.transduction, layer.filter, target) for params in rows]
        layers.append(LayerCircuit(neurons, weight * target.g_unit, bias * target.i_unit))
        n_prev = layer.size
    readout = spec.readout
    if int(readout.lowpass_order) < 1:
        raise InputError(f"readout lowpass_order = {readout.lowpass_order}: need >= 1 stage")
    if not (np.isfinite(readout.lowpass_tau) and readout.lowpass_tau > 0):
        raise InputError(f"readout lowpass_tau = {readout.lowpass_tau}: need a finite time constant > 0 [t_u]")
    weight = _matrix(readout.weight, (-1, n_prev), "readout weight")
    bias = _matrix(readout.bias, (weight.shape[0],), "readout bias")
    unit = target.readout_target()  # the readout's cells at its own current unit (i_unit_readout)
    lowpass = [map_filter(f"lowpass{k}", float(readout.lowpass_tau), "linear", unit) for k in range(int(readout.lowpass_order))]
    if not (np.isfinite(spec.dt) and spec.dt > 0 and int(spec.substeps) >= 1):
        raise InputError(f"dt = {spec.dt}, substeps = {spec.substeps}: need dt > 0 [t_u] and substeps >= 1")
    return NetworkCircuit(
        target=target,
        layers=layers,
        readout=ReadoutCircuit(weight * unit.g_unit, bias * unit.i_unit, unit.v_s / unit.i_unit, lowpass),
        t_step=target.seconds(spec.dt),
        sample_period=target.seconds(spec.dt * int(spec.substeps)),
        model_method=spec.method,
    )


def unmap_network(circuit: NetworkCircuit) -> NetworkSpec:
    """A :class:`NetworkCircuit` back to a :class:`NetworkSpec` in model units.

    A layer carries one transduction and filter kind (taken from its first neuron); the readout one
    low-pass time constant (the mean over stages, which differ only after :func:`apply_mismatch`).
    """
    target = circuit.target
    layers = []
    for layer in circuit.layers:
        models = [unmap_neuron(neuron, target) for neuron in layer.neurons]
        params = MTCParameters(*(np.array(column, dtype=float) for column in zip(*(m.params for m in models))))
        layers.append(
            NeuronLayerSpec(
                params=params,
                weight=np.asarray(layer.synapse_gm, dtype=float) / target.g_unit,
                bias=np.asarray(layer.bias_current, dtype=float) / target.i_unit,
                transduction=models[0].transduction,
                filter=models[0].filter,
            )
        )
    readout, unit = circuit.readout, target.readout_target()
    taus = [unmap_filter(stage, unit) for stage in readout.lowpass]
    return NetworkSpec(
        n_in=circuit.n_in,
        layers=layers,
        readout=ReadoutSpec(
            weight=np.asarray(readout.gm, dtype=float) / unit.g_unit,
            bias=np.asarray(readout.bias_current, dtype=float) / unit.i_unit,
            lowpass_tau=float(np.mean(taus)),
            lowpass_order=len(readout.lowpass),
        ),
        dt=target.model_time(circuit.t_step),
        substeps=int(round(circuit.sample_period / circuit.t_step)),
        method=circuit.model_method,
    )


# ---- helpers -----------------------------------------------------------------------------------
def _scalar_params(params: MTCParameters) -> MTCParameters:
    """Parameters as plain floats (a 0-d or 1-element array is accepted)."""
    values = {}
    for name, value in params._asdict().items():
        arr = as_numpy(value)
        if arr.size != 1:
            raise InputError(f"map_neuron takes one neuron: {name} has shape {arr.shape}; use map_network for layers")
        values[name] = float(arr.reshape(()))
    return MTCParameters(**values)


def _layer_columns(params: MTCParameters, size: int, where: str) -> dict[str, np.ndarray]:
    """Per-layer parameter fields as arrays of shape (size,) (scalars are broadcast)."""
    columns = {}
    for name, value in params._asdict().items():
        arr = as_numpy(value)
        try:
            columns[name] = np.broadcast_to(arr.reshape(-1) if arr.ndim else arr, (size,))
        except ValueError:
            raise InputError(f"{where}: {name} has shape {arr.shape}; expected a scalar or ({size},)") from None
    return columns


def _check_layer(rows: list[MTCParameters], columns: MTCParameters, filter: str, where: str) -> None:
    """Validate a layer at once; on failure find the first bad neuron to name it."""
    try:
        _check_neuron(columns, filter)
    except InputError as layer_error:
        for i, params in enumerate(rows):
            try:
                _check_neuron(params, filter)
            except InputError as exc:
                raise InputError(f"{where} / neuron {i}: {exc}") from None
        raise InputError(f"{where}: {layer_error}") from None


def _check_neuron(params: MTCParameters, filter: str) -> None:
    if filter not in FILTERS:
        raise InputError(f"unknown filter {filter!r}: expected one of {FILTERS}")
    try:
        validate_parameters(params)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if not np.all(np.asarray(params.resistance) > 0):
        raise InputError(f"resistance = {np.min(params.resistance):g}: the passive R must be > 0")


def _matrix(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim != len(shape) or any(want not in (-1, got) for want, got in zip(shape, arr.shape)):
        raise InputError(f"{what} has shape {arr.shape}; expected {tuple('?' if s == -1 else s for s in shape)}")
    if not np.all(np.isfinite(arr)):
        bad = tuple(int(k) for k in np.argwhere(~np.isfinite(arr))[0])
        raise InputError(f"{what} is not finite at index {bad}")
    return arr.copy()
