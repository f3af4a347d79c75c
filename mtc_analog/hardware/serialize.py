"""A JSON-able view of a mapped circuit: every circuit value with its unit beside its model value.

Each quantity is written as ``{"value": SI number(s), "unit": "A", "model": model number(s),
"model_unit": "I_u"}``. Arrays become nested lists. The export writes this into ``mapping.json``;
the spice side adds which node carries what.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..neuron.equations import ELEMENTS, FILTER_VARIABLES
from .mapping import FilterCircuit, NetworkCircuit, NeuronCircuit, unmap_filter, unmap_neuron
from .target import HardwareTarget


def quantity(value: Any, unit: str, model: Any = None, model_unit: str | None = None) -> dict[str, Any]:
    """One mapped value: SI value and unit, and (if given) the model value and its unit."""
    out: dict[str, Any] = {"value": _plain(value), "unit": unit}
    if model is not None:
        out["model"] = _plain(model)
        out["model_unit"] = model_unit or ""
    return out


def filter_to_dict(circuit: FilterCircuit | None, target: HardwareTarget) -> dict[str, Any] | None:
    if circuit is None:
        return None
    return {
        "kind": circuit.kind,
        "capacitance": quantity(circuit.capacitance, "F"),
        "bias_current": quantity(circuit.bias_current, "A"),
        "tau": quantity(circuit.tau_seconds(target), "s", unmap_filter(circuit, target), "t_u"),
    }


def neuron_to_dict(circuit: NeuronCircuit, target: HardwareTarget) -> dict[str, Any]:
    """A neuron's circuit values, each beside the model parameter it realises."""
    params, transduction, _ = unmap_neuron(circuit, target)
    elements = {}
    for element in ELEMENTS:
        mapped = circuit.element(element.name)
        elements[element.name] = {
            "sign": mapped.sign,
            "reads": mapped.timescale,
            "tail_current": quantity(mapped.tail_current, "A", getattr(params, element.gain), f"I_u ({element.gain})"),
            "v_ref": quantity(mapped.v_ref, "V", getattr(params, element.offset), f"V_s ({element.offset})"),
        }
    t = circuit.transduction
    return {
        "c_m": quantity(circuit.c_m, "F", params.tau_m, "t_u (tau_m)"),
        "r_leak": quantity(circuit.r_leak, "Ohm", params.resistance, "R"),
        "v_rest": quantity(circuit.v_rest, "V", params.u_rest, "V_s (u_rest)"),
        "elements": elements,
        "filters": {ts: filter_to_dict(circuit.filters.get(ts), target) for ts in FILTER_VARIABLES},
        "transduction": {
            "kind": t.kind,
            "v_th": quantity(t.v_th, "V", transduction.u_th, "V_s"),
            "v_sat": quantity(t.v_sat, "V", transduction.u_sat, "V_s"),
            "v_c": quantity(t.v_c, "V", transduction.u_c, "V_s"),
        },
    }


def network_circuit_to_dict(circuit: NetworkCircuit) -> dict[str, Any]:
    """The whole mapped network (see :meth:`NetworkCircuit.to_dict`)."""
    target = circuit.target
    layers = []
    for layer in circuit.layers:
        layers.append(
            {
                "size": layer.size,
                "synapse_gm": quantity(layer.synapse_gm, "S", np.asarray(layer.synapse_gm) / target.g_unit, "weight"),
                "bias_current": quantity(layer.bias_current, "A", np.asarray(layer.bias_current) / target.i_unit, "I_u"),
                "neurons": [neuron_to_dict(neuron, target) for neuron in layer.neurons],
            }
        )
    readout, unit = circuit.readout, target.readout_target()
    return {
        "target": target.summary(),
        "t_step": quantity(circuit.t_step, "s", target.model_time(circuit.t_step), "t_u (dt)"),
        "sample_period": quantity(circuit.sample_period, "s", target.model_time(circuit.sample_period), "t_u"),
        "model_method": circuit.model_method,
        "n_in": circuit.n_in,
        "input_encoding": "v_x = v_rest + x * v_s (x in model units)",
        "layers": layers,
        "readout": {
            "current_unit": quantity(unit.i_unit, "A", unit.i_unit / target.i_unit, "I_u"),
            "gm": quantity(readout.gm, "S", np.asarray(readout.gm) / unit.g_unit, "weight"),
            "bias_current": quantity(readout.bias_current, "A", np.asarray(readout.bias_current) / unit.i_unit, "I_u,ro"),
            "r_load": quantity(readout.r_load, "Ohm", readout.r_load * unit.i_unit / unit.v_s, "R"),
            "lowpass": [filter_to_dict(stage, unit) for stage in readout.lowpass],
        },
    }


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
