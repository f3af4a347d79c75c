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
- passive ``R = I_u / (g_leak V_s)``, ``tau_m = C_node / (g_leak t_u)``, ``U_rest`` moved by the leak's offset;
- filter ``tau_x = C_x / (g_x t_u)`` (linear filters: g_x = measured small-signal conductance;
  5T filters: g_x = I_sat / V_s from their tanh fit).

The element slope (the OTA's own ``kappa``) is not a model parameter: the target's V_s is set from the
measured kappa instead (``kappa: 0.72`` in ``targets/sky130.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


def calibrate_neuron(params: MTCParameters, fits: CellFits, target: HardwareTarget, v_rest: float | None = None) -> MTCParameters:
    """Model parameters that predict the measured circuit (``params`` gives what is not measured)."""
    v_rest = target.v_rest if v_rest is None else v_rest
    values = dict(params._asdict())
    for element in ELEMENTS:
        fit = fits.elements.get(element.name)
        if fit is None:
            continue
        values[element.gain] = 0.5 * (fit.i_sat_plus + fit.i_sat_minus) / target.i_unit
        values[element.offset] = (fit.v_ref + fit.v_off - v_rest) / target.v_s
    values["u_rest"] = (v_rest + fits.v_leak_off - target.v_rest) / target.v_s
    values["resistance"] = target.i_unit / (fits.g_leak * target.v_s)
    values["tau_m"] = fits.c_membrane / (fits.g_leak * target.t_unit)
    for timescale, (_, tau_name) in FILTER_VARIABLES.items():
        if timescale in fits.g_filters:
            values[tau_name] = fits.c_filters[timescale] / (fits.g_filters[timescale] * target.t_unit)
    return MTCParameters(**values)
