"""deepeprop: online training of deep recurrent and spiking networks with deep e-prop."""
from .api import gradients, loss_and_gradients
from .engines import ENGINES, Engine, EngineState, make_engine
from .engines import BPTT, RTRL, DeepEProp, EProp  # noqa: F401  (the engine classes)
from .losses import LOSSES, CrossEntropy, MSE, make_loss
from .network import DeepRNN, Layer
from .neurons import ALIF, LIF, NEURONS, Integrator, LeakyRate
from .online import LearnerState, OnlineLearner
from .tasks import TASKS, Batch, Task, get_task

__version__ = "0.1.0"

__all__ = [
    "gradients", "loss_and_gradients", "DeepRNN", "Layer",
    "BPTT", "RTRL", "EProp", "DeepEProp", "Engine", "EngineState", "ENGINES", "make_engine",
    "LOSSES", "MSE", "CrossEntropy", "make_loss",
    "ALIF", "LIF", "LeakyRate", "Integrator", "NEURONS",
    "OnlineLearner", "LearnerState", "TASKS", "Task", "Batch", "get_task",
]
