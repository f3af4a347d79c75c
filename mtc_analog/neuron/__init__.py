"""The MTC neuron: equations (single source of truth), discrete step, layer, regimes, I-V curves."""

from .equations import ELEMENTS, MTCParameters, MTCState, rhs, total_current
from .layer import MTCLayer
from .step import Transduction, mtc_rollout, mtc_step, transduce

__all__ = [
    "ELEMENTS", "MTCParameters", "MTCState", "rhs", "total_current",
    "MTCLayer", "Transduction", "mtc_rollout", "mtc_step", "transduce",
]
