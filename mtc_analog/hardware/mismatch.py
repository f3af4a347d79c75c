"""Device mismatch as a transform of a mapped circuit (for Monte-Carlo runs).

Every bias current (OTA tails, filter biases, synapse transconductor biases, bias currents) and every
capacitor is multiplied by an independent log-normal factor

.. math::  X' = X \\, e^{\\sigma_{rel} z}, \\qquad z \\sim \\mathcal N(0, 1)

(median 1, relative spread ~sigma_rel for small sigma; signs and absent devices are kept). In
subthreshold a threshold-voltage mismatch ``dV_T`` scales a current by ``exp(kappa dV_T / U_T)``,
which is why the perturbation is log-normal, not normal. Optionally every operating voltage the
range checks know (element references, transduction thresholds, rest voltages) gets an additive
offset ``sigma_offset`` [V] times ``z`` (OTA input offset). Resistors are left alone.

Draws come from ``numpy.random.default_rng(seed)`` in a fixed walk order, so a seed reproduces a
circuit exactly. :func:`~mtc_analog.hardware.mapping.unmap_network` of the result gives the perturbed
model, e.g. to run the same mismatch in the model.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .ranges import CheckedValues, Circuit, transform_values
from .mapping import NetworkCircuit
from .target import HardwareTarget


def apply_mismatch(
    circuit: Circuit,
    sigma_rel: float,
    seed: int,
    sigma_offset: float = 0.0,
    target: HardwareTarget | None = None,
) -> Circuit:
    """A copy of ``circuit`` with seeded log-normal mismatch on currents and capacitors (see module)."""
    for name, value in (("sigma_rel", sigma_rel), ("sigma_offset", sigma_offset)):
        if not (np.isfinite(value) and value >= 0):
            raise InputError(f"{name} = {value!r}: need a finite value >= 0")
    if target is None:
        if not isinstance(circuit, NetworkCircuit):
            raise InputError("apply_mismatch of a single NeuronCircuit needs its target")
        target = circuit.target
    rng = np.random.default_rng(seed)

    def perturb(check: CheckedValues, values: np.ndarray) -> np.ndarray:
        z = rng.standard_normal(values.shape)  # drawn for every group, so the walk order fixes the draws
        if check.unit in ("A", "F"):
            return values * np.exp(sigma_rel * z)
        if check.unit == "V":
            return values + sigma_offset * z
        return values

    return transform_values(circuit, target, perturb)
