"""Netlists and ngspice: circuit targets, the netlist builder, the simulation runner, waveforms, export.

    netlist = build_network_netlist(circuit, x)          # NetworkCircuit + input samples -> Netlist
    text = netlist.render()                              # stand-alone .cir (ngspice -b)
    waves = run_transient(netlist)                       # PySpice shared mode, in a worker process
    waves, nodes = simulate_network(circuit, x, max_neurons=64)   # big layers split across processes
    model = waves.to_model_units(mapping)                # back to V_s / t_u / s / y
    export_network(circuit, x, out_dir)                  # DIR/network.cir + DIR/mapping.json
    simulate_protocols([NeuronSetup(params, StepProtocol(i0, i1))], target)   # single neurons

Targets are sibling modules (:mod:`.behavioral` now; a transistor-level one later) implementing
:class:`.target.CircuitTarget`.
"""

import importlib
from typing import Any

#: Public names -> submodule (imported on first use, so a simulation worker that only needs
#: ``mtc_analog.spice._worker`` does not pay for torch through the builder).
_EXPORTS = {
    "build_network_netlist": "builder", "build_neuron_netlist": "builder", "build_readout_netlist": "builder",
    "step_current": "builder", "Netlist": "netlist", "RETRY_POLICY": "runner", "SimulationJob": "runner",
    "check_simulator": "runner", "run_jobs": "runner", "run_standalone": "runner", "run_transient": "runner",
    "CircuitTarget": "target", "get_target": "target", "Waveforms": "waveforms", "load_npz": "waveforms",
    "read_rawfile": "waveforms", "save_npz": "waveforms",
    "export_network": "export", "export_neuron": "export", "load_neuron_setup": "export",
    "simulate_network": "split", "simulate_network_split": "split",
    "NeuronSetup": "protocol", "StepProtocol": "protocol", "simulate_protocols": "protocol",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
