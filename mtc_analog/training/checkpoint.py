"""Checkpoints: safetensors tensors + JSON metadata. Never pickle, never ``torch.load``.

A checkpoint holds everything a later step needs and nothing executable:

- tensors ``model.<name>``: the network's ``state_dict`` (parameters and buffers);
- tensors ``optimizer.<param index>.<key>``: Adam state, for ``--resume`` (optional);
- metadata (str -> JSON str): ``format`` = ``mtc_analog.checkpoint``, ``version``,
  ``network_config`` (:class:`~mtc_analog.network.NetworkConfig`), ``task_config``
  (:class:`~mtc_analog.tasks.mackey_glass.TaskConfig`), ``units``, ``metrics`` (or null),
  ``training`` (epoch, best validation score, history, training options),
  ``optimizer_groups`` (Adam hyper-parameters, if the optimizer is saved).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, InputError
from ..io import atomic_path
from ..network import NetworkConfig, SpikingRegressor
from ..tasks.mackey_glass import TaskConfig

FORMAT = "mtc_analog.checkpoint"
VERSION = 1

#: Units of the numbers stored in a checkpoint (model units, docs/reference.md §8).
UNITS: dict[str, str] = {
    "time": "t_u (MTC: tau_m = 1 t_u by default); dt, tau_lp, tau_* are in t_u",
    "voltage": "V_s = 2 U_T / kappa (MTC membrane and offsets d_*)",
    "current": "I_u (projection weights map z-scored inputs or s in [0, 1] to input currents)",
    "input": "z-scored Mackey-Glass x (training-split mean and std)",
    "baseline_time": "LIF/AdLIF time constants are in neuron steps",
}


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``config`` is the network config as a dict (JSON-able)."""

    network: SpikingRegressor
    config: dict[str, Any]
    task: TaskConfig
    metrics: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None  #: torch optimizer state_dict, if saved


def save_checkpoint(
    path: str | Path,
    network: SpikingRegressor,
    config: NetworkConfig | dict[str, Any] | None,
    task: TaskConfig,
    metrics: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write a checkpoint atomically (a crash leaves the previous file intact)."""
    from safetensors.torch import save_file

    cfg = network.config if config is None else config
    cfg_dict = cfg.to_dict() if isinstance(cfg, NetworkConfig) else dict(cfg)
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in network.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "version": str(VERSION),
        "network_config": json.dumps(cfg_dict),
        "task_config": json.dumps(task.to_dict()),
        "units": json.dumps(UNITS),
        "metrics": json.dumps(metrics),
        "training": json.dumps(training or {}),
    }
    if optimizer is not None:
        state = optimizer.state_dict()
        for index, entries in state["state"].items():
            for key, value in entries.items():
                tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
                tensors[f"optimizer.{index}.{key}"] = tensor.detach().cpu().contiguous().clone()
        metadata["optimizer_groups"] = json.dumps(state["param_groups"])
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (train one with `mtc-analog train`)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error types for corrupt headers/data
        raise CheckpointError(
            f"checkpoint {path} is not a readable safetensors file (truncated or foreign?): {exc}"
        ) from None
    return tensors, metadata


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load and rebuild a checkpoint; raise :class:`CheckpointError` on anything inconsistent."""
    path = Path(path)
    tensors, metadata = _read(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not an mtc_analog checkpoint (metadata format = "
            f"{metadata.get('format')!r}, expected {FORMAT!r})"
        )
    if metadata.get("version") != str(VERSION):
        raise CheckpointError(f"{path}: checkpoint version {metadata.get('version')!r} is not supported (expected {VERSION})")
    try:
        cfg_dict = json.loads(metadata["network_config"])
        task_dict = json.loads(metadata["task_config"])
        metrics = json.loads(metadata.get("metrics", "null"))
        training = json.loads(metadata.get("training", "{}"))
        groups = json.loads(metadata["optimizer_groups"]) if "optimizer_groups" in metadata else None
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is incomplete or corrupt ({exc})") from None
    try:
        config = NetworkConfig.from_dict(cfg_dict)
        task = TaskConfig.from_dict(task_dict)
        network = SpikingRegressor(config)
    except (InputError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: stored configuration is invalid: {exc}") from None
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        network.load_state_dict(model_state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: tensors do not match the stored network config: {exc}") from None
    for name, tensor in model_state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: parameter {name!r} holds NaN/Inf values; the checkpoint is unusable")
    optimizer_state = None
    if groups is not None:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, tensor in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = tensor
        optimizer_state = {"state": state, "param_groups": groups}
    network.eval()
    return Checkpoint(network, cfg_dict, task, metrics, training, optimizer_state)
