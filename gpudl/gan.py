"""Lecture III's generative adversarial network (Goodfellow et al. 2014): a generator that maps
noise to images and a discriminator that tells them from real ones, trained against each other
with two optimizers.

The loop is Keras' classic DCGAN recipe written on gpudl's low-level API: each iteration is
one ``train_step`` of the discriminator on real images (label 1) beside generated ones
(label 0), then one ``train_step`` of the adversarial model (generator -> discriminator) on
fresh noise labelled "real", with the discriminator frozen so only the generator moves.

Freezing, and how it differs from Keras: gpudl reads ``trainable`` at every step, where Keras
fixes it when a model is compiled. The Keras recipe (compile the discriminator, set
``discriminator.trainable = False``, compile the adversarial model, then call both
``train_on_batch``) would therefore train no discriminator here. This loop freezes the
discriminator only around the generator's step, which is right under either reading.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import warnings

import numpy as np

from . import activations, backend
from . import optimizers as optim
from . import random as grandom
from .autograd import Tensor, no_grad
from .callbacks import CallbackList, History
from .functional._threads import loop_scope

__all__ = ["GAN", "OUTPUT_RANGES", "check_image_range"]

#: the generator's last activation -> the range of its images (what real images must share)
OUTPUT_RANGES = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}


def _positive_int(what, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{what} expected a positive integer, got {v!r}")
    return int(v)


def _is_array(a):
    return isinstance(a, np.ndarray) or backend.is_cupy_array(a)


def check_image_range(x, low, high, where):
    """Raise ValueError unless every value of ``x`` lies in [low, high] (the generator's
    output range: a discriminator shown real images on another scale tells them apart by
    scale alone). One host read: a check at the boundary."""
    if x.size == 0:
        return
    lo, hi = float(x.min()), float(x.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{where} expected finite pixel values, got NaN or infinite entries")
    unit, signed = (low, high) == (0.0, 1.0), (low, high) == (-1.0, 1.0)
    if lo < low or hi > high:
        hint = ""
        if lo >= 0.0 and 1.0 < hi <= 255.0 and unit:
            hint = " (divide uint8 images by 255)"
        elif lo >= 0.0 and 1.0 < hi <= 255.0 and signed:
            hint = " (map uint8 images with x / 127.5 - 1)"
        elif unit and lo >= -1.0 and hi <= 1.0:
            hint = " (map [-1, 1] images with (x + 1) / 2)"
        raise ValueError(f"{where} expected pixels in [{low:g}, {high:g}], the generator's output range"
                         f"{hint}, got values in [{lo:g}, {hi:g}]")
    if signed and lo >= 0.0:
        # legal values, but real images on half the scale the generator spans: a discriminator
        # wins by telling the scales apart
        warnings.warn(f"{where}: images in [{lo:g}, {hi:g}] use only the upper half of the generator's "
                      "[-1, 1]; map [0, 1] images with x * 2 - 1", UserWarning, stacklevel=3)


def _last_activation(model):
    """(name of the activation a model's output passes through last, or None when it cannot be
    told; that last layer), looking inside nested models."""
    from .layers.activation import Sigmoid, Tanh
    layer = model
    while getattr(layer, "layers", None):
        layer = layer.layers[-1]
    if isinstance(layer, Sigmoid):
        return "sigmoid", layer
    if isinstance(layer, Tanh):
        return "tanh", layer
    if not hasattr(layer, "activation"):
        return None, layer
    return activations.name_of(layer.activation), layer


def _walk(layer):
    """The layer and every layer inside it, parents before children."""
    yield layer
    for sub in layer.sublayers():
        yield from _walk(sub)


@contextlib.contextmanager
def _frozen(model):
    """``model.trainable = False`` for the block, and its parameters' gradients switched off:
    gpudl would otherwise differentiate a frozen model's weights too (work thrown away, and
    gradients left on them), where only the gradient through it is needed. Each layer's own
    flag comes back afterwards (the setter recurses, so a layer frozen inside stays frozen)."""
    flags = [(layer, layer.trainable) for layer in _walk(model)]
    switched = []
    model.trainable = False
    for p in model.params():
        if p.requires_grad:
            p.requires_grad = False
            switched.append(p)
    try:
        yield
    finally:
        for p in switched:
            p.requires_grad = True
        for layer, flag in flags:  # parents first: a child's own flag is set after its parent's
            layer.trainable = flag


class GAN:
    """A generator and a discriminator trained adversarially (``gpudl.recipes.gan`` builds the
    DCGAN pair).

    ``generator``: a gpudl model from (N, latent_dim) noise to (N, C, H, W) images whose last
    activation is "sigmoid" (images in [0, 1]) or "tanh" ([-1, 1]); ``discriminator``: a model
    from those images to (N, 1) probabilities of being real (a last sigmoid: binary cross
    entropy runs fused on its logits). ``adversarial`` is the two in sequence, the model the
    generator trains through.

    ``output_range``: the (low, high) of the generator's images, read from its last
    activation when None. ``compile(d_optimizer, g_optimizer)``, then ``fit(x, epochs,
    batch_size)`` -> a History with per-epoch ``d_loss``, ``g_loss`` and ``d_accuracy`` (the
    discriminator's accuracy on each batch of real and generated images, before its update);
    ``sample(n)`` draws images.

    Seeded by ``gpudl.set_seed``: noise, shuffles and dropout all come from gpudl's generator,
    so a seed repeats a run exactly within a process; in another process too under
    ``gpudl.set_deterministic(True)`` (otherwise the convolution algorithm is chosen by timing,
    and another choice rounds differently).
    """

    def __init__(self, generator, discriminator, output_range=None, name="gan"):
        from .models import Model, Sequential
        for what, m in (("generator", generator), ("discriminator", discriminator)):
            if not isinstance(m, Model):
                raise TypeError(f"GAN expected a gpudl model as the {what}, got {type(m).__name__}")
        if generator is discriminator:
            raise ValueError("GAN expected two different models as generator and discriminator, got one model twice")
        for what, m in (("generator", generator), ("discriminator", discriminator)):
            if not m.built:
                if m.input_shape is None:
                    raise ValueError(f"GAN: the {what} {m.describe()} has no input shape: give it input_shape=")
                m.build()
        zshape = tuple(generator.input_shape)
        if len(zshape) != 1:
            raise ValueError(f"GAN expected a generator taking (N, latent_dim) noise, got input shape "
                             f"(N, {', '.join(map(str, zshape))})")
        self.latent_dim = zshape[0]
        self.image_shape = tuple(generator.output_shape)
        if len(self.image_shape) != 3:
            raise ValueError(f"GAN expected a generator making (N, C, H, W) images, got output shape "
                             f"(N, {', '.join(map(str, self.image_shape))})")
        if tuple(discriminator.input_shape) != self.image_shape:
            raise ValueError(f"GAN: the discriminator takes input shape (N, "
                             f"{', '.join(map(str, discriminator.input_shape))}) but the generator makes "
                             f"(N, {', '.join(map(str, self.image_shape))})")
        if tuple(discriminator.output_shape) != (1,):
            raise ValueError(f"GAN expected a discriminator with one output (N, 1), got output shape "
                             f"(N, {', '.join(map(str, discriminator.output_shape))})")
        if output_range is None:
            act, last = _last_activation(generator)
            if act not in OUTPUT_RANGES:
                got = f"{act!r}" if act is not None else f"a last layer {last.describe()} without an activation"
                raise ValueError(f"GAN expected a generator ending in {' or '.join(map(repr, OUTPUT_RANGES))} (its "
                                 f"images' range), got {got}: pass output_range=(low, high) for another")
            output_range = OUTPUT_RANGES[act]
        try:
            low, high = (float(v) for v in output_range)
        except (TypeError, ValueError):
            raise ValueError(f"GAN expected output_range (low, high), got {output_range!r}") from None
        if not low < high:
            raise ValueError(f"GAN expected output_range (low, high) with low < high, got {output_range!r}")
        self.output_range = (low, high)
        self.generator, self.discriminator, self.name = generator, discriminator, name
        self.adversarial = Sequential([generator, discriminator], input_shape=(self.latent_dim,),
                                      name=f"{name}_adversarial")
        self.adversarial.build()
        self.stop_training = False
        self.history = None

    def __repr__(self):
        return (f"GAN(name={self.name!r}, latent_dim={self.latent_dim}, image_shape={self.image_shape}, "
                f"output_range={self.output_range})")

    def describe(self) -> str:
        return f"GAN '{self.name}'"

    # ---- compile ------------------------------------------------------------------------
    def compile(self, d_optimizer=None, g_optimizer=None):
        """The two optimizers (instances or names); each defaults to Radford et al.'s
        Adam(learning_rate=2e-4, beta_1=0.5). Both models' loss is binary cross entropy."""
        d_opt = optim.Adam(2e-4, beta_1=0.5) if d_optimizer is None else optim.get(d_optimizer)
        g_opt = optim.Adam(2e-4, beta_1=0.5) if g_optimizer is None else optim.get(g_optimizer)
        if d_opt is g_opt:
            raise ValueError(f"{self.describe()}.compile expected two optimizer objects (one per model: each "
                             "counts its own steps), got the same one twice")
        for what, m in (("discriminator", self.discriminator), ("generator", self.generator)):
            if not m.trainable_params():
                # gpudl reads ``trainable`` at each step (Keras: at compile), so a model frozen
                # now stays frozen in its own step too
                warnings.warn(f"{self.describe()}.compile: the {what} has no trainable parameters (was "
                              f"{what}.trainable set to False?): it will not learn", UserWarning, stacklevel=2)
        self.discriminator.compile(d_opt, "binary_crossentropy", ["accuracy"])
        self.adversarial.compile(g_opt, "binary_crossentropy")
        return self

    @property
    def d_optimizer(self):
        return self.discriminator.optimizer

    @property
    def g_optimizer(self):
        return self.adversarial.optimizer

    def _require_compiled(self, what):
        if self.discriminator.optimizer is None or self.adversarial.optimizer is None:
            raise RuntimeError(f"{self.describe()}: call compile() before {what}")

    # ---- data at the boundary -------------------------------------------------------------
    def _on_device(self):
        first = next(iter(self.generator.params()), None)
        return first is not None and backend.is_cupy_array(first.data)

    def _xp(self):
        return backend.get_array_module(self.generator.params()[0].data)

    def _dtype(self):
        return np.dtype(self.generator.params()[0].dtype)

    def check_images(self, x, what):
        """``x`` as (N, C, H, W) float images on the models' device, after checking its type,
        rank, shape and range (ValueError/TypeError naming what was expected and what came)."""
        if isinstance(x, Tensor):
            x = x.data
        if not _is_array(x):
            raise TypeError(f"{what} expected images as a NumPy or CuPy array, got {type(x).__name__}")
        if x.dtype.kind not in "fiu":
            raise TypeError(f"{what} expected images as numbers, got dtype {x.dtype}")
        shape = f"(N, {', '.join(map(str, self.image_shape))})"
        if x.ndim != 4:
            hint = ""
            if x.ndim in (2, 3) and math.prod(x.shape[1:]) == math.prod(self.image_shape):
                hint = f"; reshape them with x.reshape(-1, {', '.join(map(str, self.image_shape))})"
            raise ValueError(f"{what} expected images of rank 4 {shape}, got rank {x.ndim} shape "
                             f"{tuple(x.shape)}{hint}")
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"{what} expected images of shape {shape} (what the generator makes), got "
                             f"{tuple(x.shape)}")
        if len(x) == 0:
            raise ValueError(f"{what} expected at least one image, got an empty array of shape {tuple(x.shape)}")
        check_image_range(x, *self.output_range, what)
        x = backend.to_backend(x, "cupy" if self._on_device() else "numpy")
        return x.astype(self._dtype(), copy=False)

    def _noise(self, n):
        # drawn on the host from gpudl's generator: the same seed gives the same noise on
        # either backend (a (batch, latent_dim) copy per step is small beside the step)
        z = grandom.get_rng().standard_normal((n, self.latent_dim), dtype=np.float32)
        z = z.astype(self._dtype(), copy=False)
        return backend.to_backend(z, "cupy") if self._on_device() else z

    # ---- the step -----------------------------------------------------------------------
    def _step(self, real):
        """One iteration on a batch of real images already checked and on the device: the
        discriminator's update, then the generator's. Returns the two losses (0-d arrays,
        before each update) and the discriminator's Prediction; reads nothing to the host."""
        xp = backend.get_array_module(real)
        m, dt = len(real), real.dtype
        g, d = self.generator, self.discriminator
        # fakes as the generator makes them while training (batch statistics), without a graph
        g.train(True)
        with no_grad():
            fake = g(Tensor._wrap(self._noise(m))).data
        xd = xp.concatenate([real, fake.astype(dt, copy=False)])
        yd = xp.concatenate([xp.ones((m, 1), dtype=dt), xp.zeros((m, 1), dtype=dt)])
        with grandom.training_step(d.optimizer.iterations):
            d_loss, d_pred, _ = d.train_step((xd, yd, None))
        # the generator learns to make the discriminator say "real" (the non-saturating loss)
        with _frozen(d), grandom.training_step(self.adversarial.optimizer.iterations):
            g_loss, _, _ = self.adversarial.train_step((self._noise(m), xp.ones((m, 1), dtype=dt), None))
        return d_loss, g_loss, d_pred, yd

    def train_on_batch(self, x, return_dict=True):
        """One iteration on the real images ``x``: ``{"d_loss", "g_loss", "d_accuracy"}``
        (losses before the updates; accuracy of the discriminator on ``x`` and as many fakes)."""
        self._require_compiled("train_on_batch")
        x = self.check_images(x, f"{self.describe()}.train_on_batch")
        if len(x) < 2:
            raise ValueError(f"{self.describe()}.train_on_batch expected at least 2 images (batch statistics), got 1")
        d_loss, g_loss, pred, yd = self._step(x)
        self.discriminator.compiled_metrics.reset()
        self.discriminator.compiled_metrics.update(yd, pred)
        logs = {"d_loss": float(d_loss), "g_loss": float(g_loss),
                "d_accuracy": self.discriminator.compiled_metrics.results()["accuracy"]}
        return logs if return_dict else list(logs.values())

    # ---- fit ----------------------------------------------------------------------------
    def fit(self, x, epochs=1, batch_size=64, shuffle=True, verbose=1, callbacks=None):
        """Train on the real images ``x`` (N, C, H, W), in the generator's output range, for
        ``epochs`` passes of ``batch_size`` real images per iteration (a last batch of one is
        left out: batch statistics need two). Returns a History (``history.history["d_loss"]``,
        ``["g_loss"]``, ``["d_accuracy"]``, per epoch); ``verbose`` prints a line per epoch."""
        self._require_compiled("fit")
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"{self.describe()}.fit: epochs expected a non-negative integer, got {epochs!r}")
        batch_size = _positive_int(f"{self.describe()}.fit: batch_size", batch_size)
        x = self.check_images(x, f"{self.describe()}.fit")
        n = len(x)
        steps = n // batch_size + (1 if n % batch_size > 1 else 0)
        if steps == 0:
            raise ValueError(f"{self.describe()}.fit expected at least 2 images (batch statistics), got {n}")
        history = History()
        cbl = CallbackList(list(callbacks or []) + [history], self, epochs=epochs, steps=steps, verbose=verbose)
        metrics = self.discriminator.compiled_metrics
        xp = backend.get_array_module(x)
        self.stop_training = False
        cbl.on_train_begin({})
        with loop_scope():  # the convolutions' pool: BLAS held to one thread while training
            for epoch in range(epochs):
                cbl.on_epoch_begin(epoch, {})
                order = grandom.get_rng().permutation(n) if shuffle else np.arange(n)
                if xp is not np:
                    order = backend.to_backend(order, "cupy")
                metrics.reset()
                d_sum = g_sum = 0.0
                count = 0
                for b in range(steps):
                    idx = order[b * batch_size:(b + 1) * batch_size]
                    cbl.on_train_batch_begin(b, {})
                    d_loss, g_loss, pred, yd = self._step(x[idx])
                    metrics.update(yd, pred)
                    m = len(idx)
                    d_sum = d_sum + d_loss.astype(np.float64) * m  # sums stay where the models run
                    g_sum = g_sum + g_loss.astype(np.float64) * m
                    count += m
                    cbl.on_train_batch_end(b, {"d_loss": d_loss, "g_loss": g_loss, "size": m})
                # the one read of the device per epoch
                logs = {"d_loss": float(d_sum) / count, "g_loss": float(g_sum) / count,
                        "d_accuracy": metrics.results()["accuracy"]}
                if verbose:
                    print(f"epoch {epoch + 1}/{epochs}: d_loss {logs['d_loss']:.4f}  g_loss {logs['g_loss']:.4f}  "
                          f"d_accuracy {logs['d_accuracy']:.4f}", flush=True)
                cbl.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        cbl.on_train_end({})
        self.history = history
        return history

    # ---- sampling -----------------------------------------------------------------------
    def sample(self, n=None, z=None, batch_size=256):
        """``n`` images (N, C, H, W) as a host NumPy array, from noise z ~ N(0, I) drawn by
        gpudl's generator, or from the given ``z`` (n, latent_dim); the generator in inference
        mode (BatchNormalization's moving statistics)."""
        if z is None:
            n = _positive_int(f"{self.describe()}.sample: n", n)
            z = self._noise(n)
        else:
            if isinstance(z, Tensor):
                z = z.data
            if not _is_array(z) or z.ndim != 2 or z.shape[1] != self.latent_dim:
                got = f"shape {tuple(z.shape)}" if _is_array(z) else type(z).__name__
                raise ValueError(f"{self.describe()}.sample expected z of shape (n, {self.latent_dim}), got {got}")
            if n is not None and n != len(z):
                raise ValueError(f"{self.describe()}.sample: n={n!r} disagrees with the {len(z)} rows of z")
        return self.generator.predict(z, batch_size=_positive_int(f"{self.describe()}.sample: batch_size",
                                                                   batch_size))

    def discriminate(self, x, batch_size=256):
        """The discriminator's P(real) for images ``x`` (checked as ``fit`` checks them), (N,)."""
        x = self.check_images(x, f"{self.describe()}.discriminate")
        return self.discriminator.predict(x, batch_size=batch_size).reshape(-1)
