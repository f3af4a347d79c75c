"""Simulated waveforms: node voltages over time, their model-unit view, and their file formats.

``Waveforms`` holds ``time`` [s] and node voltages [V] by node name (lower case, as ngspice reports).
:meth:`Waveforms.to_model_units` uses a mapping (mapping.json's ``nodes`` and ``hardware_target``) to
give the model's view through the target's inverse mapping: time in t_u and every node as
``(v - V_rest) / V_s`` — membrane and filters in V_s, the transduction output as s in [0, 1], the
readout and low-pass nodes as y.

The ``.npz`` format written by ``mtc-analog simulate`` (:func:`save_npz`), all arrays float64:

=====================  ==================  =====================================================
key                    shape               meaning
=====================  ==================  =====================================================
``time_s``             (T,)                simulator time points [s] (not uniform)
``time_model``         (T,)                the same in model time units [t_u]
``node_names``         (K,) str            probed nodes, in column order
``volts``              (T, K)              node voltages [V]
``layer<l>_u_m``       (T, N_l)            membranes [V_s]  (also ``_u_f``/``_u_s``/``_u_us`` if probed)
``layer<l>_s``         (T, N_l)            transduction outputs s (graded, [0, 1])
``inputs_x``           (T, n_in)           network inputs in model units (networks only)
``readout_y``          (T, n_out)          readout summing node y0 = W s + b [model units]
``lowpass_y``          (T, n_out)          last low-pass stage: the prediction [model units]
``mapping_json``       ()  str             the mapping.json the run used
=====================  ==================  =====================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, SimulationError
from ..io import atomic_path


@dataclass
class Waveforms:
    """Transient result: ``time`` [s] and ``voltages[node]`` [V] (node names lower case)."""

    time: np.ndarray
    voltages: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)  #: e.g. the settings the runner used

    def __getitem__(self, node: str) -> np.ndarray:
        try:
            return self.voltages[node.lower()]
        except KeyError:
            raise KeyError(f"node {node!r} was not probed; probed nodes: {sorted(self.voltages)[:10]}...") from None

    @property
    def nodes(self) -> list[str]:
        return list(self.voltages)

    def to_model_units(self, mapping: dict[str, Any]) -> dict[str, np.ndarray]:
        """Model-unit arrays keyed as in the .npz format (see module docstring).

        Units cross back only through the hardware target the export used (mapping.json's
        ``hardware_target``): ``U = target.model_voltage(v)``, ``t = target.model_time(seconds)``.
        """
        target = mapping_target(mapping)
        nodes = mapping["nodes"]

        def model(node: str) -> np.ndarray:
            return target.model_voltage(self[node])

        out: dict[str, np.ndarray] = {"time_model": target.model_time(self.time)}
        for l, layer in enumerate(nodes.get("layers", [])):
            if not layer:
                continue
            out[f"layer{l}_u_m"] = np.stack([model(n["membrane"]) for n in layer], axis=1)
            out[f"layer{l}_s"] = np.stack([model(n["output"]) for n in layer], axis=1)
            for timescale, key in (("fast", "u_f"), ("slow", "u_s"), ("ultraslow", "u_us")):
                names = [n["filters"].get(timescale) for n in layer]
                if all(name is not None and name.lower() in self.voltages for name in names):
                    out[f"layer{l}_{key}"] = np.stack([model(name) for name in names], axis=1)
        if nodes.get("inputs") and all(n.lower() in self.voltages for n in nodes["inputs"]):
            out["inputs_x"] = np.stack([model(n) for n in nodes["inputs"]], axis=1)
        if nodes.get("readout"):
            out["readout_y"] = np.stack([model(n) for n in nodes["readout"]], axis=1)
        if nodes.get("lowpass"):
            out["lowpass_y"] = np.stack([model(stages[-1]) for stages in nodes["lowpass"]], axis=1)
        return out


#: Keys :meth:`Waveforms.to_model_units` needs in a mapping (mapping.json written by ``mtc-analog export``).
MAPPING_KEYS = ("format", "units", "nodes", "hardware_target")


def check_mapping(mapping: Any, source: str = "mapping") -> dict[str, Any]:
    """Raise :class:`InputError` naming the first missing key unless ``mapping`` looks like mapping.json."""
    if not isinstance(mapping, dict):
        raise InputError(f"{source}: expected a JSON object as written by `mtc-analog export` (mapping.json), "
                         f"got {type(mapping).__name__}")
    missing = [key for key in MAPPING_KEYS if key not in mapping]
    if missing:
        raise InputError(f"{source}: missing key {missing[0]!r} (a mapping.json needs {', '.join(MAPPING_KEYS)}); "
                         "pass the mapping.json written by `mtc-analog export`")
    for key in ("units", "nodes", "hardware_target"):
        if not isinstance(mapping[key], dict):
            raise InputError(f"{source}: {key!r} must be a JSON object, got {type(mapping[key]).__name__}")
    mapping_target(mapping, source)  # the target must rebuild (raises InputError naming the bad field)
    return mapping


def mapping_nodes(mapping: dict[str, Any]) -> list[str]:
    """Every node :meth:`Waveforms.to_model_units` reads from a mapping (lower case)."""
    nodes = mapping.get("nodes") or {}
    names: list[str] = []
    for layer in nodes.get("layers", []) or []:
        for neuron in layer or []:
            names += [neuron.get("membrane"), neuron.get("output")]
    names += list(nodes.get("readout") or [])
    names += [stages[-1] for stages in nodes.get("lowpass") or [] if stages]
    return [str(n).lower() for n in names if n is not None]


def check_mapping_nodes(mapping: dict[str, Any], deck: Any, source: str = "mapping", netlist: str = "netlist") -> None:
    """Raise :class:`InputError` (one line) unless the netlist saves every node the mapping needs.

    Checked before simulating: a mapping.json from another export must not cost a whole run."""
    from .netlist import saved_nodes

    saved = saved_nodes(deck)
    if saved is None:  # no .save: ngspice keeps every node; the node must at least appear in the netlist
        words = {tok.lower() for s in deck.statements if not s.keyword.startswith(".") for tok in s.tokens}
        missing = [n for n in mapping_nodes(mapping) if n not in words]
    else:
        missing = [n for n in mapping_nodes(mapping) if n not in saved]
    if missing:
        raise InputError(f"{source} does not belong to {netlist}: it names node {missing[0]!r} "
                         f"({len(missing)} node(s) in all) that the netlist does not save; pass the mapping.json "
                         "written with this netlist (--mapping), or re-export both")
    expected = (mapping.get("simulation") or {}).get("t_stop_s")
    if isinstance(expected, (int, float)) and expected > 0:
        from .netlist import tran_settings

        t_stop = tran_settings(deck)[0]
        if abs(t_stop - expected) > 1e-9 * max(t_stop, expected):
            raise InputError(f"{source} does not belong to {netlist}: it was exported for t_stop = {expected:g} s, the "
                             f"netlist's .tran stops at {t_stop:g} s; pass the mapping.json written with this netlist "
                             "(--mapping), or re-export both")


def mapping_target(mapping: dict[str, Any], source: str = "mapping") -> Any:
    """The :class:`~mtc_analog.hardware.target.HardwareTarget` a mapping.json was exported with."""
    from ..hardware.target import HardwareTarget

    summary = mapping.get("hardware_target")
    if not isinstance(summary, dict) or not isinstance(summary.get("fields"), dict):
        raise InputError(f"{source}: 'hardware_target' must hold the target's 'fields' (as `mtc-analog export` writes)")
    return HardwareTarget.from_dict(summary["fields"], source=f"{source} hardware_target")


def read_rawfile(path: str | Path) -> Waveforms:
    """Read an ngspice transient rawfile (binary or ascii) into :class:`Waveforms`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SimulationError(f"cannot read ngspice rawfile {path}: {exc.strerror or exc}") from None
    names: list[str] = []
    n_vars = n_points = None
    pos = 0
    binary = None
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            break
        line = data[pos:end].decode("latin-1")
        pos = end + 1
        key = line.split(":", 1)[0].strip().lower()
        if key == "plotname" and "transient" not in line.lower():
            raise SimulationError(f"{path}: holds no transient ({line.strip()!r}): the stand-alone run that wrote it "
                                  "did not complete (its exit code and log say why); run it again")
        if key == "no. variables":
            n_vars = int(line.split(":", 1)[1])
        elif key == "no. points":
            n_points = int(line.split(":", 1)[1])
        elif key == "flags" and "complex" in line:
            raise SimulationError(f"{path}: complex rawfile (not a transient analysis)")
        elif key == "variables":
            for _ in range(n_vars or 0):
                end = data.find(b"\n", pos)
                fields = data[pos:end].decode("latin-1").split()
                names.append(fields[1].lower())
                pos = end + 1
        elif key in ("binary", "values"):
            binary = key == "binary"
            break
    if n_vars is None or n_points is None or binary is None or len(names) != n_vars:
        raise SimulationError(f"{path}: not an ngspice rawfile (header incomplete)")
    if binary:
        count = n_vars * n_points
        values = np.frombuffer(data, dtype="<f8", count=count, offset=pos)
        if values.size != count:
            raise SimulationError(f"{path}: rawfile truncated ({values.size} of {count} values)")
        table = values.reshape(n_points, n_vars)
    else:
        tokens = data[pos:].decode("latin-1").split()
        # ascii: "index value" then n_vars-1 values per point
        table = np.array([float(t) for k, t in enumerate(tokens) if k % (n_vars + 1) != 0]).reshape(n_points, n_vars)
    time = np.abs(table[:, 0].copy())  # ngspice marks some points with a negative time sign in raw files
    voltages = {}
    for k, name in enumerate(names[1:], start=1):
        node = name[2:-1] if name.startswith("v(") and name.endswith(")") else name
        voltages[node] = table[:, k].copy()
    return Waveforms(time, voltages)


def save_npz(path: str | Path, waves: Waveforms, mapping: dict[str, Any] | None = None) -> Path:
    """Write the documented .npz (volts, and model units when ``mapping`` is given), atomically."""
    arrays: dict[str, Any] = {
        "time_s": waves.time,
        "node_names": np.array(waves.nodes, dtype=str),
        "volts": np.stack([waves.voltages[n] for n in waves.nodes], axis=1) if waves.nodes else np.zeros((waves.time.size, 0)),
    }
    if mapping is not None:
        arrays.update(waves.to_model_units(mapping))
        arrays["mapping_json"] = np.array(json.dumps(mapping))
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return path


def load_npz(path: str | Path) -> tuple[Waveforms, dict[str, np.ndarray]]:
    """Read a waveform .npz back: (:class:`Waveforms` in volts, all arrays by key)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read waveform file {path}: {exc}") from None
    names = [str(n) for n in arrays["node_names"]]
    waves = Waveforms(arrays["time_s"], {n: arrays["volts"][:, k] for k, n in enumerate(names)})
    return waves, arrays
