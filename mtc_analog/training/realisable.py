"""Keep a trained MTC network realisable on a hardware target: prune devices too small to build.

A trained weight, bias or gain becomes a current ``|value| * I_u`` (a synapse's transconductor
bias, a bias current, an OTA tail current; docs/reference.md §8). Below the target's floor ``i_min`` (leakage)
it cannot be built, and ``export`` refuses it without ``--clip`` — e.g. a readout weight of 1.2e-4
(118 fA at I_u = 1 nA). Such a device contributes at most ``i_min`` to a current of order ``I_u``,
so :func:`prune_unrealisable` removes it from the model itself (weight/bias set to 0; a gain's raw
parameter set so that softplus gives exactly 0), lists every pruned device, and checks the result
against the target with the hardware half's own range check. The pruned network is what is
evaluated, checkpointed and exported: model and circuit stay the same system.
"""

from __future__ import annotations

from typing import Any

import torch

#: Raw value of a pruned gain: softplus(-1000) is exactly 0 in float32 and float64 (an absent element).
PRUNED_RAW_GAIN = -1000.0


def prune_unrealisable(network: Any, target: Any) -> dict[str, Any]:
    """Zero every MTC-network weight, bias and gain whose mapped current is below ``target.i_min``.

    Returns ``{"floor": model units, "pruned": [description, ...], "n_pruned": k,
    "range_violations": [str, ...]}`` — the violations that remain after pruning (e.g. values above
    the target's maximum), from :func:`mtc_analog.hardware.check_ranges`. LIF/AdLIF networks have
    no circuit: ``{"n_pruned": 0, "skipped": reason}``.
    """
    if network.config.neuron != "mtc":
        return {"n_pruned": 0, "pruned": [], "skipped": f"{network.config.neuron} networks are not mapped to circuits"}
    floor = float(target.i_min / target.i_unit)
    pruned: list[str] = []

    def prune(name: str, tensor: torch.Tensor, unit: Any = target) -> None:
        # the readout's floor in model units is the same: its unit and its i_min scale together (readout_target)
        small = (tensor != 0) & (tensor.abs() < floor)
        for index in small.nonzero().tolist():
            value = float(tensor[tuple(index)])
            pruned.append(f"{name}{index}: {value:.3g} I_u = {abs(value) * unit.i_unit:.3g} A < i_min "
                          f"{unit.i_min:.3g} A")
        tensor[small] = 0.0

    with torch.no_grad():
        for k, proj in enumerate(network.projections):
            prune(f"layer {k} weight", proj.weight)
            prune(f"layer {k} bias", proj.bias)
        prune("readout weight", network.readout.weight, target.readout_target())
        prune("readout bias", network.readout.bias, target.readout_target())
        for k, layer in enumerate(network.layers):
            for gain, raw in layer.raw_gains.items():
                small = (torch.nn.functional.softplus(raw) < floor) & (raw > PRUNED_RAW_GAIN)
                for index in small.nonzero().tolist():
                    value = float(torch.nn.functional.softplus(raw[tuple(index)]))
                    pruned.append(f"layer {k} {gain}{index}: {value:.3g} I_u < i_min {target.i_min:.3g} A")
                raw[small] = PRUNED_RAW_GAIN
    return {"floor": floor, "pruned": pruned, "n_pruned": len(pruned),
            "range_violations": remaining_violations(network, target), "target": target.name}


def remaining_violations(network: Any, target: Any) -> list[str]:
    """The hardware half's range check of the mapped network (empty: it exports without --clip)."""
    from ..hardware import check_ranges, map_network

    return [str(v) for v in check_ranges(map_network(network.to_spec(), target), target)]
