"""deepeprop: online training of deep recurrent and spiking networks with deep e-prop."""
from .api import gradients, loss_and_gradients
from .engines import ENGINES, Engine, EngineState, make_engine
from .engines import EVALUATIONS, Chunked, Evaluation, Reverse, Step, make_evaluation, with_evaluation
from .engines import BPTT, RTRL, DeepEProp, EProp, FactoredDeepEProp, Immediate  # noqa: F401  (the engine classes)
from .losses import LOSSES, CrossEntropy, MSE, make_loss
from .graph import Graph
from .builders import DeepRNN, LayerSpec, build_network
from .network import Edge, Network, Node
from .nir_io import from_nir, to_nir
from .neurons import (ALIF, GELU, LIF, LRU, NEURONS, AbstractInstantaneous, AbstractNeuron, Identity, Integrator,
                      LeakyRate, MinGRU, ReLU, Tanh, bellec_beta, check_neuron, spike_fn)
from .online import LearnerState, OnlineLearner
from .regularization import REGULARIZATIONS, RateRegularization, RunningRateRegularization
from . import network, parallel  # noqa: F401  (dp.parallel: data-parallel helpers; network: the renamed names)
from .tasks import TASKS, Batch, Task, get_task
from .version import __version__  # noqa: F401  (one source: the package metadata)



def __getattr__(name: str):
    """Deprecated names (``Layer``, ``Projection``), for user code written before the rename."""
    return network.renamed(name, __name__)



__all__ = [
    "gradients", "loss_and_gradients", "DeepRNN", "Network", "build_network", "LayerSpec", "Node", "Edge",
    "Graph", "BPTT", "RTRL", "EProp", "DeepEProp", "FactoredDeepEProp", "Immediate", "Engine", "EngineState",
    "ENGINES", "make_engine", "EVALUATIONS", "Evaluation", "Step", "Chunked", "Reverse", "make_evaluation",
    "with_evaluation",
    "LOSSES", "MSE", "CrossEntropy", "make_loss",
    "ALIF", "LIF", "LeakyRate", "Integrator", "LRU", "MinGRU", "GELU", "ReLU", "Tanh", "Identity", "AbstractNeuron",
    "AbstractInstantaneous", "NEURONS", "bellec_beta", "check_neuron", "spike_fn",
    "OnlineLearner", "LearnerState", "RateRegularization", "RunningRateRegularization", "REGULARIZATIONS",
    "TASKS", "Task", "Batch", "get_task", "to_nir", "from_nir",
]
