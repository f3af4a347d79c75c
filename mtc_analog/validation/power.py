"""Power, energy and area proxies of a simulated circuit: the figures a designer weighs.

From a transient whose netlist saved the supply current (the builder's ``operating_point=True`` asks the
target's hook ``supply_source``; on sky130 the global ``Vsky130_vdd``):

- ``supply``: ``P = V_DD * mean(I_DD)`` (time-weighted mean over the simulator's own time points) and
  ``E = V_DD * integral(I_DD dt)``. On sky130 every OTA's tail is mirrored from an ideal reference current
  that is itself drawn from ``vdd`` (``Iref vdd nb`` in each cell), so the bias branches are in I_DD: a 1:1
  mirror tree would draw the same. Counted: every OTA (elements, leak, filters, synapses, readout load,
  low-pass) with its bias branch.
- ``network bias currents``: the layers' and readout's constant bias currents are ideal sources from ground
  in the netlist; they are added as ``V_DD * sum |I_b|`` (what a mirror from V_DD would draw).
- not counted: the reference voltages (ideal sources; a resistor string or DAC would add its own current),
  V_rest, the network inputs (ideal sources driving gates only) and the transduction stage (behavioural).

Energy per spike is the total energy over the hidden neurons' spike count; per inference it is the total
energy over the input samples streamed (one prediction per sample). Area proxies: total capacitance (from
the mapped circuit) and transistor count / gate area W*L*m (from the target's cell library, expanded through
every subcircuit), per neuron and for the network.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from ..spice.parse import read_deck

NOT_COUNTED = ("reference voltages V_ref (ideal sources)", "V_rest", "network inputs (ideal sources)",
               "transduction stage (behavioural B-source)")


def supply_current(waves: Any, source: str) -> np.ndarray:
    """Current delivered by ``source`` [A] at every time point (ngspice's branch current flows into its + node)."""
    return -np.asarray(waves[f"i({source.lower()})"], dtype=float)


def time_average(time: np.ndarray, values: np.ndarray) -> float:
    """Mean of ``values`` over the (non-uniform) time points: trapezoidal integral / duration."""
    time = np.asarray(time, dtype=float)
    return float(np.trapezoid(values, time) / (time[-1] - time[0]))


# ---- area: devices per cell, from the target's library -------------------------------------------
def _number(text: str) -> float:
    from ..spice.netlist import parse_spice_number

    return parse_spice_number(text)


def _evaluate(text: str, scope: dict[str, str]) -> float | None:
    """A SPICE parameter value: a number, a parameter of ``scope`` or ``{...}`` arithmetic of them (+ - * /);
    None when it is something else (a device counter only needs multipliers, which are these)."""
    import ast
    import operator

    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id.lower() in scope:  # the name leaves the scope: no cycles
            inner = _evaluate(scope[node.id.lower()], {k: v for k, v in scope.items() if k != node.id.lower()})
            if inner is not None:
                return inner
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](value(node.left), value(node.right))
        raise ValueError(text)

    raw = text.strip().strip("{}").strip()
    try:
        return _number(raw)
    except Exception:  # noqa: BLE001 - not a plain number: an expression
        pass
    try:
        return value(ast.parse(raw, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError):
        return None


@lru_cache(maxsize=8)
def device_counts(library: str) -> dict[str, tuple[float, float]]:
    """Per subcircuit of ``library`` (SPICE text): (transistors, gate area W*L [um^2]), every instance
    expanded and ``mult``/``m`` copies counted. Leaf devices are ``M`` lines (W and L in metres)."""
    deck = read_deck(library)
    body: dict[str, list[list[str]]] = {}
    defaults: dict[str, dict[str, str]] = {}
    current = None
    for statement in deck.statements:
        tokens = statement.tokens
        if statement.keyword == ".subckt":
            current = tokens[1].lower()
            body[current] = []
            defaults[current] = dict(t.lower().split("=", 1) for t in tokens[2:] if "=" in t)
        elif statement.keyword == ".ends":
            current = None
        elif current is not None and tokens and tokens[0][:1].lower() in ("m", "x"):
            body[current].append(tokens)
    counts: dict[str, tuple[float, float]] = {}

    def copies(params: dict[str, str], names: tuple[str, ...], scope: dict[str, str]) -> float:
        for name in names:
            if name in params:
                value = _evaluate(params[name], scope)
                return 1.0 if value is None else value
        return 1.0

    def expand(name: str, scope: dict[str, str]) -> tuple[float, float]:
        total, area = 0.0, 0.0
        for tokens in body.get(name, []):
            params = dict(t.lower().split("=", 1) for t in tokens[1:] if "=" in t)
            if tokens[0][:1].lower() == "m":
                m = copies(params, ("m",), scope)
                w, l = _number(params.get("w", "0")), _number(params.get("l", "0"))
                total, area = total + m, area + m * w * l * 1e12
            else:
                sub = [t for t in tokens[1:] if "=" not in t][-1].lower()
                m = copies(params, ("m",), scope)  # an X multiplier; "mult" is a parameter the M line uses
                # the instance's parameters are expressions of this subcircuit's (mult={2*km}): evaluated here
                passed = {k: v if (x := _evaluate(v, scope)) is None else repr(x) for k, v in params.items()}
                inner = expand(sub, {**defaults.get(sub, {}), **passed})
                total, area = total + m * inner[0], area + m * inner[1]
        return total, area

    for name in body:
        counts[name] = expand(name, defaults[name])
    return counts


def _area(cells: Sequence[dict[str, Any]], counts: dict[str, tuple[float, float]]) -> tuple[float, float]:
    n = sum(c.get("scale", 1.0) * counts.get(c.get("subckt", c["kind"]), (0.0, 0.0))[0] for c in cells)
    a = sum(c.get("scale", 1.0) * counts.get(c.get("subckt", c["kind"]), (0.0, 0.0))[1] for c in cells)
    return n, a


def _capacitances(circuit: Any) -> tuple[list[list[float]], float]:
    """Per layer, per neuron: C_m + its filter capacitors [F]; and the readout's low-pass capacitors [F]."""
    per_neuron = [[float(n.c_m) + sum(float(f.capacitance) for f in n.filters.values() if f is not None)
                   for n in layer.neurons] for layer in circuit.layers]
    readout = float(sum(s.capacitance for s in circuit.readout.lowpass)) * int(np.asarray(circuit.readout.gm).shape[0])
    return per_neuron, readout


def power_report(waves: Any, nodes: dict[str, Any], circuit: Any, n_samples: int, n_spikes: int,
                 library: str = "") -> dict[str, Any]:
    """The ``report.json`` entry ``power`` (see the module docstring). ``library``: the target's cell
    library text, for the transistor count (empty: not counted)."""
    op = nodes.get("operating_point") or {}
    supply = op.get("supply")
    n_neurons = sum(layer.size for layer in circuit.layers)
    per_neuron_c, readout_c = _capacitances(circuit)
    total_c = sum(map(sum, per_neuron_c)) + readout_c
    cells = op.get("cells", [])
    counts = device_counts(library) if library and cells else {}
    neuron_area = [_area([c for c in cells if c["layer"] == l and c["neuron"] == i], counts)
                   for l, layer in enumerate(circuit.layers) for i in range(layer.size)]
    net_transistors, net_gate_area = _area(cells, counts)
    area = {
        "capacitance_per_neuron_f": float(np.mean([c for layer in per_neuron_c for c in layer])),
        "capacitance_network_f": total_c,
        "capacitance_readout_f": readout_c,
        "transistors_per_neuron": float(np.mean([a[0] for a in neuron_area])) if counts else None,
        "transistors_network": net_transistors if counts else None,
        "gate_area_per_neuron_um2": float(np.mean([a[1] for a in neuron_area])) if counts else None,
        "gate_area_network_um2": net_gate_area if counts else None,
        "note": "per neuron: C_m + filter capacitors; its element OTAs, leak, filters and incoming synapses. "
                "Network: plus readout synapses, load and low-pass. Gate area = sum of W*L*m of every transistor; "
                "the transduction stage is behavioural (no transistors counted).",
    }
    out: dict[str, Any] = {"measured": supply is not None, "area": area, "neurons": n_neurons,
                           "input_samples": int(n_samples), "spikes": int(n_spikes)}
    if supply is None:
        out["reason"] = ("the circuit target has ideal cells (no supply)" if op else
                         "the circuit was simulated without the supply probe (split netlists)")
        return out
    time = np.asarray(waves.time, dtype=float)
    duration = float(time[-1] - time[0])
    volts = float(supply["volts"])
    current = supply_current(waves, supply["source"])
    mean_current = time_average(time, current)
    bias = float(np.abs(np.asarray(circuit.readout.bias_current, dtype=float)).sum()
                 + sum(np.abs(np.asarray(layer.bias_current, dtype=float)).sum() for layer in circuit.layers))
    p_supply = volts * mean_current
    p_bias = volts * bias
    p_total = p_supply + p_bias
    energy = p_total * duration
    out.update({
        "supply_source": supply["source"], "supply_v": volts, "duration_s": duration,
        "supply_current_mean_a": mean_current, "supply_current_start_a": float(current[0]),
        "supply_current_max_a": float(current.max()),
        "power_supply_w": p_supply, "power_bias_sources_w": p_bias, "power_total_w": p_total,
        "power_per_neuron_w": p_total / max(1, n_neurons),
        "energy_total_j": energy,
        "energy_per_spike_j": energy / n_spikes if n_spikes else None,
        "energy_per_inference_j": energy / n_samples if n_samples else None,
        "counted": "V_DD x the simulated supply current (every OTA with its bias reference, which the sky130 cells "
                   "draw from vdd) + V_DD x the network's ideal bias currents",
        "not_counted": list(NOT_COUNTED),
    })
    return out


def library_text(target_name: str) -> str:
    """The cell library of a circuit target (no neuron variants: the cells are in it)."""
    from ..spice.target import get_target

    return get_target(target_name).library(set())


def count_spikes(spike_times: Sequence[Sequence[np.ndarray]]) -> int:
    """Total spikes of the hidden neurons (``Traces.spike_times``: per layer, per neuron, times)."""
    return int(sum(len(times) for layer in spike_times for times in layer))


def format_power_line(power: dict[str, Any]) -> str:
    """One line for ``validate``'s printed summary."""
    from ..hardware.ranges import si

    if not power.get("measured"):
        return f"power: not measured ({power.get('reason', 'no supply')})"
    per_spike = power.get("energy_per_spike_j")
    area = power.get("area", {})
    transistors = area.get("transistors_per_neuron")
    return (f"power {si(power['power_total_w'], 'W')} ({si(power['power_per_neuron_w'], 'W')} per neuron), "
            f"{si(per_spike, 'J') if per_spike else 'no spikes'} per spike, "
            f"{si(power['energy_per_inference_j'], 'J')} per input sample; "
            f"{si(area.get('capacitance_per_neuron_f', 0.0), 'F')}"
            + (f" and {transistors:.0f} transistors" if transistors else "") + " per neuron")


__all__ = ["power_report", "device_counts", "supply_current", "time_average", "count_spikes", "format_power_line",
           "library_text", "NOT_COUNTED"]
