"""A single neuron under a current-step protocol, as a netlist and as an ngspice run.

The protocol is docs/reference.md §4's: the neuron starts *at rest under I0* (every state variable at the most
hyperpolarised stable root of the steady-state I-V curve, as :mod:`mtc_analog.neuron.regimes` does),
the input is ``I0`` before ``t_step`` and ``I1`` after, up to ``t_end`` (times in t_u, currents in I_u).
TMAX is the protocol's ``dt`` in seconds. Used by ``mtc-analog export PARAMS.yaml`` and by the regime
gallery in SPICE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..neuron.equations import MTCParameters, MTCState
from ..neuron.step import Transduction
from .builder import EDGE_FRACTION, build_neuron_netlist, step_current
from .netlist import Netlist
from ..execution import Execution
from .parallel import run_parallel
from .runner import SimulationJob
from .waveforms import Waveforms


@dataclass(frozen=True)
class StepProtocol:
    """Current step I0 -> I1 at ``t_step``, run to ``t_end`` with maximum step ``dt`` (all model units)."""

    i0: float
    i1: float
    t_step: float = 2000.0
    t_end: float = 6000.0
    dt: float = 0.05

    def __post_init__(self) -> None:
        values = [self.i0, self.i1, self.t_step, self.t_end, self.dt]
        if not all(np.isfinite(v) for v in values):
            raise InputError(f"step protocol values must be finite, got {self}")
        if not (self.dt > 0 and self.t_end > 0 and 0 <= self.t_step):
            raise InputError(f"step protocol needs dt > 0, t_end > 0, t_step >= 0 [t_u], got {self}")


@dataclass(frozen=True)
class NeuronSetup:
    """A neuron in model units plus its protocol (what a parameter file describes)."""

    params: MTCParameters
    protocol: StepProtocol
    transduction: Transduction = field(default_factory=Transduction)
    filter: str = "linear"
    name: str = "neuron"


def resting_state(setup: NeuronSetup) -> MTCState:
    """Every state variable at the resting equilibrium under I0 (model units)."""
    from ..neuron.iv import resting_equilibrium

    u0 = resting_equilibrium(setup.params, setup.protocol.i0, setup.filter)
    return MTCState(u0, u0, u0, u0)


def protocol_netlist(setup: NeuronSetup, target: Any, target_name: str = "behavioral",
                     initial_state: MTCState | None = None, circuit: Any = None) -> tuple[Netlist, Any]:
    """(netlist, mapped NeuronCircuit) of one neuron under its step protocol.

    ``circuit`` overrides the mapping of ``setup`` (e.g. after range clipping or mismatch)."""
    from ..hardware.mapping import map_neuron

    if circuit is None:
        circuit = map_neuron(setup.params, setup.transduction, setup.filter, target)
    p = setup.protocol
    times, values = step_current(p.i0, p.i1, p.t_step, p.t_end, EDGE_FRACTION * p.dt)
    netlist = build_neuron_netlist(
        circuit, target, target.seconds(times), target.current(values), target.seconds(p.t_end), target.seconds(p.dt),
        initial_state if initial_state is not None else resting_state(setup), target_name=target_name,
        title=f"MTC neuron {setup.name}: step {p.i0:g} -> {p.i1:g} I_u at {p.t_step:g} t_u (mtc_analog)",
    )
    return netlist, circuit


def simulate_protocols(setups: Sequence[NeuronSetup], target: Any, target_name: str = "behavioral",
                       workers: int | None = None, timeout_s: float | None = None,
                       execution: Execution | None = None) -> list[tuple[np.ndarray, np.ndarray, Waveforms]]:
    """Run each neuron's protocol in ngspice, in parallel through the execution layer (``execution``, or a
    local cluster of ``workers`` processes): per setup (time [t_u], U_m [V_s], waveforms)."""
    netlists = [protocol_netlist(s, target, target_name)[0] for s in setups]
    results = run_parallel([SimulationJob(n.render(control=False), None, f"neuron {s.name}")
                            for n, s in zip(netlists, setups)], execution, workers=workers, timeout_s=timeout_s,
                           desc="neuron protocols")
    out = []
    for netlist, waves in zip(netlists, results):
        membrane = netlist.nodes["layers"][0][0]["membrane"]
        out.append((np.asarray(target.model_time(waves.time)), np.asarray(target.model_voltage(waves[membrane])), waves))
    return out
