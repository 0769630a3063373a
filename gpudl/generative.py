"""Lecture III's generative pieces: the noise layer of a denoising auto-encoder, the
reparameterised sampling layer of a VAE (with its KL term), the VAE's loss in nats per
image, the model that checks its pixels, and PCA as the auto-encoder's baseline."""
from __future__ import annotations

import numbers

import numpy as np

from . import backend
from . import random as grandom
from .autograd import Tensor
from .layers.base import Layer
from .losses import BinaryCrossentropy
from .models import Model
from .serialization import register_serializable

__all__ = ["GaussianNoise", "Sampling", "SummedBinaryCrossentropy", "VariationalAutoencoder",
           "check_unit_interval", "pca_fit", "pca_reconstruct", "reconstruction_error"]


def _standard_normal(like, shape):
    """N(0, 1) draws of ``shape`` in ``like``'s dtype, on its backend: from gpudl's shared
    generator on NumPy (so ``gpudl.set_seed`` repeats them), from CuPy's own on the GPU (no
    host-to-device copy per step)."""
    xp = backend.get_array_module(like)
    if xp is np:
        dtype = like.dtype if like.dtype in (np.float32, np.float64) else np.float64
        return grandom.get_rng().standard_normal(shape, dtype=dtype)
    return xp.random.standard_normal(shape, dtype=like.dtype)


class GaussianNoise(Layer):
    """Adds N(0, stddev^2) noise while training; the identity at inference (Keras'
    ``GaussianNoise``): the corruption of a denoising auto-encoder."""

    supports_masking = True

    def __init__(self, stddev, seed=None, name=None):
        super().__init__(name)
        if isinstance(stddev, bool) or not isinstance(stddev, numbers.Real) or not stddev >= 0:
            raise ValueError(f"GaussianNoise expected stddev >= 0, got {stddev!r}")
        self.stddev = float(stddev)
        self.seed = seed  # Keras' signature; the draws come from gpudl's generator (gpudl.set_seed)

    def forward(self, x):
        if not self.training or self.stddev == 0.0:
            return x
        noise = _standard_normal(x.data, x.shape) * self.stddev
        return x + Tensor._wrap(noise.astype(x.dtype, copy=False))

    def get_config(self):
        return {"name": self.name, "stddev": self.stddev, "seed": self.seed}


class Sampling(Layer):
    """``z = mean + exp(log_var / 2) * eps``, eps ~ N(0, 1): the reparameterisation trick
    (Kingma and Welling), called on ``[z_mean, z_log_var]``. It samples in training and at
    inference alike (as Keras' and PyTorch's VAE examples do), so a test loss is the same
    estimate as the training loss.

    With ``kl_weight`` > 0 it adds ``kl_weight * KL(q(z|x) || N(0, I))`` through ``add_loss``:
    -0.5 * sum(1 + log_var - mean^2 - exp(log_var)) over the latent axis, averaged over the
    batch (nats per sample, beside a reconstruction loss summed over pixels).

    ``layer([mean, log_var], eps=array)`` uses the given noise (a fixed draw for a gradient
    check or a latent walk).
    """

    def __init__(self, kl_weight=1.0, name=None):
        super().__init__(name)
        if isinstance(kl_weight, bool) or not isinstance(kl_weight, numbers.Real) or not kl_weight >= 0:
            raise ValueError(f"Sampling expected kl_weight >= 0, got {kl_weight!r}")
        self.kl_weight = float(kl_weight)

    def __call__(self, inputs, eps=None):
        # two inputs, as the merge layers take them; nothing to build
        self.built = True
        return self.forward(inputs, eps=eps)

    def forward(self, inputs, eps=None):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(f"{self.describe()} expected [z_mean, z_log_var], got {type(inputs).__name__}"
                             f"{'' if not isinstance(inputs, (list, tuple)) else f' of {len(inputs)}'}")
        mean, log_var = (v if isinstance(v, Tensor) else Tensor._wrap(v) for v in inputs)
        if mean.shape != log_var.shape:
            raise ValueError(f"{self.describe()} expected z_mean and z_log_var of the same shape, got "
                             f"{mean.shape} and {log_var.shape}")
        if eps is None:
            eps = _standard_normal(mean.data, mean.shape)
        eps = backend.get_array_module(mean.data).asarray(backend.to_backend(eps, backend.backend_of(mean.data)),
                                                           dtype=mean.dtype)
        if tuple(eps.shape) != tuple(mean.shape):
            raise ValueError(f"{self.describe()} expected eps of shape {mean.shape}, got {tuple(eps.shape)}")
        if self.kl_weight:
            self.add_loss(kl_divergence(mean, log_var) * self.kl_weight)
        return mean + (log_var * 0.5).exp() * Tensor._wrap(eps)

    def get_config(self):
        return {"name": self.name, "kl_weight": self.kl_weight}


def kl_divergence(mean, log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)), summed over the last axis, averaged over the rest."""
    per_sample = (log_var - mean * mean - log_var.exp() + 1.0).sum(axis=-1) * -0.5
    return per_sample.mean()


@register_serializable(package="gpudl")
class SummedBinaryCrossentropy(BinaryCrossentropy):
    """Binary cross entropy summed over the last axis (pixels), averaged over the batch: nats
    per image, the reconstruction term of the VAE's bound."""

    _over_last = "sum"

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name="summed_binary_crossentropy"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)

    def get_config(self):
        return {k: v for k, v in super().get_config().items() if k not in ("label_smoothing", "axis")}


def check_unit_interval(x, where):
    """Raise ValueError unless every value of ``x`` lies in [0, 1] (what binary cross
    entropy reads as a pixel's probability). One host read: a check at the boundary."""
    if x is None:
        return
    a = x.data if isinstance(x, Tensor) else x
    if isinstance(a, (list, tuple)):
        for v in a:
            check_unit_interval(v, where)
        return
    if not (isinstance(a, np.ndarray) or backend.is_cupy_array(a)):
        return  # a data pipeline (gpudl.data, a generator): reading it here would consume it
    if a.size == 0:
        return
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{where} expected pixels as numbers in [0, 1], got dtype {a.dtype}")
    lo, hi = float(a.min()), float(a.max())
    if not (0.0 <= lo and hi <= 1.0):
        raise ValueError(f"{where} expected pixels in [0, 1] (binary cross entropy reads each as a "
                         f"probability; divide uint8 images by 255), got values in [{lo:g}, {hi:g}]")


@register_serializable(package="gpudl")
class VariationalAutoencoder(Model):
    """A functional Model whose ``fit`` / ``evaluate`` / ``train_on_batch`` /
    ``test_on_batch`` first check that the images (and targets) are in [0, 1], as its binary
    cross entropy needs. ``y`` defaults to ``x`` (it reconstructs its input)."""

    def fit(self, x=None, y=None, *args, **kwargs):
        check_unit_interval(x, f"{self.describe()}.fit")
        check_unit_interval(y, f"{self.describe()}.fit")
        validation = kwargs.get("validation_data")
        if validation is not None:
            check_unit_interval(list(validation), f"{self.describe()}.fit validation_data")
        return super().fit(x, x if y is None else y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        check_unit_interval(x, f"{self.describe()}.evaluate")
        check_unit_interval(y, f"{self.describe()}.evaluate")
        return super().evaluate(x, x if y is None else y, *args, **kwargs)

    def train_on_batch(self, x, y=None, *args, **kwargs):
        check_unit_interval(x, f"{self.describe()}.train_on_batch")
        check_unit_interval(y, f"{self.describe()}.train_on_batch")
        return super().train_on_batch(x, x if y is None else y, *args, **kwargs)

    def test_on_batch(self, x, y=None, *args, **kwargs):
        check_unit_interval(x, f"{self.describe()}.test_on_batch")
        check_unit_interval(y, f"{self.describe()}.test_on_batch")
        return super().test_on_batch(x, x if y is None else y, *args, **kwargs)


# ---- PCA, the linear auto-encoder the deep one is measured against ----------------------------

def pca_fit(x, k):
    """(mean, components (k, D)) of the rows of ``x`` (N, D) by NumPy's SVD of the centred
    data: the k-dimensional linear code with the least squared reconstruction error."""
    x = np.asarray(backend.to_numpy(x), dtype=np.float64).reshape(len(x), -1)
    if not isinstance(k, numbers.Integral) or not 1 <= k <= min(x.shape):
        raise ValueError(f"pca_fit expected 1 <= k <= {min(x.shape)} (samples, features), got {k!r}")
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:k]


def pca_reconstruct(x, mean, components):
    """(codes (N, k), reconstructions (N, D)) of ``x`` through the PCA basis."""
    x = np.asarray(backend.to_numpy(x), dtype=np.float64).reshape(len(x), -1)
    codes = (x - mean) @ components.T
    return codes, codes @ components + mean


def reconstruction_error(x, x_hat):
    """Mean over images of the squared error summed over pixels (Hinton and Salakhutdinov's
    figure, pixels in [0, 1])."""
    x = np.asarray(backend.to_numpy(x), dtype=np.float64).reshape(len(x), -1)
    x_hat = np.asarray(backend.to_numpy(x_hat), dtype=np.float64).reshape(len(x_hat), -1)
    if x.shape != x_hat.shape:
        raise ValueError(f"reconstruction_error expected two arrays of the same shape, got {x.shape} "
                         f"and {x_hat.shape}")
    return float(((x - x_hat) ** 2).sum(axis=1).mean())
