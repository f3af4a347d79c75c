"""Where the subcircuit library (``netlists/``) lives, and reading its files for inlining."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SimulatorMissingError

#: The repository's ``netlists/`` folder; override with ``MTC_ANALOG_NETLISTS`` (e.g. for a wheel install).
NETLIST_DIR = Path(os.environ.get("MTC_ANALOG_NETLISTS", Path(__file__).resolve().parents[2] / "netlists"))


def read(path: Path) -> str:
    """Text of one library file (to inline into a netlist, so the netlist is self-contained)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError as exc:
        raise SimulatorMissingError(
            f"subcircuit library file {path} not found: run from a checkout of mtc_analog or set MTC_ANALOG_NETLISTS"
        ) from exc
    return text if text.endswith("\n") else text + "\n"
