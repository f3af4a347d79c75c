"""Baseline spiking neurons (LIF, SE-adLIF) with surrogate gradients, same layer interface as MTCLayer."""

from .adlif import AdLIFLayer
from .lif import LIFLayer, SpikingRecord, lif_step
from .surrogates import ATanSpike, SLAYERSpike, atan_spike, slayer_spike

__all__ = ["AdLIFLayer", "LIFLayer", "SpikingRecord", "lif_step", "ATanSpike", "SLAYERSpike", "atan_spike", "slayer_spike"]
