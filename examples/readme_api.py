"""The README's Python API snippet, runnable from any directory.

    .venv/bin/python examples/readme_api.py                       # the demo's checkpoint -> runs/my_export
    python /path/to/examples/readme_api.py --checkpoint CK --out DIR

Relative defaults are resolved against the repository, not the current directory: the checkpoint
left by the main job (``bash scripts/main.sh`` or ``mtc-analog demo --out runs/demo``) and an export
folder beside it. Loads the trained network, maps it onto the behavioural hardware target (every value
range-checked; HardwareRangeError lists all that break), and exports a netlist that plain
``ngspice -b`` runs, driven by the first ``--samples`` test samples.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO / "runs" / "demo" / "train" / "best.safetensors"
DEFAULT_OUT = REPO / "runs" / "my_export"


def export_from_checkpoint(checkpoint: Path, out: Path, samples: int = 500, target_name: str = "behavioral"):
    """The README snippet itself: checkpoint -> mapped circuit -> netlist + mapping.json in ``out``."""
    from mtc_analog.hardware import enforce_ranges, load_target, map_network
    from mtc_analog.spice.export import export_network
    from mtc_analog.tasks.mackey_glass import make_task
    from mtc_analog.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)  # safetensors + JSON, no pickle
    target = load_target(target_name)  # or a YAML file: units, rails, limits
    circuit, changes = enforce_ranges(map_network(ckpt.network.to_spec(), target), target)
    x = make_task(ckpt.task).test.x[:samples]  # test samples, z-scored
    return export_network(circuit, x, out, force=True)  # network.cir (plain `ngspice -b`) + mapping.json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help=f"trained checkpoint (default: {DEFAULT_CHECKPOINT.relative_to(REPO)} in the repository)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"export folder (default: {DEFAULT_OUT.relative_to(REPO)} in the repository)")
    parser.add_argument("--samples", type=int, default=500, help="test samples driving the circuit (default 500)")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        print(f"readme_api: {args.checkpoint} does not exist: run `bash scripts/main.sh` (or `mtc-analog demo "
              f"--out runs/demo`) in {REPO} first, or pass --checkpoint", file=sys.stderr)
        return 2
    result = export_from_checkpoint(args.checkpoint, args.out, args.samples)
    print(f"wrote {result.netlist_path} and {result.mapping_path}; run it: ngspice -b {result.netlist_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
