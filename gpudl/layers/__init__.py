"""gpudl's layers (Keras-style): ``from gpudl import layers``."""
from .activation import Activation, LeakyReLU, Maxout, PReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import InputSpec, Layer, get_layer_class
from .core import Dense, Dropout, Flatten

__all__ = [
    "Layer", "InputSpec", "get_layer_class", "Dense", "Dropout", "Flatten", "ReLU", "LeakyReLU",
    "PReLU", "Sigmoid", "Tanh", "Softmax", "Maxout", "Activation",
]
from .recurrent import Bidirectional, GRU, LSTM, SimpleRNN, TimeDistributed
from .conv import Conv2D
from .pooling import AvgPool2D, MaxPool2D
from .deep import Highway, Residual
