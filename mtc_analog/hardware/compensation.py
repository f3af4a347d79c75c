"""Design-time compensation: pre-distort the mapped network so the *built* circuit computes the trained one.

    built = unmap_network(circuit)                       # what was mapped (model units)
    calibrated = calibrate_network(built, fits, target)  # what those cells actually compute
    next_spec = compensate_network(built, calibrated, wanted)   # what to map instead
    residual = compensation_residual(calibrated, wanted)        # how far the cells still are

A transistor target's cells deviate *systematically* from the ideal mapping (element OTAs deliver a few %
more than their tail current, the membrane node carries ~35 % parasitic capacitance, each readout low-pass
stage has a closed-loop gain of ~0.99). Those deviations are the same on every chip, so a designer sizes
the cells to cancel them: a calibrated model (:mod:`.calibration`) says what a mapped value *does*, and this
transform inverts it, one quantity at a time, as a fixed-point iteration of
``characterise -> calibrate -> compensate -> map``:

- first step (no history): voltages and currents that the circuit shifts (offsets ``d_x``, ``U_rest``, the
  biases: :data:`SHIFTED`) move by the error, ``p' = p + (wanted - calibrated)``; everything else (gains,
  time constants, R, weights, the low-pass tau) the circuit scales, ``p' = p * wanted / calibrated``;
- later steps (``previous`` given): a secant per value, ``p' = p + (wanted - calibrated) / slope`` with the
  slope measured between the last two steps. It is exact for affine cells in one more step (a parasitic
  capacitance adds to the mapped one: ``tau = (C_m + C_par) / g``, which the ratio step leaves ~9 % off).
  Slopes outside [1/4, 4] (noise, a value that barely moved) fall back to the first-step rule.

Values the mapping did not build (a pruned weight, an absent element: 0) stay 0; a scaled value never
changes sign and moves by at most x2 per step. Mismatch is *not* compensated: it differs per chip
(:mod:`.mismatch`); this removes only what every chip shares. Pure numpy: spec in, spec out.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..neuron.equations import ELEMENTS, FILTER_VARIABLES, SHIFTED_FIELDS

#: Quantities the circuit shifts (compensated by adding the error); every other one it scales.
SHIFTED = frozenset(SHIFTED_FIELDS) | {"bias"}
#: Secant slopes outside this range are not trusted (fall back to the first-step rule).
SLOPE_RANGE = (0.25, 4.0)
#: A scaled value moves by at most this factor per step.
MAX_STEP_FACTOR = 2.0

_GAINS = {e.gain for e in ELEMENTS}
_OFFSETS = {e.offset for e in ELEMENTS}
_FILTER_TAUS = {tau for _, tau in FILTER_VARIABLES.values()}


def spec_quantities(spec: Any) -> dict[str, np.ndarray]:
    """Every compensable value of a :class:`~mtc_analog.spec.NetworkSpec` as flat float arrays, by name
    (``layer0.a_f``, ``layer0.weight``, ``readout.bias``, ``readout.lowpass_tau``, ...)."""
    values: dict[str, np.ndarray] = {}
    for index, layer in enumerate(spec.layers):
        for name, column in layer.params._asdict().items():
            values[f"layer{index}.{name}"] = np.broadcast_to(np.asarray(column, dtype=float), (layer.size,)).copy()
        values[f"layer{index}.weight"] = np.array(layer.weight, dtype=float)
        values[f"layer{index}.bias"] = np.array(layer.bias, dtype=float)
    values["readout.weight"] = np.array(spec.readout.weight, dtype=float)
    values["readout.bias"] = np.array(spec.readout.bias, dtype=float)
    values["readout.lowpass_tau"] = np.array([float(spec.readout.lowpass_tau)])
    return values


def with_quantities(spec: Any, values: dict[str, np.ndarray]) -> Any:
    """``spec`` with the values of :func:`spec_quantities` replaced (the inverse of it)."""
    layers = []
    for index, layer in enumerate(spec.layers):
        params = layer.params._replace(**{name: values[f"layer{index}.{name}"] for name in layer.params._fields})
        layers.append(dataclasses.replace(layer, params=params, weight=values[f"layer{index}.weight"],
                                          bias=values[f"layer{index}.bias"]))
    readout = dataclasses.replace(spec.readout, weight=values["readout.weight"], bias=values["readout.bias"],
                                  lowpass_tau=float(values["readout.lowpass_tau"][0]))
    return dataclasses.replace(spec, layers=layers, readout=readout)


def _field(key: str) -> str:
    return key.rsplit(".", 1)[1]


def compensate_network(built: Any, calibrated: Any, wanted: Any, previous: tuple[Any, Any] | None = None) -> Any:
    """The spec to map next so that its calibrated model approaches ``wanted`` (see the module docstring).

    ``built``: the spec as mapped now (``unmap_network(circuit)``); ``calibrated``: what its cells compute
    (:func:`~mtc_analog.hardware.calibration.calibrate_network`); ``wanted``: the trained network (same shapes);
    ``previous``: ``(built, calibrated)`` of the step before, for the secant."""
    b, c, w = spec_quantities(built), spec_quantities(calibrated), spec_quantities(wanted)
    b_prev, c_prev = (spec_quantities(previous[0]), spec_quantities(previous[1])) if previous else ({}, {})
    out = {}
    for key, now in b.items():
        shifted = _field(key) in SHIFTED
        error = w[key] - c[key]
        with np.errstate(divide="ignore", invalid="ignore"):
            first = now + error if shifted else np.where(c[key] != 0, now * w[key] / c[key], now)
            step = first
            if key in b_prev:
                moved = now - b_prev[key]
                scale = np.maximum(np.abs(now), 1e-12) if not shifted else 1.0
                slope = (c[key] - c_prev[key]) / moved
                usable = (np.abs(moved) > 1e-6 * scale) & (slope > SLOPE_RANGE[0]) & (slope < SLOPE_RANGE[1])
                step = np.where(usable, now + error / np.where(usable, slope, 1.0), first)
        if not shifted:  # keep the sign, leave unbuilt values at 0, bound the step
            low, high = np.sort(np.stack([now / MAX_STEP_FACTOR, now * MAX_STEP_FACTOR]), axis=0)
            step = np.where(now != 0, np.clip(np.nan_to_num(step, nan=0.0), low, high), 0.0)
        out[key] = np.where(np.isfinite(step), step, now)
    return with_quantities(built, out)


def _group(key: str) -> str:
    """The group of :func:`compensation_residual` a value belongs to (units in brackets: an absolute error)."""
    name = _field(key)
    if key == "readout.bias":
        return "readout bias [output]"
    if key.startswith("readout."):
        return "readout weights, low-pass tau"
    if name in _GAINS:
        return "element gains"
    if name in _OFFSETS:
        return "element offsets [V_s]"
    if name in ("tau_m", "resistance"):
        return "membrane tau_m, R"
    if name == "u_rest":
        return "rest [V_s]"
    if name in _FILTER_TAUS:
        return "filter taus"
    if name == "weight":
        return "weights"
    return "biases [I_u]"


def pinned_values(requested: Any, built: Any, rtol: float = 1e-9) -> dict[str, list[int]]:
    """Values that the target's ranges kept from moving where compensation asked (``requested``: the spec asked
    for; ``built``: ``unmap_network`` of what was mapped and clipped), as flat indices by quantity name."""
    r, b = spec_quantities(requested), spec_quantities(built)
    pinned = {}
    for key, want in r.items():
        moved = np.flatnonzero(~np.isclose(b[key].reshape(-1), want.reshape(-1), rtol=rtol, atol=1e-15))
        if moved.size:
            pinned[key] = [int(i) for i in moved]
    return pinned


def compensation_residual(calibrated: Any, wanted: Any, pinned: dict[str, list[int]] | None = None) -> dict[str, float]:
    """How far the calibrated model is from the wanted network, per group of quantities: the largest relative
    error of scaled values (``|calibrated / wanted - 1|``, where wanted != 0) and the largest absolute error of
    shifted ones (offsets and rest in V_s, biases in I_u; the readout bias in output units). Values ``pinned`` at
    a range limit (:func:`pinned_values`) are left out of their group and counted under ``pinned values``."""
    c, w = spec_quantities(calibrated), spec_quantities(wanted)
    residual: dict[str, float] = {}
    pinned = pinned or {}
    for key, target in w.items():
        got = c[key].reshape(-1).copy()
        target = target.reshape(-1).copy()
        if key in pinned:  # compare them with themselves: they add nothing to the group
            got[pinned[key]] = target[pinned[key]]
        if _field(key) in SHIFTED:
            errors = np.abs(got - target)
        else:
            built = (target != 0) & (got != 0)  # a value the mapping pruned is a range change, reported there
            errors = np.abs(got[built] / target[built] - 1.0)
        group = _group(key)
        worst = float(errors.max()) if errors.size else 0.0
        residual[group] = max(residual.get(group, 0.0), worst)
    if pinned:
        residual["pinned values"] = float(sum(len(v) for v in pinned.values()))
    return residual


def worst_scaled(residual: dict[str, float]) -> tuple[str, float] | None:
    """The group of a :func:`compensation_residual` with the largest relative error (scaled values only: the
    shifted groups carry units, in brackets) and that error; None when there is none."""
    scaled = {k: v for k, v in residual.items() if "[" not in k and k != "pinned values"}
    if not scaled:
        return None
    group = max(scaled, key=scaled.get)
    return group, scaled[group]
