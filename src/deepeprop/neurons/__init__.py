"""Neuron models: one file per model, each a pure step function with a declared per-neuron state."""
from ..registry import Registry
from .alif import ALIF, bellec_beta
from .base import (SURROGATES, AbstractNeuron, NeuronModel, check_neuron, has_reset_choice, shared_constant_leak,
                   spike_fn, takes_dtype, with_detach_reset)
from .instantaneous import GELU, AbstractInstantaneous, Identity, ReLU, Tanh
from .integrator import Integrator
from .leaky import LeakyRate
from .lif import LIF
from .lru import LRU
from .mingru import MinGRU

# Names accepted wherever a neuron model is asked for (``DeepRNN(neuron="lif")``, ``--neuron lif``).
# NEURONS.register(MyNeuron, name="mine") adds one (deepeprop.registry)
NEURONS = Registry("neuron model", {"leaky": LeakyRate, "lif": LIF, "alif": ALIF, "lru": LRU, "mingru": MinGRU,
                                    "gelu": GELU, "relu": ReLU, "tanh": Tanh, "identity": Identity})

__all__ = ["ALIF", "bellec_beta", "LIF", "LeakyRate", "Integrator", "LRU", "MinGRU", "GELU", "ReLU", "Tanh", "Identity",
           "AbstractNeuron", "AbstractInstantaneous", "NeuronModel", "NEURONS", "SURROGATES",
           "check_neuron", "has_reset_choice", "shared_constant_leak", "spike_fn", "takes_dtype", "with_detach_reset"]
