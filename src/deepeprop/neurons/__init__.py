"""Neuron models: one file per model, each a pure step function with a declared per-neuron state."""
from .alif import ALIF
from .base import SURROGATES, NeuronModel, spike_fn
from .integrator import Integrator
from .leaky import LeakyRate
from .lif import LIF

NEURONS = {"leaky": LeakyRate, "lif": LIF, "alif": ALIF}

__all__ = ["ALIF", "LIF", "LeakyRate", "Integrator", "NeuronModel", "NEURONS", "SURROGATES", "spike_fn"]
