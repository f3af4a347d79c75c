"""A trained network in model units, as plain numpy: the hand-off from the model half to the hardware half.

The model side produces it (``SpikingRegressor.to_spec()``); the hardware side maps it onto a
circuit (``mtc_analog.hardware``) without importing torch modules. Everything is in model units:
voltages in V_s, time in t_u, currents in I_u.

Network semantics (time-major, one input sample held for ``substeps`` neuron steps of ``dt``):

    I_1      = layers[0].weight @ x + layers[0].bias          (input projection, x in z-scored units)
    s_l      = transduce(MTC_l(I_l))                           (graded, in [0, 1])
    I_{l+1}  = layers[l+1].weight @ s_l + layers[l+1].bias
    y_0      = readout.weight @ s_L + readout.bias
    tau_lp * dy_k/dt = y_{k-1} - y_k,  k = 1..order            (prediction = y_order)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .neuron.equations import MTCParameters
from .neuron.step import Transduction


@dataclass
class NeuronLayerSpec:
    """One hidden layer of MTC neurons and the weights that feed it."""

    params: MTCParameters  #: fields are numpy arrays of shape (N,)
    weight: np.ndarray  #: (N, n_prev): I_in = weight @ prev + bias   [I_u per unit of prev]
    bias: np.ndarray  #: (N,)  [I_u]
    transduction: Transduction = field(default_factory=Transduction)
    filter: str = "linear"  #: "linear" | "ota" follower-integrators

    @property
    def size(self) -> int:
        return int(self.weight.shape[0])


@dataclass
class ReadoutSpec:
    """Linear readout of the last hidden layer into a cascade of first-order low-pass filters."""

    weight: np.ndarray  #: (n_out, N)
    bias: np.ndarray  #: (n_out,)
    lowpass_tau: float  #: time constant of each stage [t_u]
    lowpass_order: int = 4


@dataclass
class NetworkSpec:
    """A feedforward MTC network in model units."""

    n_in: int
    layers: list[NeuronLayerSpec]
    readout: ReadoutSpec
    dt: float  #: model step [t_u]
    substeps: int = 1  #: neuron steps per input sample
    method: str = "euler"  #: "euler" | "exact" (how the model integrates; the circuit is continuous)

    @property
    def sample_period(self) -> float:
        """Duration of one input sample [t_u]."""
        return self.dt * self.substeps
