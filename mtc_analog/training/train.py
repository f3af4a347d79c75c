"""Training a :class:`~mtc_analog.network.SpikingRegressor` on Mackey-Glass with truncated BPTT.

Each batch holds ``batch`` random contiguous windows of ``washout + window`` samples from the
training split; every window starts from rest, the first ``washout`` samples only warm the
states up, and the loss is the MSE over the remaining ``window`` samples. Adam, cosine learning
rate from ``lr`` to 0 over all batches, gradient-norm clipping. After every epoch the validation
NRMSE is measured; the best epoch is kept in ``best.safetensors`` and the latest (with the
optimizer state, for ``--resume``) in ``last.safetensors``. Window sampling is seeded by
(seed, epoch), so a resumed run draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError, OutputExistsError
from ..io import prepare_output_dir, write_json
from ..network import NetworkConfig, SpikingRegressor
from ..resources import check_training_memory
from ..tasks.mackey_glass import TaskConfig, TaskData, make_task, sample_windows
from .checkpoint import load_checkpoint, save_checkpoint
from .evaluate import DEFAULT_EVAL_WASHOUT, METRIC_DEFINITIONS, evaluate_split
from .swing import check_swing_settings, membrane_swing_penalty, resolved_swing_limit, swing_report

BEST, LAST, METRICS = "best.safetensors", "last.safetensors", "metrics.json"


@dataclass
class TrainConfig:
    """Optimisation budget and options (stored in the checkpoint)."""

    epochs: int = 25
    batches_per_epoch: int = 8
    batch: int = 32  #: windows per batch
    window: int = 100  #: scored samples per window (BPTT truncation = washout + window)
    washout: int = 50  #: unscored warm-up samples at the start of each window
    #: Adam learning rate (cosine-annealed to 0). 5e-2 with the default budget: 1e-2 left MTC at 0.48 and
    #: AdLIF at 0.53 test NRMSE (H = 84), 5e-2 gives 0.27 and 0.37 (docs/results_model.md)
    lr: float = 5e-2
    clip: float = 1.0  #: max gradient norm (<= 0 disables)
    weight_decay: float = 0.0
    eval_washout: int = DEFAULT_EVAL_WASHOUT
    seed: int = 0
    threads: int = 1  #: torch intra-op threads (the reference machine has 2 shared cores)
    #: MTC: hardware target whose ranges the trained network must fit (devices below its current
    #: floor are pruned at the end, listed in metrics.json); None: no pruning
    hardware_target: str | None = "behavioral"
    census: bool = True  #: MTC: regime census of the trained hidden neurons (metrics.json + figure)
    #: MTC: weight of the dead-neuron penalty (:func:`dead_neuron_penalty`); 0 disables it. At lr 5e-2
    #: about half of 64 neurons otherwise end dead (membrane never at U_th, zero gradient)
    activity_floor: float = 0.1
    #: MTC: train on this circuit target's calibrated cell model (its calibration table; --hardware sky130);
    #: None: the ideal model. Recorded here, so exporting to another target can warn
    hardware: str | None = None
    #: MTC: a fresh mismatch draw of the target's statistics per batch (training/hardware_aware.py)
    mismatch_aware: bool = False
    mismatch_sigma_rel: float | None = None  #: overrides the target's current/capacitor spread [1]
    mismatch_sigma_offset: float | None = None  #: overrides the target's OTA offset spread [V]
    #: chips per batch with --mismatch-aware: the batch's windows split into this many groups, each through its own
    #: draw (the gradient averages over chips on the same windows)
    mismatch_draws: int = 1
    #: start from this checkpoint's network (its architecture, parameters and task; a fresh optimizer), e.g. to
    #: make a trained network hardware-aware by fine-tuning it with mismatch draws; None: a fresh network
    init_from: str | None = None
    #: MTC: weight of the membrane-swing penalty (training/swing.py): keeps every membrane within ``swing_limit``
    #: of rest, where a target's leak and linear filters are still linear; 0 disables it
    swing_penalty: float = 0.0
    #: [V_s] excursion the swing penalty allows; None: the training target's ``linear_range`` (sky130: 3)
    swing_limit: float | None = None

    def validate(self) -> None:
        for name in ("epochs", "batches_per_epoch", "batch", "window", "threads"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} = {getattr(self, name)} must be >= 1")
        if self.washout < 0 or self.eval_washout < 0:
            raise InputError("washout and eval_washout must be >= 0")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"lr = {self.lr} must be a finite positive number")
        if not (math.isfinite(self.activity_floor) and self.activity_floor >= 0):
            raise InputError(f"activity_floor = {self.activity_floor} must be a finite number >= 0 (0: off)")
        check_swing_settings(self.swing_penalty, self.swing_limit)
        if self.mismatch_sigma_rel is not None or self.mismatch_sigma_offset is not None:
            from ..hardware.mismatch import check_sigmas

            check_sigmas(0.0 if self.mismatch_sigma_rel is None else self.mismatch_sigma_rel,
                         0.0 if self.mismatch_sigma_offset is None else self.mismatch_sigma_offset)
            if not self.mismatch_aware:
                raise InputError("--mismatch-sigma-rel / --mismatch-sigma-offset need --mismatch-aware")
        if not 1 <= self.mismatch_draws <= self.batch:
            raise InputError(f"mismatch_draws = {self.mismatch_draws} must be between 1 and the batch ({self.batch} windows): "
                             "each chip needs at least one window")
        if self.mismatch_draws > 1 and not self.mismatch_aware:
            raise InputError("--mismatch-draws needs --mismatch-aware (without it there is nothing to draw)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def cosine_lr(base: float, step: int, total: int) -> float:
    return 0.5 * base * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def _windows(task: TaskData, cfg: TrainConfig, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    rng = np.random.default_rng([cfg.seed, epoch])
    length = cfg.washout + cfg.window
    out = []
    for _ in range(cfg.batches_per_epoch):
        x, y = sample_windows(task.train.x, task.train.y, length, cfg.batch, rng)
        out.append((torch.from_numpy(x), torch.from_numpy(y)))
    return out


def train(
    net_cfg: NetworkConfig,
    task_cfg: TaskConfig,
    train_cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    make_figure: bool = True,
    stop_after_epoch: int | None = None,
    resume_epochs: int | None = None,
) -> dict[str, Any]:
    """Train, keep the best-on-validation checkpoint, evaluate it on the test split.

    Writes ``out_dir/{best,last}.safetensors``, ``metrics.json`` and ``prediction.png``;
    returns the metrics dict. ``stop_after_epoch`` ends the call early (after that epoch's
    checkpoints, before the final evaluation), as an interruption would; ``resume=True`` continues
    with the stored settings, except ``resume_epochs``: a new total budget (the cosine schedule is
    re-spread over it; said on stderr).
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    start_epoch, history, best_val, optimizer_state, state_dict = 0, [], math.inf, None, None
    if resume:
        if not (out / LAST).exists():
            raise InputError(f"--resume: {out / LAST} does not exist; nothing to resume (drop --resume)")
        if (out / METRICS).exists() and not force:
            raise OutputExistsError(f"{out / METRICS} exists: this run already finished (pass --force to redo the "
                                    f"evaluation, or --force --epochs E to extend it to E epochs)")
        previous = load_checkpoint(out / LAST)
        net_cfg = previous.network.config
        task_cfg = previous.task
        stored = dict(previous.training["train_config"])
        stored.setdefault("activity_floor", 0.0)  # runs from before the dead-neuron penalty trained without it
        train_cfg = TrainConfig(**stored)
        start_epoch = int(previous.training["epoch"]) + 1
        train_cfg = _resume_budget(train_cfg, start_epoch, resume_epochs, out / LAST)
        history = list(previous.training.get("history", []))
        best_val = float(previous.training.get("best_val_nrmse", math.inf))
        optimizer_state, state_dict = previous.optimizer_state, previous.network.state_dict()
    else:
        if train_cfg.init_from:  # before OUT is touched: a wrong path or neuron type leaves nothing behind
            net_cfg, task_cfg, state_dict = initial_network(train_cfg.init_from, net_cfg.neuron)
        prepare_output_dir(out, METRICS, force)
        if (out / LAST).exists() and not force:
            raise OutputExistsError(f"{out / LAST} exists (an unfinished run): pass --resume to continue it or --force to restart")
    net_cfg.validate()
    train_cfg.validate()
    swing_limit = resolved_swing_limit(train_cfg, net_cfg.neuron)
    check_training_memory(net_cfg, train_cfg, task_cfg.n_samples)  # refuse with the figure before allocating
    task = make_task(task_cfg)
    if cfg_window_too_long(task, train_cfg):
        raise InputError(
            f"windows of washout + window = {train_cfg.washout + train_cfg.window} samples do not fit in the "
            f"training split ({len(task.train)} samples); shorten --window/--washout or raise --n-samples"
        )
    torch.set_num_threads(train_cfg.threads)
    torch.manual_seed(train_cfg.seed)
    network = SpikingRegressor(net_cfg)
    if state_dict is not None:
        network.load_state_dict(state_dict)
    from .hardware_aware import HardwareModel

    hardware = HardwareModel.from_config(train_cfg, network)  # before any work: a missing table is an error
    nominal = None if hardware is None else hardware.nominal()
    optimizer = torch.optim.Adam(network.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    total_steps = train_cfg.epochs * train_cfg.batches_per_epoch
    wall_start = time.perf_counter()
    wall_before = sum(h.get("wall_s", 0.0) for h in history)
    bar = tqdm(total=total_steps, initial=start_epoch * train_cfg.batches_per_epoch, disable=not progress,
               desc=f"train {net_cfg.neuron} H={task_cfg.horizon}", unit="batch", leave=False)
    for epoch in range(start_epoch, train_cfg.epochs):
        epoch_start = time.perf_counter()
        network.train()
        losses = []
        for b, (x, y) in enumerate(_windows(task, train_cfg, epoch)):
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(train_cfg.lr, epoch * train_cfg.batches_per_epoch + b, total_steps)
            optimizer.zero_grad(set_to_none=True)
            chips = train_cfg.mismatch_draws  # > 1 only with --mismatch-aware (validated)
            batch_loss = 0.0
            for k, (xk, yk) in enumerate(zip(x.tensor_split(chips, dim=1), y.tensor_split(chips, dim=1))):
                deviation = None if hardware is None else hardware.draw(network, epoch, b, k)
                loss = _batch_loss(network, net_cfg, train_cfg, xk, yk, deviation, swing_limit) * (xk.shape[1] / x.shape[1])
                if not torch.isfinite(loss):
                    break
                loss.backward()  # per chip: memory of one chip's graph
                batch_loss += loss.item()
            if not torch.isfinite(loss):
                optimizer.zero_grad(set_to_none=True)
                losses.append(float("nan"))
                bar.update(1)
                continue  # skip a diverged batch rather than poison the weights
            if train_cfg.clip > 0:
                torch.nn.utils.clip_grad_norm_(network.parameters(), train_cfg.clip)
            optimizer.step()
            losses.append(batch_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", best_val=f"{best_val:.4f}")
        val = _safe_val(network, task, train_cfg, nominal)
        record = {"epoch": epoch, "train_mse": float(np.nanmean(losses)) if losses else float("nan"),
                  "val_nrmse": val, "wall_s": time.perf_counter() - epoch_start}
        history.append(record)
        training = {"epoch": epoch, "history": history, "train_config": train_cfg.to_dict()}
        if val < best_val:
            best_val = val
            training["best_val_nrmse"] = best_val
            save_checkpoint(out / BEST, network, net_cfg, task_cfg, training={**training, "best_epoch": epoch})
        training["best_val_nrmse"] = best_val
        save_checkpoint(out / LAST, network, net_cfg, task_cfg, training=training, optimizer=optimizer)
        if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch + 1 < train_cfg.epochs:
            bar.close()
            return {"stopped_after_epoch": epoch, "best_val_nrmse": best_val}
    bar.close()
    if not (out / BEST).exists():
        raise InputError("training diverged: no epoch produced a finite validation NRMSE; lower --lr or change --dt")
    best = load_checkpoint(out / BEST)
    wall = wall_before + (time.perf_counter() - wall_start)
    fidelity = _circuit_fidelity(best.network, task, train_cfg)
    if net_cfg.neuron == "mtc":
        fidelity["membrane_swing"] = swing_report(best.network, task, swing_limit, train_cfg.eval_washout)
    test = evaluate_split(best.network, task, "test", train_cfg.eval_washout, keep_output=False, deviation=nominal)
    val_eval = evaluate_split(best.network, task, "val", train_cfg.eval_washout, deviation=nominal)
    if nominal is not None:
        fidelity["test_nrmse_ideal_model"] = evaluate_split(best.network, task, "test", train_cfg.eval_washout).metrics["test_nrmse"]
    if hardware is not None:
        fidelity["hardware_model"] = hardware.describe()
    metrics = {
        "neuron": net_cfg.neuron,
        "horizon": task_cfg.horizon,
        "hidden": list(net_cfg.hidden),
        "n_parameters": sum(p.numel() for p in best.network.parameters()),
        "best_epoch": best.training.get("best_epoch"),
        "test_nrmse": test.metrics["test_nrmse"],
        "val_nrmse": val_eval.metrics["val_nrmse"],
        "test_rmse": test.metrics["test_rmse"],
        **{k: v for k, v in test.metrics.items() if k not in ("test_nrmse", "test_rmse")},
        "train_wall_s": wall,
        **fidelity,
        "definitions": {**METRIC_DEFINITIONS, **FIDELITY_DEFINITIONS},
        "units": {"nrmse": "dimensionless", "spike_rate": "1/(neuron*step)", "duty_cycle": "fraction",
                  "synops_per_step": f"{'MAC' if net_cfg.neuron == 'mtc' else 'AC'}/step",
                  "train_wall_s": "s", "dt": "t_u", "sample_period": "t_u"},
        "dt": net_cfg.dt,
        "substeps": net_cfg.substeps,
        "sample_period": net_cfg.sample_period,
        "network_config": net_cfg.to_dict(),
        "task_config": task_cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "history": history,
    }
    save_checkpoint(out / BEST, best.network, net_cfg, task_cfg, metrics=_scalars(metrics), training=best.training)
    if make_figure:
        from ..plotting.training import plot_prediction

        plot_prediction(test, task, out / "prediction.png", title=f"{net_cfg.neuron.upper()} H={task_cfg.horizon}: "
                        f"test NRMSE {metrics['test_nrmse']:.3f}", history=history)
        if metrics.get("census"):
            from ..plotting.census import plot_census

            plot_census(metrics["census"], out / "census.png", title=f"regime census, {net_cfg.neuron.upper()} "
                        f"hidden {list(net_cfg.hidden)} H={task_cfg.horizon}")
    write_json(out / METRICS, metrics)
    return metrics


def _batch_loss(network: SpikingRegressor, net_cfg: NetworkConfig, cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor,
                deviation: Any, swing_limit: float | None) -> torch.Tensor:
    """One (sub-)batch's training loss: the scored MSE plus the dead-neuron and membrane-swing penalties."""
    revive = cfg.activity_floor > 0 and network.neuron == "mtc"
    output = network(x, record_membrane=revive or swing_limit is not None, deviation=deviation)
    loss = torch.mean((output.prediction[cfg.washout:] - y[cfg.washout:]) ** 2)
    steps = cfg.washout * net_cfg.substeps
    if revive:
        loss = loss + cfg.activity_floor * dead_neuron_penalty(output, net_cfg, steps)
    if swing_limit is not None:
        rests = [layer.u_rest for layer in network.layers]
        loss = loss + cfg.swing_penalty * membrane_swing_penalty(output.hidden_u, rests, swing_limit, steps)
    return loss


def dead_neuron_penalty(output: Any, config: NetworkConfig, start_step: int = 0) -> torch.Tensor:
    """Mean over hidden MTC neurons of ``relu(U_th - max U_m)^2``, the peak taken over the batch and the
    steps from ``start_step`` on.

    A neuron whose membrane never reaches U_th outputs s = 0 with zero gradient: nothing upstream of it
    ever learns again (a dead unit). The membrane still carries a gradient, so this term pulls a dead
    neuron's peak back to threshold and is exactly 0 for every neuron that spikes at least once.
    """
    from ..neuron.spikes import spike_level

    terms = []
    for u in output.hidden_u:
        peak = u[start_step:].amax(dim=(0, 1))
        terms.append(torch.relu(spike_level(config) - peak).pow(2))
    return torch.cat(terms).mean()


def _resume_budget(cfg: TrainConfig, done: int, epochs: int | None, path: Path) -> TrainConfig:
    """Honour a new total budget on --resume (or keep the stored one) and say what is resumed, on stderr."""
    import sys

    stored = cfg.epochs
    if epochs is not None and epochs != stored:
        if epochs < done:
            raise InputError(f"--resume --epochs {epochs}: {path} already holds {done} trained epoch(s) of {stored}; "
                             f"give --epochs >= {done} (or drop --epochs to finish the stored {stored})")
        cfg = dataclasses.replace(cfg, epochs=epochs)
        cfg.validate()
        step = done * cfg.batches_per_epoch
        was, now = cosine_lr(cfg.lr, step, stored * cfg.batches_per_epoch), cosine_lr(cfg.lr, step, epochs * cfg.batches_per_epoch)
        note = (f"; budget changed from {stored} to {epochs} epochs: the cosine learning-rate schedule is re-spread "
                f"over {epochs} epochs (lr at this step {was:.3g} -> {now:.3g})")
    else:
        note = ""
    what = f"epoch {done + 1} of {cfg.epochs}" if done < cfg.epochs else f"all {cfg.epochs} epochs done, evaluating"
    print(f"resuming {path}: {what} ({done} done; stored settings kept, only --epochs can change){note}",
          file=sys.stderr)
    return cfg


FIDELITY_DEFINITIONS: dict[str, str] = {
    "test_nrmse_ideal_model": "--hardware runs: test NRMSE of the ideal model (no calibration applied); test_nrmse and "
                              "val_nrmse are then the target's calibrated cell model's",
    "hardware_model": "what the forward pass trained against: the calibration table and the mismatch statistics "
                      "(training/hardware_aware.py)",
    "discretisation_gap": "output NRMSE of the model at its dt against the same weights at dt/8 with the reference "
                          "integrator, on the validation split (mtc_analog.training.fidelity_gap); <= 0.02 wanted",
    "pruned_devices": "weights/biases/gains whose mapped current is below the hardware target's floor i_min, "
                      "set to 0 in the model before evaluation (listed under 'pruning')",
    "census": "firing regime of each hidden neuron under a step protocol at its trained parameters "
              "(mtc_analog.training.census)",
    "membrane_swing": "on the test split: each hidden neuron's largest |U_m - U_rest| [V_s] (max and median over "
                      "neurons), how many exceed the limit, and the share of neuron-steps beyond it; the limit is "
                      "--swing-penalty's (training/swing.py), or sky130's linear range (3 V_s) when not penalised",
}


def _circuit_fidelity(network: SpikingRegressor, task: TaskData, cfg: TrainConfig) -> dict[str, Any]:
    """MTC only: prune unrealisable devices (in place), the discretisation gap, the regime census."""
    if network.config.neuron != "mtc":
        return {}
    from .census import census
    from .fidelity_gap import discretisation_gap

    result: dict[str, Any] = {}
    if cfg.hardware_target:
        from ..hardware import load_target
        from .realisable import prune_unrealisable

        pruning = prune_unrealisable(network, load_target(cfg.hardware_target))
        result["pruned_devices"] = pruning["n_pruned"]
        result["pruning"] = pruning
    gap = discretisation_gap(network, task)
    result["discretisation_gap"] = gap["gap"]
    result["discretisation_gap_detail"] = gap
    if cfg.census:
        found = census(network, task)
        result["census_counts"] = found["counts"]
        result["census"] = {k: v for k, v in found.items() if k != "neurons"}
    return result


def cfg_window_too_long(task: TaskData, cfg: TrainConfig) -> bool:
    return cfg.washout + cfg.window > len(task.train)


def initial_network(path: str | Path, neuron: str) -> tuple[NetworkConfig, TaskConfig, dict[str, torch.Tensor]]:
    """``train_cfg.init_from``: the network config, task and parameters of the checkpoint at ``path`` (its
    architecture and task replace the given ones: the parameters only fit those)."""
    source = load_checkpoint(path)  # CheckpointError (one line) if missing or not a checkpoint
    if source.network.config.neuron != neuron:
        raise InputError(f"--init-from {path}: a {source.network.config.neuron} network, not {neuron}; "
                         f"pass --neuron {source.network.config.neuron}")
    return source.network.config, source.task, source.network.state_dict()


def _safe_val(network: SpikingRegressor, task: TaskData, cfg: TrainConfig, deviation: Any = None) -> float:
    try:
        value = evaluate_split(network, task, "val", cfg.eval_washout, deviation=deviation).metrics["val_nrmse"]
    except InputError:  # NaN predictions
        return math.inf
    return value if math.isfinite(value) else math.inf


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or v is None}
