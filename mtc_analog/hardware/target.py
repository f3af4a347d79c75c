"""A hardware target: the process constants, the unit system and the limits a mapped circuit must respect.

Everything is SI (volts, amperes, seconds, farads, degrees Celsius). The model's dimensionless units
map onto it as (docs/reference.md §8):

.. math::

    U_T = k T / q, \\qquad V_s = 2 U_T / \\kappa

    v = V_{rest} + U V_s, \\qquad I = i\\,I_u, \\qquad t = \\tau\\,t_u

so that an OTA ``I_b tanh(kappa (v+ - v-) / (2 U_T))`` is ``I_b tanh(U+ - U-)`` in model units.

A target is loaded from YAML or JSON (:meth:`HardwareTarget.from_file`) or by name from the files
shipped in ``mtc_analog/hardware/targets/`` (:func:`load_target`). Values in a file are plain SI
numbers or strings with a unit, e.g. ``i_unit: 1 nA``, ``c_max: 100 pF``, ``temperature_c: 300 K``.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

BOLTZMANN = 1.380649e-23  #: k [J/K] (exact, SI 2019)
ELEMENTARY_CHARGE = 1.602176634e-19  #: q [C] (exact, SI 2019)
ZERO_CELSIUS = 273.15  #: [K]

TARGETS_DIR = Path(__file__).with_name("targets")

#: The unit each field is given in ("" = dimensionless, "V_s" = model voltage units).
FIELD_UNITS: dict[str, str] = {
    "name": "",
    "temperature_c": "C",
    "kappa": "",
    "i_unit": "A",
    "i_unit_readout": "A",
    "t_unit": "s",
    "vdd": "V",
    "vss": "V",
    "v_rest": "V",
    "v_headroom": "V",
    "swing_min": "V_s",
    "swing_max": "V_s",
    "i_min": "A",
    "i_max": "A",
    "i_negligible": "A",
    "c_min": "F",
    "c_max": "F",
    "i_min_filter": "A",
    "v_in_min": "V",
    "v_in_max": "V",
    "sat_margin_ut": "",
    "v_out_margin": "V",
    "linear_range": "V_s",
}

#: Fields that may be left out (None): the limit then falls back to a broader one (see the fields' docs).
OPTIONAL_FIELDS = frozenset({"v_in_min", "v_in_max", "linear_range", "i_unit_readout"})


@dataclass(frozen=True)
class HardwareTarget:
    """Process constants, unit system and limits of one circuit target (SI units).

    Defaults describe the behavioural target (ideal tanh OTAs, ideal capacitors) at the scale of a
    subthreshold 180/130 nm process:

    - ``i_min = 1 pA``: junction/subthreshold leakage of a minimum switch at room temperature; a bias
      below it is swamped by leakage.
    - ``i_max = 100 nA``: the weak-inversion ceiling. The tanh law holds while the pair's tail current
      stays well below the specific current ``I_spec = 2 n mu C_ox U_T^2 W/L`` (several hundred nA for
      W/L ~ 1 in sky130); at 100 nA a W/L >= 2 pair is still in weak/moderate inversion with a few %
      deviation. Lower it for smaller devices.
    - ``i_negligible = 1 fA``: an *optional* device (element gain, synapse weight, bias) whose current
      is below this contributes < 1/1000 of the leakage floor: it is left out of the circuit (set to 0)
      and reported, not flagged. Training drives unused gains to softplus' floor (~1e-13 I_u), which
      must not make every network unmappable.
    - ``c_min = 10 fF``: below this, parasitics (~fF) dominate a capacitor's value.
    - ``c_max = 100 pF``: area budget per capacitor (~0.05 mm^2 of MIM at 2 fF/um^2).
    - ``swing_min..swing_max``: the membrane's expected excursion in model units (hyperpolarised by
      strong inhibition to ~-4, spike peaks ~+3); with ``v_headroom`` it must fit inside the rails.
    - ``linear_range``: how far [V_s] the membrane may move from rest while the cells that the model treats
      as linear (the leak, linear filters) still follow their line; ``None``: ideal, unlimited. Training
      with ``--swing-penalty`` keeps the membranes inside it (``training/swing.py``).
    """

    name: str = "behavioral"
    temperature_c: float = 27.0  #: [degC]
    kappa: float = 0.7  #: subthreshold slope factor (0.6..0.8)
    i_unit: float = 1e-9  #: current unit I_u [A]
    t_unit: float = 1e-3  #: time unit t_u [s]
    vdd: float = 1.8  #: positive rail [V]
    vss: float = 0.0  #: negative rail [V]
    v_rest: float = 0.9  #: voltage of model U = 0 [V]
    v_headroom: float = 0.1  #: distance an operating voltage keeps from either rail [V]
    swing_min: float = -5.0  #: lowest expected membrane excursion [V_s]
    swing_max: float = 5.0  #: highest expected membrane excursion [V_s]
    i_min: float = 1e-12  #: bias-current floor (leakage) [A]
    i_max: float = 100e-9  #: bias-current ceiling (weak inversion) [A]
    i_negligible: float = 1e-15  #: optional devices below this current are left out [A]
    c_min: float = 10e-15  #: smallest capacitor [F]
    c_max: float = 100e-12  #: largest capacitor (area budget) [F]
    # ---- operating-point limits of the cells (checked before simulating and, with transistor-level
    # cells that expose their internal nodes, during the transient: mtc_analog.validation.operating_point)
    i_min_filter: float = 0.0  #: filter-bias floor [A] (0: i_min); slow 5T followers misbehave below ~100 pA
    v_in_min: float | None = None  #: lowest OTA input common mode [V] (None: the operating window)
    v_in_max: float | None = None  #: highest OTA input common mode [V] (None: the operating window)
    sat_margin_ut: float = 4.0  #: a transistor that must be saturated needs V_DS >= this many U_T
    v_out_margin: float = 0.1  #: an OTA output stays this far from either rail to remain a current source [V]
    linear_range: float | None = None  #: membrane excursion [V_s] the linear cells follow their line to (None: ideal)
    #: current unit of the readout [A] (None: i_unit): its synapses, load and low-pass stages are mapped at this unit,
    #: their current limits scaled with it (:meth:`readout_target`); a target whose readout cells are more parallel
    #: copies than the neuron's sets it, so each copy keeps the neuron cells' current and speed
    i_unit_readout: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.name, str) or not self.name:
            problems.append("name: must be a non-empty string")
        for f in fields(self):
            if f.name == "name":
                continue
            value = getattr(self, f.name)
            if value is None and f.name in OPTIONAL_FIELDS:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                problems.append(f"{f.name}: expected a number in {FIELD_UNITS[f.name] or 'no unit'}, got {value!r}")
            elif not math.isfinite(value):
                problems.append(f"{f.name}: must be finite, got {value!r}")
            else:
                object.__setattr__(self, f.name, float(value))
        if problems:
            raise InputError("invalid hardware target: " + "; ".join(problems))
        checks = [
            (self.temperature_c > -ZERO_CELSIUS, "temperature_c", f"{self.temperature_c} degC is below absolute zero"),
            (0.0 < self.kappa <= 1.0, "kappa", f"{self.kappa} outside (0, 1] (typical 0.6..0.8)"),
            (self.i_unit > 0, "i_unit", f"{self.i_unit} A must be > 0"),
            (self.t_unit > 0, "t_unit", f"{self.t_unit} s must be > 0"),
            (self.i_unit_readout is None or self.i_unit_readout > 0, "i_unit_readout",
             f"{self.i_unit_readout} A must be > 0 (or null: the readout at i_unit)"),
            (self.vss < self.vdd, "vdd", f"vdd = {self.vdd} V must exceed vss = {self.vss} V"),
            (self.vss < self.v_rest < self.vdd, "v_rest", f"{self.v_rest} V must lie strictly between the rails {self.vss}..{self.vdd} V"),
            (self.v_headroom >= 0, "v_headroom", f"{self.v_headroom} V must be >= 0"),
            (self.swing_min < self.swing_max, "swing_min", f"swing_min = {self.swing_min} must be below swing_max = {self.swing_max}"),
            (0 < self.i_min < self.i_max, "i_min", f"need 0 < i_min < i_max, got {self.i_min} A, {self.i_max} A"),
            (0 <= self.i_negligible < self.i_min, "i_negligible", f"need 0 <= i_negligible < i_min, got {self.i_negligible} A, {self.i_min} A"),
            (0 < self.c_min < self.c_max, "c_min", f"need 0 < c_min < c_max, got {self.c_min} F, {self.c_max} F"),
            (0 <= self.i_min_filter < self.i_max, "i_min_filter", f"need 0 <= i_min_filter < i_max, got {self.i_min_filter} A"),
            (self.sat_margin_ut >= 0, "sat_margin_ut", f"{self.sat_margin_ut} must be >= 0 (typical 4)"),
            (0 <= self.v_out_margin < (self.vdd - self.vss) / 2, "v_out_margin",
             f"{self.v_out_margin} V must be >= 0 and below half the supply"),
            (self.linear_range is None or self.linear_range > 0, "linear_range",
             f"{self.linear_range} V_s must be > 0 (or null: ideal linear cells)"),
            (self.input_window[0] < self.input_window[1], "v_in_min",
             f"the input common-mode range {self.input_window[0]}..{self.input_window[1]} V is empty"),
        ]
        problems = [f"{key}: {msg}" for ok, key, msg in checks if not ok]
        if not problems:  # the membrane's expected swing must fit the rails, or no neuron can be mapped
            low, high = self.operating_window
            v_low, v_high = self.voltage(self.swing_min), self.voltage(self.swing_max)
            in_low, in_high = self.input_window
            if v_low < low or v_high > high:
                problems.append(
                    f"swing_min/swing_max: the membrane swing {self.swing_min:g}..{self.swing_max:g} V_s is "
                    f"{v_low:.3f}..{v_high:.3f} V at V_s = {1e3 * self.v_s:.1f} mV, outside the operating window "
                    f"{low:.3f}..{high:.3f} V (rails minus v_headroom): narrow the swing, move v_rest or widen the rails"
                )
            elif v_low < in_low or v_high > in_high:  # the membrane drives OTA inputs (leak, filters)
                problems.append(
                    f"swing_min/swing_max: the membrane swing {self.swing_min:g}..{self.swing_max:g} V_s is "
                    f"{v_low:.3f}..{v_high:.3f} V, outside the cells' input common-mode range {in_low:.3f}..{in_high:.3f} V "
                    "(v_in_min/v_in_max): narrow the swing or move v_rest"
                )
        if problems:
            raise InputError("invalid hardware target: " + "; ".join(problems))

    # ---- derived constants -------------------------------------------------------------------
    @property
    def temperature_k(self) -> float:
        """Absolute temperature [K]."""
        return self.temperature_c + ZERO_CELSIUS

    @property
    def u_t(self) -> float:
        """Thermal voltage U_T = kT/q [V] (25.85 mV at 27 degC)."""
        return BOLTZMANN * self.temperature_k / ELEMENTARY_CHARGE

    @property
    def v_s(self) -> float:
        """Model voltage unit V_s = 2 U_T / kappa [V] (~74 mV at 27 degC, kappa 0.7)."""
        return 2.0 * self.u_t / self.kappa

    @property
    def g_unit(self) -> float:
        """Conductance unit I_u / V_s [S]: a weight w is a transconductance w * g_unit."""
        return self.i_unit / self.v_s

    @property
    def c_unit(self) -> float:
        """Capacitance unit t_u I_u / V_s [F]: tau_m = 1 at R = 1 is this capacitor (13.5 pF by default)."""
        return self.t_unit * self.i_unit / self.v_s

    @property
    def operating_window(self) -> tuple[float, float]:
        """Where operating and reference voltages may lie: the rails minus ``v_headroom`` [V]."""
        return self.vss + self.v_headroom, self.vdd - self.v_headroom

    @property
    def input_window(self) -> tuple[float, float]:
        """Where an OTA input (reference voltage, membrane) may lie [V]: the operating window, narrowed by the
        cells' input common-mode range ``v_in_min..v_in_max`` where the target gives one."""
        low, high = self.operating_window
        return (low if self.v_in_min is None else max(low, self.v_in_min),
                high if self.v_in_max is None else min(high, self.v_in_max))

    @property
    def filter_bias_min(self) -> float:
        """Lowest filter bias current [A]: ``max(i_min, i_min_filter)``."""
        return max(self.i_min, self.i_min_filter)

    @property
    def readout_scale(self) -> float:
        """``i_unit_readout / i_unit`` (1 without a readout unit): how many times the neuron cells' current the readout's
        cells carry."""
        return 1.0 if self.i_unit_readout is None else self.i_unit_readout / self.i_unit

    def readout_target(self) -> "HardwareTarget":
        """The target the readout is mapped on (:func:`~mtc_analog.hardware.mapping.map_network`): this one at the
        readout's current unit, with every current limit scaled by :attr:`readout_scale` (its cells are that many times
        the copies of a neuron cell, each at a neuron cell copy's current); this target itself without a readout unit."""
        if self.i_unit_readout is None:
            return self
        s = self.readout_scale
        return replace(self, i_unit=self.i_unit_readout, i_unit_readout=None, i_min=self.i_min * s, i_max=self.i_max * s,
                       i_negligible=self.i_negligible * s, i_min_filter=self.i_min_filter * s)

    @property
    def sat_margin(self) -> float:
        """V_DS a saturated subthreshold transistor needs [V]: ``sat_margin_ut * U_T``."""
        return self.sat_margin_ut * self.u_t

    # ---- unit conversions (work on floats and numpy arrays) ----------------------------------
    def voltage(self, u_model: Any) -> Any:
        """Model voltage [V_s] -> node voltage [V]: v = V_rest + U V_s."""
        return _scale(u_model, self.v_s) + self.v_rest

    def model_voltage(self, v: Any) -> Any:
        """Node voltage [V] -> model voltage [V_s]."""
        return (_scale(v, 1.0) - self.v_rest) / self.v_s

    def current(self, i_model: Any) -> Any:
        """Model current [I_u] -> amperes."""
        return _scale(i_model, self.i_unit)

    def model_current(self, amperes: Any) -> Any:
        """Amperes -> model current [I_u]."""
        return _scale(amperes, 1.0 / self.i_unit)

    def seconds(self, t_model: Any) -> Any:
        """Model time [t_u] -> seconds."""
        return _scale(t_model, self.t_unit)

    def model_time(self, seconds: Any) -> Any:
        """Seconds -> model time [t_u]."""
        return _scale(seconds, 1.0 / self.t_unit)

    # ---- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The target's fields as plain SI numbers; ``HardwareTarget.from_dict(t.to_dict()) == t``."""
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """Fields plus derived constants and the unit of every entry (for mapping.json and reports)."""
        return {
            "fields": self.to_dict(),
            "derived": {"u_t": self.u_t, "v_s": self.v_s, "g_unit": self.g_unit, "c_unit": self.c_unit},
            "units": {**FIELD_UNITS, "u_t": "V", "v_s": "V", "g_unit": "S", "c_unit": "F"},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "target") -> "HardwareTarget":
        """Build a target from a mapping; values are SI numbers or strings with a unit ('1 nA')."""
        if not isinstance(data, dict):
            raise InputError(f"{source}: a hardware target must be a mapping of key: value, got {type(data).__name__}")
        unknown = sorted(set(data) - set(FIELD_UNITS))
        if unknown:
            raise InputError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(FIELD_UNITS)}")
        values = {key: _parse_value(key, value, source) for key, value in data.items()}
        try:
            return cls(**values)
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> "HardwareTarget":
        """Load a target from a ``.yaml``/``.yml`` or ``.json`` file (missing keys take the defaults)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise InputError(f"cannot read hardware target file {path}: {exc.strerror or exc}") from None
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as exc:  # noqa: BLE001 - any parser error is a user error here
            raise InputError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}") from None
        return cls.from_dict({} if data is None else data, source=str(path))


def available_targets() -> list[str]:
    """Names of the target files shipped with the package (``targets/<name>.yaml``)."""
    return sorted(p.stem for p in TARGETS_DIR.glob("*.yaml"))


def load_target(name_or_path: str | Path | None = None) -> HardwareTarget:
    """A shipped target by name (``"behavioral"``), a target file by path, or the defaults for None."""
    if name_or_path is None:
        return HardwareTarget()
    candidate = Path(name_or_path)
    if candidate.suffix.lower() in (".yaml", ".yml", ".json") or candidate.exists():
        return HardwareTarget.from_file(candidate)
    shipped = TARGETS_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return HardwareTarget.from_file(shipped)
    raise InputError(f"unknown hardware target {str(name_or_path)!r}: give a file path or one of {available_targets()}")


# ---- helpers -----------------------------------------------------------------------------------
def _scale(x: Any, factor: float) -> Any:
    return np.asarray(x, dtype=float) * factor if np.ndim(x) else float(x) * factor


#: SI prefix -> power of ten (applied in decimal, so '100 nA' is exactly the float 100e-9)
_PREFIXES = {"f": -15, "p": -12, "n": -9, "u": -6, "\u00b5": -6, "m": -3, "k": 3, "M": 6, "G": 9}
_PREFIXABLE = ("A", "s", "V", "F")
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z\u00b5\u03bc_]*)\s*$")


def _parse_value(key: str, value: Any, source: str) -> Any:
    """A field value from a file: a number (SI) or 'NUMBER UNIT' with an SI prefix; checks the unit."""
    if key == "name" or not isinstance(value, str):
        return value
    expected = FIELD_UNITS[key]
    match = _QUANTITY.match(value)
    if not match:
        raise InputError(f"{source}: {key}: cannot read {value!r} as a number with unit {expected or '(none)'}")
    number, unit = float(match.group(1)), match.group(2)
    # "µ" may arrive as MICRO SIGN or GREEK SMALL LETTER MU
    unit = unit.replace("\u03bc", "\u00b5")
    if unit == "" or unit == expected:
        return number
    if expected == "C" and unit == "K":
        return number - ZERO_CELSIUS
    if expected in _PREFIXABLE and len(unit) >= 2 and unit[1:] == expected and unit[0] in _PREFIXES:
        return float(Decimal(match.group(1)).scaleb(_PREFIXES[unit[0]]))
    hint = f"a value in {expected} (e.g. '1 n{expected}')" if expected in _PREFIXABLE else f"a value in {expected or 'no unit'}"
    raise InputError(f"{source}: {key}: wrong unit {unit!r} in {value!r}; expected {hint}")
