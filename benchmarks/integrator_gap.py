"""Discretisation gap of one trained checkpoint under several integrators and low-pass kinds.

    python benchmarks/integrator_gap.py runs/x/best.safetensors

Streams 400 validation-region samples (100 warm-up) through the same weights at each (method, dt,
low-pass) and prints the output NRMSE against RK4 at dt = 1/64 with the exact low-pass. The
reference runs through the fused kernel; expect a few minutes on a shared machine.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from mtc_analog.network import SpikingRegressor
from mtc_analog.tasks.mackey_glass import make_task
from mtc_analog.training.checkpoint import load_checkpoint
from mtc_analog.training.fidelity_gap import _stream_prediction, gap_from_predictions

CASES = [("euler", 0.5, "euler"), ("rk4", 0.5, "exact"), ("rk4", 0.25, "euler"), ("heun", 0.25, "exact"),
         ("heun", 0.125, "exact"), ("rk4", 0.25, "exact"), ("rk4", 0.125, "exact")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.checkpoint)
    task = make_task(ckpt.task)
    start = task.split("val").start - 100
    x = task.x[start : start + 400]
    base = ckpt.network

    def variant(dt: float, method: str, lowpass: str) -> SpikingRegressor:
        c = base.config
        net = SpikingRegressor(dataclasses.replace(c, dt=dt, substeps=int(round(c.sample_period / dt)), method=method,
                                                   lowpass=lowpass))
        net.load_state_dict(base.state_dict())
        return net.eval()

    ref = _stream_prediction(variant(1 / 64, "rk4", "exact"), x)[100:]
    for method, dt, lowpass in CASES:
        gap = gap_from_predictions(_stream_prediction(variant(dt, method, lowpass), x)[100:], ref)
        print(f"{method:<5} dt {dt:<6g} low-pass {lowpass:<5}: gap {gap:.4f}", flush=True)


if __name__ == "__main__":
    main()
