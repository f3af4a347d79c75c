"""Export a mapped network or a single neuron: ``DIR/network.cir`` (stand-alone) + ``DIR/mapping.json``.

``network.cir`` inlines the subcircuit library, sets ``.ic`` for every node, pins TMAX and ends in a
``.control`` block, so ``ngspice -b DIR/network.cir`` runs it with no Python and writes
``DIR/waveforms.raw``: the block first replaces an earlier rawfile by a data-less placeholder, writes the
waveforms only if the transient reached t_stop, and exits 1 otherwise (ngspice -b alone exits 0
after an aborted transient). It is the only control block `mtc-analog simulate` accepts (exact copy);
the runner removes it and drives the transient itself. ``mapping.json`` holds::

    {"format": "mtc_analog.mapping/1", "kind": "network" | "neuron", "netlist": "network.cir",
     "waveforms": "waveforms.raw", "circuit_target": "behavioral", "filter": "linear" | "ota",
     "units": {"v_rest": V, "v_s": V, "t_unit": s, "i_unit": A, "i_unit_readout": A (the readout's; = i_unit if unset)},
     "hardware_target": {fields, derived constants, units},
     "simulation": {"t_stop_s", "t_max_s", "dt_model", "sample_period_s", "n_samples", "options"},
     "nodes": {which node carries which neuron's membrane, filters, output; inputs; readout; low-pass},
     "circuit": {every mapped value: {"value", "unit", "model", "model_unit"}},
     "range_changes": [what --clip changed], "input": {...}, "source": "..."}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..io import atomic_path, prepare_output_dir, write_json, write_text
from .builder import build_network_netlist
from .netlist import RAW_FILE, Netlist

MAPPING_FORMAT = "mtc_analog.mapping/1"
NETLIST_FILE = "network.cir"
MAPPING_FILE = "mapping.json"
INPUT_FILE = "input.npy"


@dataclass
class ExportResult:
    netlist_path: Path
    mapping_path: Path
    netlist: Netlist
    mapping: dict[str, Any]


def _units(target: Any) -> dict[str, float]:
    return {"v_rest": target.v_rest, "v_s": target.v_s, "t_unit": target.t_unit, "i_unit": target.i_unit,
            "i_unit_readout": target.readout_target().i_unit}


def _write(out_dir: Path, netlist: Netlist, mapping: dict[str, Any]) -> ExportResult:
    """Write mapping.json then network.cir into ``out_dir`` (already checked by prepare_output_dir)."""
    text = netlist.render()
    # mapping first, netlist last: a complete network.cir means a complete export
    mapping_path = write_json(out_dir / MAPPING_FILE, mapping)
    stale = out_dir / RAW_FILE
    if stale.exists():
        stale.unlink()  # waveforms of an earlier netlist would be mistaken for this one's
    netlist_path = write_text(out_dir / NETLIST_FILE, text)
    return ExportResult(netlist_path, mapping_path, netlist, mapping)


def export_network(
    circuit: Any,
    x: np.ndarray,
    out_dir: str | Path,
    target_name: str = "behavioral",
    source: str = "",
    range_changes: Sequence[Any] = (),
    input_source: str = "",
    probe_filters: bool = False,
    force: bool = False,
    compensation: dict[str, Any] | None = None,
) -> ExportResult:
    """Write a mapped :class:`~mtc_analog.hardware.NetworkCircuit` driven by ``x`` (T, n_in, model units);
    ``compensation``: the record of a design-time compensation that produced ``circuit`` (kept in mapping.json:
    its values are then pre-distorted, and unmapping them does not give the trained network back)."""
    x = np.asarray(x, dtype=float)
    kinds = sorted({f.kind for layer in circuit.layers for n in layer.neurons for f in n.filters.values() if f is not None})
    netlist = build_network_netlist(
        circuit, x, probe_filters=probe_filters, target_name=target_name,
        title=f"MTC network {'x'.join(str(l.size) for l in circuit.layers)} ({target_name}, {'/'.join(kinds)} filters)",
        header=[f"source: {_printable(source)}", f"input: {_printable(input_source)}, {x.shape[0]} samples",
                "units: SI (V, A, F, ohm, s); model U = (v - v_rest)/V_s, see mapping.json"],
    )
    target = circuit.target
    mapping = {
        "format": MAPPING_FORMAT, "kind": "network", "netlist": NETLIST_FILE, "waveforms": RAW_FILE,
        "circuit_target": target_name, "filter": "/".join(kinds), "units": _units(target),
        "hardware_target": target.summary(),
        "simulation": {"t_stop_s": netlist.t_stop, "t_max_s": netlist.t_max, "dt_model": target.model_time(circuit.t_step),
                       "sample_period_s": circuit.sample_period, "n_samples": int(x.shape[0]), "options": netlist.options,
                       "time_alignment": "circuit t = 0 is the model's initial state; model step k (after input k) is t = (k+1)*dt"},
        "nodes": netlist.nodes,
        "circuit": circuit.to_dict(),
        "range_changes": [_change_dict(c) for c in range_changes],
        "input": {"file": INPUT_FILE, "source": input_source, "shape": list(x.shape), "units": "model (z-scored)"},
        "source": source,
    }
    if compensation is not None:
        mapping["compensation"] = compensation
    out_dir = prepare_output_dir(out_dir, NETLIST_FILE, force)
    with atomic_path(out_dir / INPUT_FILE) as tmp, open(tmp, "wb") as fh:  # convenience copy; the PWL is the truth
        np.save(fh, x)
    return _write(out_dir, netlist, mapping)


def export_neuron(setup: Any, target: Any, out_dir: str | Path, target_name: str = "behavioral", source: str = "",
                  force: bool = False, circuit: Any = None, range_changes: Sequence[Any] = ()) -> ExportResult:
    """Write one neuron (a :class:`~mtc_analog.spice.protocol.NeuronSetup`) under its step protocol.

    ``circuit``: an already mapped (e.g. range-clipped) NeuronCircuit to write instead of mapping ``setup``."""
    from ..hardware.serialize import neuron_to_dict
    from .protocol import protocol_netlist, resting_state

    from ..hardware.ranges import check_input_current

    p = setup.protocol
    check_input_current(np.array([p.i0, p.i1]), target, f"{setup.name}: protocol current (i0, i1)")
    state = resting_state(setup)
    netlist, circuit = protocol_netlist(setup, target, target_name, state, circuit)
    netlist.header = [f"source: {_printable(source)}", "units: SI (V, A, F, ohm, s); model U = (v - v_rest)/V_s"]
    p = setup.protocol
    mapping = {
        "format": MAPPING_FORMAT, "kind": "neuron", "netlist": NETLIST_FILE, "waveforms": RAW_FILE,
        "circuit_target": target_name, "filter": setup.filter, "units": _units(target),
        "hardware_target": target.summary(),
        "simulation": {"t_stop_s": netlist.t_stop, "t_max_s": netlist.t_max, "dt_model": p.dt, "options": netlist.options},
        "protocol": {"i0": p.i0, "i1": p.i1, "t_step": p.t_step, "t_end": p.t_end, "dt": p.dt, "units": "I_u, t_u",
                     "start": "at rest under i0", "u_start": float(state.u_m)},
        "nodes": netlist.nodes,
        "circuit": {"neuron": neuron_to_dict(circuit, target)},
        "range_changes": [_change_dict(c) for c in range_changes],
        "source": source,
    }
    return _write(prepare_output_dir(out_dir, NETLIST_FILE, force), netlist, mapping)


def load_neuron_setup(path: str | Path) -> Any:
    """A single-neuron parameter file (YAML or JSON)::

        preset: tonic_spiking            # optional: start from a docs/reference.md §4 preset (params + protocol)
        params: {a_f: 2, a_s_plus: 2, a_s_minus: 0, a_us: 0, d_f: 0, ..., tau_s: 50, tau_us: 2500}
        protocol: {i0: -2, i1: 0, t_step: 2000, t_end: 6000, dt: 0.05}   # I_u, t_u
        transduction: {kind: clip, u_th: 0.5, u_sat: 1.5}
        filter: linear                   # or ota

    Missing keys take the preset's (or MTCParameters') defaults.
    """
    import json

    import yaml

    from ..neuron.equations import MTCParameters
    from ..neuron.step import Transduction
    from .protocol import NeuronSetup, StepProtocol

    path = Path(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except OSError as exc:
        raise InputError(f"cannot read parameter file {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - any parser error is a user error
        raise InputError(f"{path}: not valid YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with params / protocol / transduction / filter")
    unknown = sorted(set(data) - {"preset", "params", "protocol", "transduction", "filter", "name"})
    if unknown:
        raise InputError(f"{path}: unknown key(s) {unknown}; known: preset, params, protocol, transduction, filter, name")
    params, protocol = MTCParameters(), StepProtocol(i0=0.0, i1=1.0)
    name = str(data.get("name", path.stem))
    if "preset" in data:
        from ..neuron.regimes import get_preset

        preset = get_preset(str(data["preset"]))
        params = preset.params
        protocol = StepProtocol(preset.i0, preset.i1, preset.t_step, min(preset.t_end, preset.t_step + 4000.0), preset.dt)
        name = str(data.get("name", preset.name))

    def section(key: str, fields: Sequence[str]) -> dict[str, Any]:
        value = data.get(key) or {}
        if not isinstance(value, dict):
            raise InputError(f"{path}: '{key}' must be a mapping")
        bad = sorted(set(value) - set(fields))
        if bad:
            raise InputError(f"{path}: unknown {key} field(s) {bad}; known: {', '.join(fields)}")
        return value

    try:
        params = params._replace(**{k: float(v) for k, v in section("params", MTCParameters._fields).items()})
        protocol = StepProtocol(**{**protocol.__dict__, **{k: float(v) for k, v in
                                                            section("protocol", ("i0", "i1", "t_step", "t_end", "dt")).items()}})
        tr = section("transduction", Transduction._fields)
        transduction = Transduction(**{k: (str(v) if k == "kind" else float(v)) for k, v in tr.items()})
    except InputError:
        raise  # already names the file (InputError is a ValueError: do not prefix the path twice)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: {exc}") from None
    filter_kind = str(data.get("filter", "linear"))
    if filter_kind not in ("linear", "ota"):
        raise InputError(f"{path}: filter {filter_kind!r}: expected linear or ota")
    return NeuronSetup(params, protocol, transduction, filter_kind, name)


def load_input_file(path: str | Path, n_in: int) -> np.ndarray:
    """Input samples (T, n_in) in model units from ``.npy`` or a text/CSV file (one sample per row)."""
    path = Path(path)
    try:
        x = np.load(path, allow_pickle=False) if path.suffix.lower() == ".npy" else np.loadtxt(path, delimiter="," if path.suffix.lower() == ".csv" else None, ndmin=2)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read input file {path}: {exc}") from None
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != n_in or x.shape[0] < 1:
        raise InputError(f"input file {path}: expected shape (T, {n_in}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InputError(f"input file {path}: contains NaN or Inf")
    return x


def _printable(text: Any) -> str:
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in str(text))


def _change_dict(change: Any) -> Any:
    if hasattr(change, "_asdict"):
        return change._asdict()
    if hasattr(change, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(change)
    return str(change)
