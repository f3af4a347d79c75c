"""``mtc-analog train``: train one spiking regressor on Mackey-Glass and evaluate it."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from ..errors import InputError


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Network, task and budget options shared by ``train`` and ``compare``."""
    from ..network import NetworkConfig
    from ..neuron.equations import FILTERS
    from ..neuron.step import METHODS, TRANSDUCTIONS
    from ..training.train import TrainConfig

    n, t = NetworkConfig(), TrainConfig()
    g = parser.add_argument_group("network")
    g.add_argument("--hidden", default="64", help="hidden layer size(s), comma separated (default 64)")
    g.add_argument("--dt", type=float, default=None,
                   help=f"neuron step [t_u] (default: MTC {n.dt}, LIF/AdLIF 0.5; sample period 1 t_u)")
    g.add_argument("--substeps", type=int, default=None,
                   help=f"neuron steps per input sample (default: MTC {n.substeps}, LIF/AdLIF 2)")
    g.add_argument("--tau-lp", type=float, default=n.tau_lp, help=f"low-pass stage time constant [t_u] (default {n.tau_lp})")
    g.add_argument("--input-scale", type=float, default=None,
                   help="scale of the initial projection weights (x PyTorch's default init; default: per neuron type)")
    g.add_argument("--bias-init", type=float, default=None,
                   help="constant initial bias of the hidden projections [I_u for MTC] (default: per neuron type)")
    g.add_argument("--method", choices=METHODS, default=n.method,
                   help=f"MTC integrator (default {n.method}; euler/exact need dt <= 0.5 tau_m and leave a large "
                        "discretisation gap)")
    g.add_argument("--filter", choices=FILTERS, default=n.filter, help="MTC filter kind")
    g.add_argument("--transduction", choices=TRANSDUCTIONS, default=n.transduction,
                   help="MTC output s: clip((U-U_th)/(U_sat-U_th), 0, 1) or sigmoid(2(U-U_c))")
    g.add_argument("--u-th", type=float, default=n.u_th, help="MTC transduction threshold U_th [V_s]")
    g.add_argument("--u-sat", type=float, default=n.u_sat, help="MTC transduction saturation U_sat [V_s]")
    g.add_argument("--mtc-init", default=None, help='MTC initial parameters as JSON, e.g. \'{"tau_s": 20, "a_us": 1}\'')
    g.add_argument("--train-timescales", action=argparse.BooleanOptionalAction, default=n.train_timescales,
                   help=f"train tau_s and tau_us (MTC; default {n.train_timescales})")
    g.add_argument("--init-jitter", type=float, default=n.init_jitter, help="std of the per-neuron jitter of MTC gains/offsets [model units]")
    g.add_argument("--timescale-spread", type=float, default=n.timescale_spread,
                   help=f"MTC: per-neuron tau_s/tau_us log-spread ratio max/min (default {n.timescale_spread:g}; 1: all alike)")
    g.add_argument("--backend", default=n.backend, help="MTC layer rollout: auto | reference | fused (compiled kernel) (default auto)")
    k = parser.add_argument_group("task")
    k.add_argument("--n-samples", type=int, default=4000, help="Mackey-Glass series length [samples]")
    b = parser.add_argument_group("budget")
    b.add_argument("--epochs", type=int, default=None,
                   help=f"training epochs (default {t.epochs}); with train --resume: the new total budget")
    b.add_argument("--batches-per-epoch", type=int, default=t.batches_per_epoch, help="optimizer steps per epoch")
    b.add_argument("--batch", type=int, default=t.batch, help="windows per batch (default: %(default)s)")
    b.add_argument("--window", type=int, default=t.window, help="scored samples per BPTT window")
    b.add_argument("--washout", type=int, default=t.washout, help="unscored warm-up samples per window")
    b.add_argument("--lr", type=float, default=t.lr, help="Adam learning rate (cosine-annealed to 0)")
    b.add_argument("--clip", type=float, default=t.clip, help="gradient-norm clip (<= 0: off)")
    b.add_argument("--activity-floor", type=float, default=t.activity_floor,
                   help=f"MTC: weight of the dead-neuron penalty, mean relu(U_th - peak U_m)^2 over neurons whose "
                        f"membrane never reaches threshold in a batch (0: off; default {t.activity_floor:g})")
    b.add_argument("--threads", type=int, default=t.threads, help="torch threads per run")
    h = parser.add_argument_group("hardware-aware training (MTC)")
    h.add_argument("--hardware", default=t.hardware, metavar="TARGET",
                   help="train on TARGET's calibrated cell model (its calibration table, e.g. sky130); recorded in the "
                        "checkpoint; also the target the trained network is pruned for")
    h.add_argument("--target", default=None, metavar="TARGET",
                   help="the circuit target the network is built for, trained on the ideal model (for circuits "
                        "compensated at design time: validate/montecarlo --compensate): its realisable ranges, the "
                        "statistics of --mismatch-aware and the limit of --swing-penalty (default: --hardware's, else "
                        "behavioral)")
    h.add_argument("--mismatch-aware", action="store_true",
                   help="draw a fresh device-mismatch instance per batch (the Monte Carlo's statistics and draw, of "
                        "--hardware or --target)")
    h.add_argument("--mismatch-draws", type=int, default=t.mismatch_draws, metavar="K",
                   help="with --mismatch-aware: chips per batch, the batch's windows split into K groups each through "
                        "its own draw (the gradient averages over K chips on the same windows; smaller sub-batches cost time; default 1)")
    h.add_argument("--mismatch-sigma-rel", type=float, default=None,
                   help="override the relative spread of currents and capacitors [1] (<= 1)")
    h.add_argument("--mismatch-sigma-offset", type=float, default=None,
                   help="override the OTA input-offset spread [V] (<= 0.1)")
    h.add_argument("--swing-penalty", type=float, default=t.swing_penalty, metavar="W",
                   help="keep every membrane within --swing-limit of rest, where a transistor target's leak and linear "
                        "filters are still linear: weight of mean relu(|U_m - U_rest| - limit)^2 (default 0: off)")
    h.add_argument("--swing-limit", type=float, default=None, metavar="V_S",
                   help="the excursion the swing penalty allows [V_s] (default: the --hardware target's linear_range; "
                        "sky130: 3)")


def parse_hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise InputError(f"--hidden {text!r}: expected sizes like 64 or 64,64") from None
    if not sizes or min(sizes) < 1:
        raise InputError(f"--hidden {text!r}: sizes must be >= 1")
    return sizes


def configs_from_args(args: argparse.Namespace, neuron: str, horizon: int, seed: int) -> tuple[Any, Any, Any]:
    from ..network import DEFAULT_MTC_INIT, NEURON_TYPES, NetworkConfig
    from ..tasks.mackey_glass import TaskConfig
    from ..training.swing import resolved_swing_limit
    from ..training.train import TrainConfig

    if neuron not in NEURON_TYPES:
        raise InputError(f"unknown neuron type {neuron!r}: expected one of {', '.join(NEURON_TYPES)}")
    mtc_init = dict(DEFAULT_MTC_INIT)
    if args.mtc_init:
        try:
            mtc_init.update(json.loads(args.mtc_init))
        except (json.JSONDecodeError, TypeError) as exc:
            raise InputError(f"--mtc-init is not a JSON object: {exc}") from None
    net = NetworkConfig(
        neuron=neuron, hidden=parse_hidden(args.hidden), tau_lp=args.tau_lp,
        method=args.method, filter=args.filter, transduction=args.transduction, u_th=args.u_th, u_sat=args.u_sat,
        mtc_init=mtc_init, train_timescales=args.train_timescales, init_jitter=args.init_jitter,
        timescale_spread=args.timescale_spread,
        backend=args.backend, seed=seed,
        **default_init(neuron, args.input_scale, args.bias_init, args.dt, args.substeps),
    )
    task = TaskConfig(horizon=horizon, n_samples=args.n_samples)
    epochs = TrainConfig.epochs if args.epochs is None else args.epochs  # None: not given (see --resume)
    target = getattr(args, "target", None)
    if args.hardware and target and target != args.hardware:
        raise InputError(f"--hardware {args.hardware} trains for {args.hardware}'s circuit: --target {target} names "
                         "another; drop --target or make it the same")
    built_for = args.hardware or target
    if built_for:
        from ..hardware import load_target

        load_target(built_for)  # an unknown target: one line listing the known ones, before OUT is touched
    train_cfg = TrainConfig(epochs=epochs, batches_per_epoch=args.batches_per_epoch, batch=args.batch,
                            window=args.window, washout=args.washout, lr=args.lr, clip=args.clip,
                            activity_floor=args.activity_floor, seed=seed, threads=args.threads,
                            hardware=args.hardware, mismatch_aware=args.mismatch_aware, mismatch_draws=args.mismatch_draws,
                            mismatch_sigma_rel=args.mismatch_sigma_rel, mismatch_sigma_offset=args.mismatch_sigma_offset,
                            swing_penalty=args.swing_penalty, swing_limit=args.swing_limit,
                            **({"hardware_target": built_for} if built_for else {}))
    net.validate()
    task.validate()
    train_cfg.validate()
    resolved_swing_limit(train_cfg, neuron)  # a penalty without a limit: refused before OUT is touched
    return net, task, train_cfg


def default_init(neuron: str, input_scale: float | None, bias_init: float | None,
                 dt: float | None = None, substeps: int | None = None) -> dict[str, Any]:
    """Per-neuron-type initial projection scale, bias and step (explicit options win)."""
    from ..network import DEFAULT_INIT_BY_NEURON

    base = dict(DEFAULT_INIT_BY_NEURON[neuron])
    for key, value in (("input_scale", input_scale), ("bias_init", bias_init), ("dt", dt), ("substeps", substeps)):
        if value is not None:
            base[key] = value
    return base


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a spiking regressor on Mackey-Glass",
                              description="Train MTC / LIF / AdLIF networks on Mackey-Glass prediction; writes "
                                          "best.safetensors, last.safetensors, metrics.json, prediction.png.")
    p.add_argument("--neuron", required=True, help="neuron type: mtc | lif | adlif")
    p.add_argument("--horizon", type=int, default=84, help="prediction horizon H [samples] (default 84)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and of the window sampling")
    p.add_argument("--out", required=True, help="output directory (locked while the run writes it)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors with its stored settings "
                                                           "(only --epochs may set a new total)")
    p.add_argument("--init-from", metavar="CHECKPOINT", default=None,
                   help="start from this trained network (its architecture, parameters and task; the network and task "
                        "options are not used) with a fresh optimizer, e.g. to fine-tune it --mismatch-aware")
    p.add_argument("--force", action="store_true", help="overwrite earlier results in OUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.train import train

    if args.resume and args.init_from:
        raise InputError("--resume continues OUT's own run; --init-from starts a new one from another network: pass one")
    if args.resume:
        from ..network import NetworkConfig
        from ..tasks.mackey_glass import TaskConfig
        from ..training.train import TrainConfig

        net, task, train_cfg = NetworkConfig(), TaskConfig(), TrainConfig()  # replaced by the stored ones
    else:
        net, task, train_cfg = configs_from_args(args, args.neuron, args.horizon, args.seed)
        if args.init_from:
            train_cfg = dataclasses.replace(train_cfg, init_from=str(args.init_from))
    metrics = train(net, task, train_cfg, args.out, resume=args.resume, force=args.force,
                    progress=not args.no_progress, resume_epochs=args.epochs if args.resume else None)
    print(f"{metrics['neuron']} H={metrics['horizon']}: test NRMSE {metrics['test_nrmse']:.4f}  "
          f"val NRMSE {metrics['val_nrmse']:.4f}  spike rate {metrics.get('spike_rate', float('nan')):.4g}  "
          f"duty cycle {metrics.get('duty_cycle', float('nan')):.4g}  synops/step {metrics.get('synops_per_step', float('nan')):.4g} "
          f"({metrics.get('synop_kind', '?')})  wall {metrics['train_wall_s']:.1f} s  -> {args.out}/metrics.json")
    if args.init_from:
        print(f"started from {args.init_from} (its network and task; the network and task options were not used)")
    if metrics.get("hardware_model"):
        hw = metrics["hardware_model"]
        parts = []
        if hw.get("calibration"):
            parts.append(f"scored on {hw['calibration']['target']}'s calibrated cell model (ideal model: test NRMSE "
                         f"{metrics['test_nrmse_ideal_model']:.4f})")
        if hw.get("mismatch"):
            parts.append(f"mismatch drawn per batch: sigma_rel {hw['mismatch']['sigma_rel']:.3g}, sigma_offset "
                         f"{1e3 * hw['mismatch']['sigma_offset']:.2f} mV")
        print("hardware-aware: " + "; ".join(parts))
    if metrics.get("discretisation_gap") is not None:
        from ..training.census import census_line
        from ..training.fidelity_gap import GAP_TOLERANCE

        gap = metrics["discretisation_gap"]
        print(f"circuit fidelity: discretisation gap {gap:.4f} ({'within' if gap <= GAP_TOLERANCE else 'ABOVE'} "
              f"{GAP_TOLERANCE}); {metrics.get('pruned_devices', 0)} device(s) below the target's current floor "
              f"pruned; census: {census_line(metrics.get('census_counts') or {})}")
    swing = metrics.get("membrane_swing")
    if swing:
        print(f"membrane swing on the test split: largest {swing['max_excursion']:.2f} V_s from rest, "
              f"{100 * swing['share_beyond']:.1f} % of neuron-steps beyond {swing['limit']:g} V_s"
              + ("" if swing["limit_source"] == "swing penalty" else
                 " (sky130's linear range; --swing-penalty 1 keeps membranes inside it)"))
    return 0
