"""Neuron models: one file per model, each a pure step function with a declared per-neuron state."""
from .alif import ALIF
from .base import (SURROGATES, AbstractNeuron, NeuronModel, check_neuron, shared_constant_leak,
                   spike_fn)
from .integrator import Integrator
from .leaky import LeakyRate
from .lif import LIF

# Names accepted wherever a neuron model is asked for (``DeepRNN(neuron="lif")``, ``--neuron lif``).
NEURONS = {"leaky": LeakyRate, "lif": LIF, "alif": ALIF}

__all__ = ["ALIF", "LIF", "LeakyRate", "Integrator", "AbstractNeuron", "NeuronModel", "NEURONS", "SURROGATES",
           "check_neuron", "shared_constant_leak", "spike_fn"]
