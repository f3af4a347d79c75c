"""Hardware-aware training: the forward pass sees what a circuit target's cells do to the parameters.

    hw = HardwareModel.from_config(train_cfg, network)     # None when training on the ideal model
    output = network(x, deviation=hw.draw(network, epoch, batch))

Two parts, each a :class:`~mtc_analog.hardware.deviation.NetworkDeviation` (factors on gains, time constants,
weights, biases; shifts on offsets and rest voltages):

* ``--hardware TARGET``: the target's measured cell deviations (its calibration table,
  ``hardware/targets/<target>.calibration.json``: element saturation currents vs bias, offsets, the membrane's
  parasitic capacitance and output conductances, filter and transconductor transfer). Fixed; also used for
  the validation split, so the best epoch is the best on the hardware model.
* ``--mismatch-aware``: a fresh mismatch draw per batch, with the statistics of the target
  (:func:`~mtc_analog.hardware.mismatch.statistics_for_target`, the Monte Carlo's) and the Monte Carlo's own
  draw (:func:`~mtc_analog.hardware.deviation.mismatch_deviation`), seeded ``(MISMATCH_STREAM, seed, epoch,
  batch)``. Zero spreads reproduce the nominal (or calibrated) model exactly. ``--mismatch-draws K`` splits each
  batch's windows into K groups, each through its own chip (seed ``(..., batch, k)`` for k >= 1): the gradient then
  averages over K chips on the same windows (smaller sub-batches: more wall time), where one chip per batch gives a
  noisy one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..hardware import load_target
from ..hardware.deviation import (CalibrationTable, NetworkDeviation, calibration_deviation, compose, load_calibration,
                                  mismatch_deviation)
from ..hardware.mismatch import MismatchStatistics, statistics_for_target
from ..hardware.target import HardwareTarget

#: First element of every training draw's seed: training draws never coincide with a Monte Carlo's (S, k).
MISMATCH_STREAM = 104729


def statistics_target(cfg: Any) -> str:
    """The target whose mismatch statistics a run draws: ``--hardware``, else the pruning target."""
    return cfg.hardware or cfg.hardware_target or "behavioral"


def training_statistics(cfg: Any, target: HardwareTarget) -> MismatchStatistics:
    """The target's statistics, with ``mismatch_sigma_rel`` / ``mismatch_sigma_offset`` overriding (checked; the
    transconductor offsets scale with the OTA offset)."""
    base = statistics_for_target(statistics_target(cfg), target)
    rel = base.sigma_rel if cfg.mismatch_sigma_rel is None else cfg.mismatch_sigma_rel
    offset = base.sigma_offset if cfg.mismatch_sigma_offset is None else cfg.mismatch_sigma_offset
    if rel == base.sigma_rel and offset == base.sigma_offset:
        return base
    return base.with_cell_spreads(rel, offset, f"given (sigma_rel {rel:g}, sigma_offset {offset:g} V)")


@dataclass
class HardwareModel:
    """What the forward pass applies: a fixed calibration and/or per-batch mismatch draws."""

    target: HardwareTarget
    calibration: NetworkDeviation | None
    table: CalibrationTable | None
    statistics: MismatchStatistics | None
    seed: int

    @classmethod
    def from_config(cls, cfg: Any, network: Any) -> "HardwareModel | None":
        if not cfg.hardware and not cfg.mismatch_aware:
            return None
        if network.neuron != "mtc":
            flag = "--hardware" if cfg.hardware else "--mismatch-aware"
            raise InputError(f"{flag} trains MTC networks on a circuit model; this run's neuron is {network.neuron!r}")
        name = statistics_target(cfg)
        target = load_target(name.partition(":")[0])
        table = load_calibration(cfg.hardware) if cfg.hardware else None
        spec = network.to_spec()
        calibration = calibration_deviation(table, spec) if table is not None else None
        statistics = training_statistics(cfg, target) if cfg.mismatch_aware else None
        return cls(target, calibration, table, statistics, int(cfg.seed))

    def nominal(self) -> NetworkDeviation | None:
        """The deviation without mismatch (validation, test): the calibration, or None."""
        return self.calibration

    def draw(self, network: Any, epoch: int, batch: int, chip: int = 0) -> NetworkDeviation | None:
        """The deviation of one training batch (``chip``: which of the batch's ``--mismatch-draws`` chips; chip 0 keeps
        the seed of a run with one draw per batch)."""
        if self.statistics is None:
            return self.calibration
        seed = (MISMATCH_STREAM, self.seed, epoch, batch) + ((chip,) if chip else ())
        drawn = mismatch_deviation(network.to_spec(), self.statistics, seed, self.target)
        return drawn if self.calibration is None else compose(self.calibration, drawn)

    def describe(self) -> dict[str, Any]:
        """What a run trained against (metrics.json)."""
        return {"calibration": None if self.table is None else {"target": self.table.target, "source": self.table.source},
                "mismatch": None if self.statistics is None else self.statistics.to_dict()}


def trained_target(checkpoint: Any) -> str | None:
    """The ``--hardware`` target a loaded checkpoint was trained for (None: the ideal model)."""
    return ((checkpoint.training or {}).get("train_config") or {}).get("hardware")


def target_warning(checkpoint: Any, circuit_target: str) -> str | None:
    """One line when ``checkpoint`` was trained for another target's cells than ``circuit_target``'s."""
    trained = trained_target(checkpoint)
    if trained is None or trained.partition(":")[0] == circuit_target.partition(":")[0]:
        return None
    from ..hardware.deviation import calibration_path

    retrain = (f"retrain with --hardware {circuit_target}" if calibration_path(circuit_target).exists()
               else f"retrain without --hardware for {circuit_target}'s cells")
    return (f"warning: this checkpoint was trained on {trained}'s calibrated cells (--hardware {trained}); on "
            f"{circuit_target} it meets cells it was not trained for: expect a larger circuit-model gap "
            f"(use --target {trained}, or {retrain})")


def print_target_warning(checkpoint_path: Any, circuit_target: str, say: Any = None) -> str | None:
    """For ``export`` / ``validate`` / ``montecarlo``: print :func:`target_warning` (stderr) if it applies."""
    import sys

    from .checkpoint import load_checkpoint

    line = target_warning(load_checkpoint(checkpoint_path), circuit_target)
    if line:
        (say or (lambda text: print(text, file=sys.stderr)))(line)
    return line
