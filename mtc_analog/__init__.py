"""mtc_analog: analog-circuit co-design of multi-timescale conductance (MTC) spiking networks.

Data flow: model (``neuron``, ``baselines``, ``network``) -> ``tasks`` / ``training`` ->
``hardware`` (model <-> circuit mapping) -> ``spice`` (netlists, simulation) -> ``validation``.
"""

__version__ = "0.1.0"
