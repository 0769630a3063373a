"""gpudl's functional API (PyTorch-style): ``from gpudl import functional as F``."""
from .activation import leaky_relu, log_softmax, maxout, prelu, relu, sigmoid, softmax, tanh
from .conv import conv1d, conv2d, conv_transpose2d
from .dropout import dropout
from .linear import linear
from .loss import (binary_cross_entropy, categorical_crossentropy, hinge, huber_loss, kl_divergence,
                   mean_absolute_error, mean_squared_error, sigmoid_binary_cross_entropy,
                   softmax_cross_entropy)
from .negative_sampling import negative_sampling_loss
from .normalization import batch_norm, layer_norm
from .pooling import avg_pool2d, max_pool2d
from .recurrent import gru_cell, gru_sequence, lstm_cell, lstm_sequence, simple_rnn_cell, unstack
from .shape import flatten

__all__ = [
    "linear", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "maxout", "softmax", "log_softmax",
    "softmax_cross_entropy", "mean_squared_error", "categorical_crossentropy", "binary_cross_entropy",
    "sigmoid_binary_cross_entropy", "mean_absolute_error", "huber_loss", "hinge", "kl_divergence",
    "dropout", "flatten",
    "conv2d", "conv1d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "simple_rnn_cell", "lstm_cell", "lstm_sequence", "gru_cell", "gru_sequence", "unstack",
    "batch_norm", "layer_norm", "negative_sampling_loss",
]
