"""gpudl's layers (Keras-style): ``from gpudl import layers``."""
from .activation import Activation, LeakyReLU, Maxout, PReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import InputSpec, Layer, get_layer_class
from .conv import Conv1D, Conv2D, Conv2DTranspose
from .core import Dense, Dropout, Flatten
from .deep import Highway, Residual
from .embedding import Embedding
from .masking import Masking
from .merge import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from .normalization import BatchNormalization, LayerNormalization
from .pooling import AveragePooling2D, AvgPool2D, MaxPool2D, MaxPooling2D
from .recurrent import GRU, LSTM, Bidirectional, SimpleRNN, TimeDistributed
from .reshaping import GlobalAveragePooling2D, GlobalMaxPooling2D, Permute, Reshape, UpSampling2D

__all__ = [
    "Layer", "InputSpec", "get_layer_class", "Dense", "Dropout", "Flatten", "ReLU", "LeakyReLU",
    "PReLU", "Sigmoid", "Tanh", "Softmax", "Maxout", "Activation", "Conv2D", "MaxPool2D", "AvgPool2D",
    "MaxPooling2D", "AveragePooling2D",
    "Highway", "Residual", "SimpleRNN", "LSTM", "GRU", "Bidirectional", "TimeDistributed",
    "BatchNormalization", "LayerNormalization", "Embedding", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "UpSampling2D", "Reshape", "Permute", "Conv1D", "Conv2DTranspose", "Masking",
    "Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "GaussianNoise", "Sampling",
]
from ..generative import GaussianNoise, Sampling  # noqa: E402 (generative builds on the layers above)
