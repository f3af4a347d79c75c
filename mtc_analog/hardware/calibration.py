"""Calibrated model: fold per-cell measurements of a circuit back into the neuron's model parameters.

The mapping (:mod:`mtc_analog.hardware.mapping`) assumes ideal cells: an element OTA delivers exactly
``I_b tanh((v - V_ref)/V_s)``, the leak is exactly ``1/R_l``, the membrane capacitance is exactly C_m and
a linear filter's conductance is exactly ``I_bx/V_s``. A transistor circuit does not: its element OTAs
deliver a few % more current than their bias and have ~mV offsets, the leak transconductor is a few %
off, the membrane node carries parasitic capacitance. :class:`CellFits` holds what a characterisation
run measured (SI units); :func:`calibrate_neuron` turns it into the model parameters that predict the
circuit (model units), so ``discrete model(calibrated params)`` vs circuit measures what is left.

Per quantity (model units, docs/reference.md §8 mapping inverted with the measured values):

- element gain ``a_x = (I_sat+ + I_sat-) / (2 I_u)`` and offset ``d_x = (V_ref + v_off - V_rest) / V_s``;
- passive ``R = I_u / (g V_s)``, ``tau_m = C_node / (g t_u)`` with ``g`` the leak's conductance plus the
  element OTAs' output conductances, ``U_rest`` moved by the leak's offset and by the elements' asymmetry:
  an element delivering ``I_sat+ != I_sat-`` is ``(I_sat+ + I_sat-)/2 tanh(.)`` plus a constant
  ``(I_sat+ - I_sat-)/2`` into the membrane (its mirror's mismatch), which a linear leak turns exactly into
  a rest voltage ``I / g`` higher;
- filter ``tau_x = C_x / (g_x t_u)`` (linear filters: g_x = measured small-signal conductance;
  5T filters: g_x = I_sat / V_s from their tanh fit); a filter whose follower settles ``o`` above its input
  moves the offsets of the elements it feeds by ``-o``.

The element slope (the OTA's own ``kappa``) is not a model parameter: the target's V_s is set from the
measured kappa instead (``kappa: 0.72`` in ``targets/sky130.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..neuron.equations import ELEMENTS, FILTER_VARIABLES, MTCParameters
from .target import HardwareTarget


@dataclass(frozen=True)
class ElementFit:
    """An element OTA's measured transfer, ``I = I_sat+- tanh((v - V_ref - v_off) / v_slope)`` into the membrane."""

    i_sat_plus: float  #: [A] saturation current, positive side
    i_sat_minus: float  #: [A] magnitude of the saturation current, negative side
    v_off: float  #: [V] input offset (shifts the effective reference)
    v_slope: float  #: [V] fitted tanh scale (2 U_T / kappa of the devices)
    v_ref: float  #: [V] the reference it was mapped with


@dataclass(frozen=True)
class CellFits:
    """Everything measured on one neuron's cells (SI units)."""

    elements: dict[str, ElementFit]  #: by element name (ELEMENTS)
    g_leak: float  #: [S] small-signal conductance of the leak cell
    v_leak_off: float  #: [V] where the leak current is zero, relative to the neuron's rest voltage
    c_membrane: float  #: [F] total capacitance on the membrane node (C_m + parasitics)
    g_filters: dict[str, float] = field(default_factory=dict)  #: timescale -> [S] (absent: instantaneous)
    c_filters: dict[str, float] = field(default_factory=dict)  #: timescale -> [F]
    g_outputs: float = 0.0  #: [S] summed output conductance of the element OTAs (they load the membrane like the leak)
    #: timescale -> [V]: where each filter settles above its input (the follower's offset, ``I_0 / g``); the
    #: elements it feeds see their input shifted by it, so it moves their effective offsets
    v_filter_off: dict[str, float] = field(default_factory=dict)


def calibrate_neuron(params: MTCParameters, fits: CellFits, target: HardwareTarget, v_rest: float | None = None) -> MTCParameters:
    """Model parameters that predict the measured circuit (``params`` gives what is not measured)."""
    v_rest = target.v_rest if v_rest is None else v_rest
    values = dict(params._asdict())
    for element in ELEMENTS:
        fit = fits.elements.get(element.name)
        if fit is None:
            continue
        # the target's unit conversions (the mapping's, inverted): one source for I_u, V_s, V_rest, t_u
        values[element.gain] = target.model_current(0.5 * (fit.i_sat_plus + fit.i_sat_minus))
        # offsets are measured from the target's V_rest (the mapping's V_ref = V_rest + d V_s), not the neuron's rest;
        # a filter state sitting o above the membrane acts on its elements as a reference o lower
        shift = fits.v_filter_off.get(element.timescale, 0.0)
        values[element.offset] = target.model_voltage(fit.v_ref + fit.v_off - shift)
    g_total = fits.g_leak + fits.g_outputs  # every conductance to (about) rest on the membrane node
    constant = sum(0.5 * (fit.i_sat_plus - fit.i_sat_minus) for fit in fits.elements.values())  # [A] into the membrane
    values["u_rest"] = target.model_voltage(v_rest + (fits.v_leak_off * fits.g_leak + constant) / g_total)
    values["resistance"] = target.g_unit / g_total  # R [model] = (1 / g) / (V_s / I_u)
    values["tau_m"] = target.model_time(fits.c_membrane / g_total)
    for timescale, (_, tau_name) in FILTER_VARIABLES.items():
        if timescale in fits.g_filters:
            values[tau_name] = target.model_time(fits.c_filters[timescale] / fits.g_filters[timescale])
    return MTCParameters(**values)


# ---- network level ---------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class TransconductorFits:
    """A network's measured transconductors (SI units), each reduced to ``I = g (v - v_rest) + I_0`` over the
    range it sees (:mod:`mtc_analog.spice.characterise`)."""

    synapse_gm: list[np.ndarray]  #: per hidden layer, (N, n_prev) [S], signed; 0 where no synapse
    synapse_offset: list[np.ndarray]  #: per hidden layer, (N,) [A]: summed I_0 of the synapses into each neuron
    readout_gm: np.ndarray  #: (n_out, N) [S], signed
    readout_offset: np.ndarray  #: (n_out,) [A]: summed I_0 of the readout synapses
    readout_load_g: np.ndarray  #: (n_out,) [S]: conductance of the readout load (nominal 1 / R_load)
    readout_load_offset: np.ndarray  #: (n_out,) [A]: current the load pushes into the readout node at v_rest
    lowpass_g: np.ndarray  #: (order,) [S]: small-signal conductance of each low-pass stage
    lowpass_c: np.ndarray  #: (order,) [F]: its capacitor
    #: (order,) [A]: current each stage pushes into its output when input and output are at rest; the stage
    #: settles ``I_0 / g`` above its input (an ota_lin offset of ~-0.6 mV), and the cascade adds them up
    lowpass_offset: np.ndarray | None = None
    #: per hidden layer, (N,) [S]: summed output conductance of the synapses into each membrane
    synapse_g_out: list[np.ndarray] | None = None
    #: (n_out,) [S]: summed output conductance of the readout synapses on the readout node (adds to the load)
    readout_g_out: np.ndarray | None = None
    #: (order,): each stage's closed-loop DC gain (its output over its input, both from v_rest; ~0.99: the
    #: follower's output conductance and an offset that moves with the common mode)
    lowpass_gain: np.ndarray | None = None
    #: (order,) [V_s]: each stage's closed-loop output above v_rest with its input at v_rest
    lowpass_dc_offset: np.ndarray | None = None
    #: (order,) [S]: each stage's feedback conductance at its operating point (AC probe of its output node)
    lowpass_g_fb: np.ndarray | None = None
    #: (order,) [F]: total capacitance on each stage's output node as the cascade loads it (AC probe)
    lowpass_c_total: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class NetworkFits:
    """Everything measured on one network: per-neuron cell fits and the transconductors."""

    neurons: list[list[CellFits]]  #: [layer][neuron]
    transconductors: TransconductorFits | None = None  #: None: weights, biases and the low-pass as mapped


#: What :func:`calibrate_network` does not calibrate (stated in reports).
NOT_CALIBRATED = (
    "element tanh slope (the OTA's own kappa; V_s is the target's)",
    "output-voltage dependence beyond a linear output conductance (element and synapse outputs swept +-0.1 V "
    "with inputs at rest; their transfer measured with outputs at rest)",
    "transduction stage (behavioural on sky130)",
    "ota_lin non-linearity beyond a straight line over each cell's input range",
)


def calibrate_network(spec, fits: NetworkFits, target: HardwareTarget):
    """The :class:`~mtc_analog.spec.NetworkSpec` that predicts the measured circuit (pure: fits in, spec out).

    ``spec`` is the network *as built* (``unmap_network(circuit)``: pruned and clipped values included).
    Per neuron: :func:`calibrate_neuron`, with the output conductances of its element OTAs and of the synapses
    into it added to the leak (they pull the membrane towards rest like the leak: ~3 % and ~0.5 %). Per layer
    (with transconductor fits): weights ``w = g / g_unit`` from each synapse's fitted line, biases
    ``b + sum I_0 / I_u``. Readout: the summing node obeys
    ``y_0 = (sum_i g_i s_i V_s + b I_u,ro + I_0) / (g_load V_s)`` (``I_u,ro``: the readout's current unit; ``g_load``:
    the load's conductance plus the readout synapses' output conductances, ~4 % for 16 synapses), so ``w_i = g_i / g_load`` and
    ``b = (b I_u + I_0 + I_0,load) / (g_load V_s)``. Low-pass stage k, measured closed loop: DC gain ``a_k``
    (~0.99) and offset ``c_k`` over the readout range, and at its node (AC, gates of the next stage included)
    the feedback conductance and total capacitance, ``tau_k = C_total,k / (g_fb,k t_u)`` (~+4-6 % over
    ``C / g``); the model's cascade has unit-gain stages of one tau, so the readout's weights and bias
    are scaled by ``prod a_k``, the offsets added as they pass the later stages, and the mean ``tau_k``
    taken. (Fits without the closed-loop measurement: unit gain, ``tau = C / (g t_u)``.)
    """
    import dataclasses

    if len(fits.neurons) != len(spec.layers):
        raise InputError(f"calibration: fits cover {len(fits.neurons)} layer(s), the network has {len(spec.layers)}; "
                         "characterise the same network that is calibrated")
    tc = fits.transconductors
    layers = []
    for index, (layer, neuron_fits) in enumerate(zip(spec.layers, fits.neurons)):
        if len(neuron_fits) != layer.size:
            raise InputError(f"calibration, layer {index}: fits for {len(neuron_fits)} neuron(s), the layer has "
                             f"{layer.size}; characterise the same network that is calibrated")
        rows = []
        for i, cell in enumerate(neuron_fits):
            if tc is not None and tc.synapse_g_out is not None:  # the synapses' outputs load the membrane too
                cell = dataclasses.replace(cell, g_outputs=cell.g_outputs + float(tc.synapse_g_out[index][i]))
            params = MTCParameters(**{name: float(np.asarray(value).reshape(-1)[i] if np.ndim(value) else value)
                                      for name, value in layer.params._asdict().items()})
            rows.append(calibrate_neuron(params, cell, target, v_rest=target.voltage(params.u_rest)))
        columns = MTCParameters(*(np.array(column, dtype=float) for column in zip(*rows)))
        weight, bias = np.array(layer.weight, dtype=float), np.array(layer.bias, dtype=float)
        if tc is not None:
            measured = np.asarray(tc.synapse_gm[index], dtype=float)
            weight = np.where(measured != 0, measured / target.g_unit, weight)
            bias = bias + np.asarray(tc.synapse_offset[index], dtype=float) / target.i_unit
        layers.append(dataclasses.replace(layer, params=columns, weight=weight, bias=bias))
    readout = spec.readout
    if tc is not None:
        g_load = np.asarray(tc.readout_load_g, dtype=float)
        if tc.readout_g_out is not None:  # the readout synapses' output conductances load the summing node
            g_load = g_load + np.asarray(tc.readout_g_out, dtype=float)
        weight = np.where(tc.readout_gm != 0, tc.readout_gm / g_load[:, None], readout.weight)
        bias = ((np.asarray(readout.bias, dtype=float) * target.readout_target().i_unit + tc.readout_offset + tc.readout_load_offset)
                / (g_load * target.v_s))
        tau = readout.lowpass_tau
        if tc.lowpass_gain is not None and tc.lowpass_c_total is not None and len(tc.lowpass_g):
            # stage k closed loop, relative to v_rest [V_s]: tau_k y_k' = a_k y_(k-1) + c_k - y_k (a_k, c_k: its
            # DC transfer; tau_k = C_total / g_fb). The model's cascade has unit-gain stages of one tau: the
            # cascade's gain prod a_k scales the readout's weights and bias, each offset passes the later gains.
            a = np.asarray(tc.lowpass_gain, dtype=float)
            c = np.asarray(tc.lowpass_dc_offset, dtype=float)
            gain = float(np.prod(a))
            passed = np.array([np.prod(a[k + 1:]) for k in range(len(a))])
            weight, bias = weight * gain, bias * gain + float(np.sum(c * passed))
            tau = float(np.mean(np.asarray(tc.lowpass_c_total) / (np.asarray(tc.lowpass_g_fb) * target.t_unit)))
        elif len(tc.lowpass_g):  # older fits: unit-gain followers, the capacitor alone
            if tc.lowpass_offset is not None:
                # the cascade has unit DC gain: its stages' offsets move the prediction like a readout bias
                bias = bias + float(np.sum(np.asarray(tc.lowpass_offset) / tc.lowpass_g)) / target.v_s
            tau = float(np.mean(tc.lowpass_c / (tc.lowpass_g * target.t_unit)))
        readout = dataclasses.replace(readout, weight=weight, bias=bias, lowpass_tau=tau)
    return dataclasses.replace(spec, layers=layers, readout=readout)
