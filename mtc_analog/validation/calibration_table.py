"""Measure a circuit target's calibration table (what ``train --hardware TARGET`` trains against).

    python -m mtc_analog.validation.calibration_table runs/demo/train/best.safetensors runs/mtc64/best.safetensors --target sky130

Every cell of each checkpoint's network, mapped onto ``TARGET`` as ``validate`` maps it, is characterised in
ngspice (the target's ``characterise_network`` hook, :mod:`mtc_analog.spice.characterise`); the measured
fits are folded into a calibrated spec (:func:`~mtc_analog.hardware.calibration.calibrate_network`) and the
deviation calibrated / nominal is pooled per quantity into a :class:`~mtc_analog.hardware.deviation.
CalibrationTable` (median and interquartile range over every neuron and device), written to
``mtc_analog/hardware/targets/<target>.calibration.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from ..errors import MTCAnalogError


def characterised_pair(checkpoint: str, target_name: str, samples: int = 70, washout: int = 20,
                       workers: int | None = None):
    """``(nominal spec as built, calibrated spec)`` of ``checkpoint``'s network on ``target_name``."""
    from ..hardware import load_target, unmap_network
    from ..neuron.spikes import spike_level
    from ..tasks.mackey_glass import make_task
    from ..training.checkpoint import load_checkpoint
    from .calibrated import characterisation_hook, characterised_spec
    from .runs import ValidationSettings, map_for_validation, model_traces, scoring_stream

    loaded = load_checkpoint(checkpoint)
    network, task = loaded.network, make_task(loaded.task)
    settings = ValidationSettings(target=load_target(target_name.partition(":")[0]), circuit_target=target_name,
                                  circuit_filter="linear", samples=samples, washout=washout, workers=workers,
                                  clip=True)  # as the demo's sky130 stage: values below the floor are dropped
    hook = characterisation_hook(settings)
    if hook is None:
        raise MTCAnalogError(f"circuit target {target_name!r} cannot be characterised (ideal cells: nothing to calibrate)")
    circuit, _ = map_for_validation(network, settings)
    x, _, _ = scoring_stream(task, samples, washout)
    lowpass = model_traces(network, x, spike_level(network.config)).lowpass
    return unmap_network(circuit), characterised_spec(hook, circuit, settings, x, lowpass)


def measure(checkpoints: list[str], target_name: str, workers: int | None = None):
    """The :class:`CalibrationTable` of ``target_name`` pooled over ``checkpoints``' networks."""
    from ..hardware.deviation import table_from

    pairs = [characterised_pair(path, target_name, workers=workers) for path in checkpoints]
    sizes = "+".join(str(sum(layer.size for layer in nominal.layers)) for nominal, _ in pairs)
    stamp = datetime.date.today().isoformat()
    source = (f"{target_name}: every cell of {len(pairs)} network(s) ({sizes} neurons) characterised in ngspice "
              f"(mtc_analog.validation.calibration_table, {stamp}); median over cells")
    return table_from(pairs, target_name.partition(":")[0], source)


def main(argv: list[str] | None = None) -> int:
    from ..hardware.deviation import calibration_path

    parser = argparse.ArgumentParser(prog="python -m mtc_analog.validation.calibration_table", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="trained MTC checkpoints whose networks are characterised")
    parser.add_argument("--target", default="sky130", help="circuit target with a characterisation hook (default sky130)")
    parser.add_argument("--out", default=None, help="where to write the table (default: the package's targets folder)")
    parser.add_argument("--workers", type=int, default=None, help="parallel characterisation workers")
    args = parser.parse_args(argv)
    try:
        table = measure(args.checkpoints, args.target, workers=args.workers)
        out = Path(args.out) if args.out else calibration_path(args.target)
        out.write_text(json.dumps(table.to_dict(), indent=1, sort_keys=True) + "\n")
    except (MTCAnalogError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, value in table.values.items():
        print(f"{name:16s} {value:+.4f}  (IQR {table.spread[name]:.4f})")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
