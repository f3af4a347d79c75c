"""Design-time compensation of a mapped circuit against its own cells, measured in ngspice.

    circuit, record = compensate_circuit(circuit, settings, x, model_lowpass, iterations=2)

Each iteration characterises every cell of the circuit (:func:`~mtc_analog.validation.calibrated.
characterised_spec`: one ngspice run per chunk), folds the measurements into the calibrated model, and re-maps
the network with :func:`~mtc_analog.hardware.compensation.compensate_network`, so the calibrated model of the
next circuit approaches the network as the ideal mapping builds it (values clipped to the target's ranges
included: compensation aims at what the target can build). Only targets that can be characterised (sky130)
have anything to compensate; the behavioural cells are ideal.

``record`` (JSON-able) holds, per iteration, the residual of the circuit that was measured
(:func:`~mtc_analog.hardware.compensation.compensation_residual`) and the wall time, and ``pinned``: the values the
target's ranges kept from moving (e.g. a readout synapse clipped up to the 10 pA floor: it stays a few % strong),
by quantity name and flat index. The circuit returned is the last compensated one, which the caller simulates
(and the calibrated validation measures once more).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from ..errors import InputError

#: Rounds that leave every cell group within ~1e-4 of the wanted network on sky130 (the ratio step leaves the
#: membrane's tau_m, R ~9 % off, coupled through C_m = tau_m t_u / R_l; two secant steps take it to 0.6 %, 0.01 %).
DEFAULT_ITERATIONS = 3


def check_rounds(rounds: int, circuit_target: Any) -> None:
    """Refuse ``--compensate ROUNDS`` that cannot run: negative, or on a circuit target (name or object) whose cells
    cannot be characterised (the behavioural one: ideal cells, nothing to compensate)."""
    from ..spice.target import get_target

    if rounds < 0:
        raise InputError(f"--compensate must be >= 0 rounds, got {rounds}")
    if rounds and not hasattr(get_target(circuit_target), "characterise_network"):
        raise InputError(f"--compensate: the {circuit_target!r} target's cells cannot be characterised (they are ideal: "
                         "nothing to compensate); use it with --target sky130")


def compensate_circuit(circuit: Any, settings: Any, x: np.ndarray, lowpass: np.ndarray, iterations: int,
                       progress: Callable[[str], None] | None = None,
                       measure_last: bool = False) -> tuple[Any, dict[str, Any]]:
    """``iterations`` rounds of characterise -> calibrate -> compensate -> map on ``circuit`` (see the module);
    ``measure_last``: characterise the compensated circuit once more for ``record["residual_after"]`` (validation
    does that itself, for its calibrated model)."""
    from ..hardware import enforce_ranges, map_network, unmap_network
    from ..hardware.compensation import compensate_network, compensation_residual, pinned_values
    from .calibrated import characterisation_hook, characterised_spec

    check_rounds(iterations, settings.circuit_target)
    hook = characterisation_hook(settings)
    say = progress or (lambda _: None)
    wanted = unmap_network(circuit)
    target = circuit.target
    steps, previous, pinned = [], None, {}
    for k in range(iterations):
        say(f"compensation {k + 1}/{iterations}: characterising every cell, re-mapping against the measurements")
        start = time.perf_counter()
        calibrated = characterised_spec(hook, circuit, settings, x, lowpass)
        built = unmap_network(circuit)
        requested = compensate_network(built, calibrated, wanted, previous)
        steps.append({"iteration": k, "residual_before": compensation_residual(calibrated, wanted, pinned)})
        circuit, _ = enforce_ranges(map_network(requested, target), target, clip=True)
        pinned = pinned_values(requested, unmap_network(circuit))
        previous = (built, calibrated)
        steps[-1].update(pinned_values=sum(len(v) for v in pinned.values()), wall_s=time.perf_counter() - start)
    record = {"iterations": iterations, "steps": steps, "pinned": pinned,
              **({"residual_after": compensation_residual(characterised_spec(hook, circuit, settings, x, lowpass), wanted,
                                                          pinned)} if measure_last and iterations else {}),
              "wanted": "the network as the ideal mapping builds it (clipped values included)"}
    return circuit, record
