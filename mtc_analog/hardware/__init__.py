"""Hardware side: the target (process, units, limits), model <-> circuit mapping, range checks, mismatch.

    target = load_target("behavioral")            # or HardwareTarget(i_unit=2e-9, ...) / a YAML file
    circuit = map_network(spec, target)           # NetworkSpec (model units) -> NetworkCircuit (SI)
    circuit, changes = enforce_ranges(circuit, target, clip=False)   # HardwareRangeError lists all
    spec_back = unmap_network(circuit)            # exact inverse
    monte_carlo = apply_mismatch(circuit, sigma_rel=0.05, seed=0)
"""

from .mapping import (
    FilterCircuit,
    LayerCircuit,
    NetworkCircuit,
    NeuronCircuit,
    NeuronModel,
    OTAElementCircuit,
    ReadoutCircuit,
    TransductionCircuit,
    filter_capacitance,
    map_network,
    map_neuron,
    unmap_network,
    unmap_neuron,
)
from .mismatch import apply_mismatch
from .ranges import RangeChange, RangeViolation, check_ranges, enforce_ranges
from .target import HardwareTarget, available_targets, load_target

__all__ = [
    "FilterCircuit", "LayerCircuit", "NetworkCircuit", "NeuronCircuit", "NeuronModel", "OTAElementCircuit",
    "ReadoutCircuit", "TransductionCircuit", "filter_capacitance", "map_network", "map_neuron",
    "unmap_network", "unmap_neuron", "HardwareTarget", "available_targets", "load_target",
    "RangeChange", "RangeViolation", "check_ranges", "enforce_ranges", "apply_mismatch",
]
