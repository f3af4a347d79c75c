"""Safe text for SPICE netlists: numbers, identifiers and comments.

Nothing user-controlled reaches a netlist without passing through this module. The rules are
deliberately strict (reject, never "fix"): a netlist line is code for ngspice, and a newline or a
``.control`` inside a name or a value would run commands.

- Numbers: finite real numbers only (no NaN/Inf, no bool), magnitude at most :data:`MAX_MAGNITUDE`,
  optionally non-negative / strictly positive / inside [lo, hi]; written with 12 significant digits
  in plain exponent form (``1.35e-11``), which every SPICE reads identically (no unit suffixes:
  ``1m`` vs ``1M`` ambiguities cannot happen).
- Names (nodes, instances, parameters, files written by ``.control``): ``[A-Za-z_][A-Za-z0-9_]*``,
  at most :data:`MAX_NAME_LENGTH` characters.
- Comments: one line of printable ASCII (no control characters).
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

import numpy as np

from ..errors import NetlistValueError

#: Largest magnitude accepted for any number written into a netlist (in its SI unit).
MAX_MAGNITUDE = 1e15
#: Longest identifier accepted (ngspice itself is generous; long names usually mean a bug).
MAX_NAME_LENGTH = 64

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FILENAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z")
_COMMENT_RE = re.compile(r"[\x20-\x7e]*\Z")


def spice_number(
    value: Any,
    what: str = "value",
    unit: str = "",
    *,
    positive: bool = False,
    nonnegative: bool = False,
    lo: float | None = None,
    hi: float | None = None,
) -> str:
    """Format one real number for a netlist, or raise :class:`NetlistValueError`.

    ``what`` and ``unit`` only name the quantity in the error message (e.g. ``"layer 0 / neuron 3 /
    C_m"``, ``"F"``).
    """
    number = _as_real(value, what)
    suffix = f" {unit}" if unit else ""
    if not math.isfinite(number):
        raise NetlistValueError(f"{what} = {number!r}{suffix} is not a finite number; a netlist needs a real value")
    if abs(number) > MAX_MAGNITUDE:
        raise NetlistValueError(
            f"{what} = {number:g}{suffix} exceeds the netlist magnitude limit {MAX_MAGNITUDE:g}; check the mapping's units"
        )
    if positive and not number > 0:
        raise NetlistValueError(f"{what} = {number:g}{suffix} must be > 0")
    if nonnegative and number < 0:
        raise NetlistValueError(f"{what} = {number:g}{suffix} must be >= 0")
    if lo is not None and number < lo:
        raise NetlistValueError(f"{what} = {number:g}{suffix} is below its limit {lo:g}{suffix}")
    if hi is not None and number > hi:
        raise NetlistValueError(f"{what} = {number:g}{suffix} is above its limit {hi:g}{suffix}")
    if number == 0:
        return "0"
    return f"{number:.12g}"


def spice_numbers(values: Any, what: str = "values", unit: str = "", **limits: Any) -> np.ndarray:
    """Vectorised :func:`spice_number` for an array: returns an array of strings (same shape)."""
    array = np.asarray(values)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise NetlistValueError(f"{what}: expected real numbers, got an array of {array.dtype}")
    array = array.astype(np.float64)
    bad = ~np.isfinite(array) | (np.abs(array) > MAX_MAGNITUDE)
    if limits.get("positive"):
        bad |= ~(array > 0)
    if limits.get("nonnegative"):
        bad |= array < 0
    if limits.get("lo") is not None:
        bad |= array < limits["lo"]
    if limits.get("hi") is not None:
        bad |= array > limits["hi"]
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        spice_number(array[index], f"{what}[{', '.join(map(str, index))}]", unit, **limits)  # raises with the reason
    flat = [("0" if x == 0 else f"{x:.12g}") for x in array.ravel().tolist()]
    return np.asarray(flat, dtype=object).reshape(array.shape)


def spice_name(name: Any, what: str = "name") -> str:
    """Check an identifier (node, instance, parameter); return it unchanged or raise."""
    if not isinstance(name, str):
        raise NetlistValueError(f"{what} {name!r} is not a string")
    if len(name) > MAX_NAME_LENGTH or not _NAME_RE.match(name):
        raise NetlistValueError(
            f"{what} {name!r} is not a safe SPICE identifier: use letters, digits and '_' "
            f"(not starting with a digit), at most {MAX_NAME_LENGTH} characters"
        )
    return name


def spice_filename(name: Any, what: str = "file name") -> str:
    """Check a bare file name written by a ``.control`` block (no directories, no spaces)."""
    if not isinstance(name, str) or len(name) > 128 or not _FILENAME_RE.match(name):
        raise NetlistValueError(
            f"{what} {name!r} is not a safe bare file name: use letters, digits, '_', '-', '.' (no path separators)"
        )
    return name


def spice_comment(text: Any, what: str = "comment") -> str:
    """One comment line of printable ASCII; raise on newlines or control characters."""
    text = str(text)
    if not _COMMENT_RE.match(text):
        raise NetlistValueError(f"{what} {text[:60]!r}... contains a newline or a non-printable character")
    return "* " + text if text else "*"


def _as_real(value: Any, what: str) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise NetlistValueError(f"{what} = {value!r} is a boolean, not a number")
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if hasattr(value, "item") and not isinstance(value, numbers.Number):  # torch scalars
        try:
            value = value.item()
        except Exception as exc:  # noqa: BLE001 - any failure means "not a scalar"
            raise NetlistValueError(f"{what} = {value!r} is not a scalar number") from exc
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise NetlistValueError(f"{what} = {value!r} ({type(value).__name__}) is not a real number")
