"""The circuit-target protocol: how one circuit level writes a neuron, a synapse and a readout.

A target (``behavioral``, the transistor-level ``sky130``) is a module-level object that
implements :class:`CircuitTarget`. The network builder, the runner and validation only talk to this
protocol, so adding a target is a new module beside :mod:`mtc_analog.spice.behavioral` plus one line
in :data:`TARGETS`, not a rewrite.

Every writer returns netlist lines (strings) and only ever receives values that it passes through
:mod:`mtc_analog.spice.values` (numbers checked, names checked).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class NeuronNodes:
    """Node names of one neuron: membrane, filtered copies (``f`` is None without a fast filter), output."""

    m: str
    f: str | None
    s: str
    us: str
    out: str

    def state_node(self, variable: str) -> str:
        """Node carrying a model state variable (``u_m``, ``u_f``, ``u_s``, ``u_us``)."""
        if variable == "u_f" and self.f is None:  # tau_f = 0: the fast element reads the membrane
            return self.m
        return {"u_m": self.m, "u_f": self.f, "u_s": self.s, "u_us": self.us}[variable]


class CircuitTarget(Protocol):
    """What a circuit level must provide. SI units in, netlist lines out."""

    name: str

    def library(self, variants: set[str]) -> str:
        """Subcircuit definitions needed by the given neuron variants (text to inline in a netlist)."""

    def neuron_variant(self, circuit: Any) -> str:
        """Name of the neuron subcircuit a NeuronCircuit needs (e.g. ``mtc_neuron_linear_nofast``)."""

    def neuron_lines(self, instance: str, nodes: NeuronNodes, circuit: Any, v_s: float, vrest_node: str,
                     leak_node: str | None = None) -> list[str]:
        """Instance lines of one neuron (membrane, elements, filters) and its transduction stage.

        The leak resistor returns to ``leak_node`` (the neuron's own rest voltage; default ``vrest_node``);
        the transduction output is ``V(vrest_node) + s V_s``."""

    def internal_initial_conditions(self, instance: str, circuit: Any) -> dict[str, float]:
        """Initial voltages of the neuron's internal nodes (reference nodes), by hierarchical name."""

    def synapse_lines(self, prefix: str, out_nodes: Sequence[str], in_nodes: Sequence[str], gm: np.ndarray,
                      vrest_node: str, places: Sequence[tuple[str, str] | None] | None = None,
                      readout: bool = False) -> list[str]:
        """Synapses ``out_i += gm_ij (v_in_j - v_rest)`` for a whole (n_out, n_in) matrix [S].

        ``places``: per synapse (row-major over the non-zero ``gm``) the (out, in) nodes it has in the whole
        network netlist, which key a target's per-cell mismatch draws (default: the nodes written), or None
        for a stand-in that is no cell of the chip (split simulations): drawn nominal. ``readout``: the synapses
        feed the readout's summing node (a target may build them as its readout cells, e.g. more copies at the
        readout's current unit)."""

    def bias_lines(self, prefix: str, nodes: Sequence[str], current: np.ndarray) -> list[str]:
        """Constant currents [A] into each node (zeros are skipped)."""

    def readout_lines(self, prefix: str, out_node: str, r_load: float, vrest_node: str,
                      place: str | None = None, stand_in: bool = False) -> list[str]:
        """The load resistor that turns the summed readout current into a voltage (``place``: its node in the
        whole network, default ``out_node``; ``stand_in``: no cell of the chip, as in ``synapse_lines``)."""

    def lowpass_lines(self, prefix: str, in_node: str, out_node: str, stage: Any, v_s: float,
                      place: str | None = None) -> list[str]:
        """One low-pass stage (a FilterCircuit) from ``in_node`` to ``out_node`` (``place``: its output node in
        the whole network, default ``out_node``)."""

    def operating_point_cells(self, body: Sequence[str]) -> list[dict[str, Any]]:
        """The OTAs instanced in ``body`` whose operating point can be checked on the transient: per cell
        ``layer``, ``neuron`` (None for the readout), ``where``, ``cell``, ``kind``, ``out`` (output node),
        ``tails`` (tail nodes, V_DS of the tail transistor), ``sources`` (sources of the output-side pair
        transistors); internal nodes by hierarchical name. Empty for ideal cells."""

    def supply_source(self) -> tuple[str, float] | None:
        """(name of the voltage source feeding the cells, its volts) for power figures; None for ideal cells."""


#: Known targets: name -> module path of an object called ``TARGET``.
TARGETS = {"behavioral": "mtc_analog.spice.behavioral", "sky130": "mtc_analog.spice.sky130"}


def get_target(name: str) -> CircuitTarget:
    """The target object for ``name`` (``behavioral``, ``sky130``); ``base:variant`` asks the target module's
    ``target_variant(variant)`` (e.g. ``sky130:ss``, a process corner). A target object (e.g. one carrying a
    Monte-Carlo instance's device mismatch) is returned as it is."""
    if not isinstance(name, str):
        return name
    base, _, variant = name.partition(":")
    if base not in TARGETS:
        raise InputError(f"unknown circuit target {name!r}: available {sorted(TARGETS)}")
    module = importlib.import_module(TARGETS[base])
    if not variant:
        return module.TARGET
    if not hasattr(module, "target_variant"):
        raise InputError(f"circuit target {base!r} has no variants (got {name!r})")
    return module.target_variant(variant)
