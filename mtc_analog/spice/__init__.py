"""Netlists and ngspice: circuit targets, the netlist builder, the simulation runner, waveforms, export.

    netlist = build_network_netlist(circuit, x)          # NetworkCircuit + input samples -> Netlist
    text = netlist.render()                              # stand-alone .cir (ngspice -b)
    waves = run_transient(netlist)                       # PySpice shared mode, in a worker process
    model = waves.to_model_units(mapping)                # back to V_s / t_u / s / y
    export_network(circuit, x, out_dir)                  # DIR/network.cir + DIR/mapping.json

Targets are sibling modules (:mod:`.behavioral` now; a transistor-level one later) implementing
:class:`.target.CircuitTarget`.
"""

from .builder import build_network_netlist, build_neuron_netlist, build_readout_netlist, step_current
from .netlist import Netlist
from .runner import RETRY_POLICY, SimulationJob, check_simulator, run_jobs, run_standalone, run_transient
from .target import CircuitTarget, get_target
from .waveforms import Waveforms, load_npz, read_rawfile, save_npz

__all__ = [
    "build_network_netlist", "build_neuron_netlist", "build_readout_netlist", "step_current", "Netlist",
    "RETRY_POLICY", "SimulationJob", "check_simulator", "run_jobs", "run_standalone", "run_transient",
    "CircuitTarget", "get_target", "Waveforms", "load_npz", "read_rawfile", "save_npz",
]
