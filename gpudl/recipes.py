"""The tutorial's reference models, built one way for the CLI, examples and benchmarks."""
from __future__ import annotations

import numpy as np

from . import layers
from .models import Sequential

__all__ = ["hello_mlp", "mnist_cnn", "lstm_rows", "rnn_rows", "RNN_CELLS", "load_dataset", "DATASETS",
           "deep_autoencoder", "denoising_autoencoder", "conv_autoencoder", "vae", "gan", "load_images"]

DATASETS = ("mnist", "fashion-mnist", "digits")


def hello_mlp(input_dim=784, hidden=500, classes=10, dropout=0.2, activation="relu"):
    """The hello world: input-500-500-10, ReLU, dropout, softmax (Keras' mnist_mlp shape)."""
    return Sequential([
        layers.Dense(hidden, activation=activation), layers.Dropout(dropout),
        layers.Dense(hidden, activation=activation), layers.Dropout(dropout),
        layers.Dense(classes, activation="softmax"),
    ], input_shape=(input_dim,))


def mnist_cnn(input_shape=(1, 28, 28), classes=10, batchnorm=False):
    """Keras' mnist_cnn: conv32-conv64-pool-dropout-128-dropout-10. ``batchnorm``: True or
    "pre" puts a BatchNormalization between each convolution and its ReLU (Ioffe and
    Szegedy's place), "post" after each convolution's ReLU."""
    if batchnorm not in (False, True, "pre", "post"):
        raise ValueError(f"mnist_cnn expected batchnorm False, True, 'pre' or 'post', got {batchnorm!r}")
    if batchnorm in (True, "pre"):
        convs = [layers.Conv2D(32, 3), layers.BatchNormalization(), layers.ReLU(),
                 layers.Conv2D(64, 3), layers.BatchNormalization(), layers.ReLU()]
    elif batchnorm == "post":
        convs = [layers.Conv2D(32, 3, activation="relu"), layers.BatchNormalization(),
                 layers.Conv2D(64, 3, activation="relu"), layers.BatchNormalization()]
    else:
        convs = [layers.Conv2D(32, 3, activation="relu"), layers.Conv2D(64, 3, activation="relu")]
    return Sequential([
        *convs,
        layers.MaxPool2D(2), layers.Dropout(0.25), layers.Flatten(),
        layers.Dense(128, activation="relu"), layers.Dropout(0.5),
        layers.Dense(classes, activation="softmax"),
    ], input_shape=input_shape)


#: the recurrent layer of rnn_rows, by name
RNN_CELLS = {"lstm": "LSTM", "gru": "GRU", "simple": "SimpleRNN"}


def rnn_rows(cell="lstm", rows=28, cols=28, units=128, classes=10):
    """Lecture II's many-to-one RNN: read an image row by row with one recurrent layer
    (``cell`` one of RNN_CELLS), classify from the last state."""
    if cell not in RNN_CELLS:
        raise ValueError(f"rnn_rows expected cell in {', '.join(map(repr, RNN_CELLS))}, got {cell!r}")
    return Sequential([getattr(layers, RNN_CELLS[cell])(units), layers.Dense(classes, activation="softmax")],
                      input_shape=(rows, cols))


def lstm_rows(rows=28, cols=28, units=128, classes=10):
    """rnn_rows with an LSTM, the tutorial's example."""
    return rnn_rows("lstm", rows, cols, units, classes)


def load_dataset(name, layout="flat", limit=None, data_dir=None):
    """(x_train, y_train), (x_test, y_test) scaled to [0, 1] float32.

    layout: "flat" (N, H*W), "image" (N, 1, H, W) or "rows" (N, H, W).
    """
    from . import datasets
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(map(repr, DATASETS))}")
    if name == "digits":
        (xtr, ytr), (xte, yte) = datasets.digits.load_data()
        scale = 16.0
    else:
        mod = datasets.mnist if name == "mnist" else datasets.fashion_mnist
        (xtr, ytr), (xte, yte) = mod.load_data(path=data_dir)
        scale = 255.0
    if limit:
        xtr, ytr = xtr[:limit], ytr[:limit]

    def shape(x):
        x = (x.astype(np.float32) / np.float32(scale))
        if layout == "flat":
            return x.reshape(len(x), -1)
        if layout == "image":
            return x[:, None]
        if layout == "rows":
            return x
        raise ValueError(f"unknown layout {layout!r}: expected 'flat', 'image' or 'rows'")
    return (shape(xtr), ytr.astype(np.int64)), (shape(xte), yte.astype(np.int64))


# ---- Lecture III: auto-encoders and the VAE ---------------------------------------------------

def _model(inputs, outputs, name, cls=None):
    from .models import Model
    return (cls or Model)(inputs, outputs, name=name)


def deep_autoencoder(code_size=30, input_dim=784, hidden=(1000, 500, 250), activation="relu",
                     noise_stddev=None, name="deep_autoencoder", dropout=0.0, kernel_regularizer=None):
    """Hinton and Salakhutdinov's deep auto-encoder: 784-1000-500-250-30 with a linear code,
    then the mirror 30-250-500-1000-784 with a sigmoid output (pixels in [0, 1]).

    The model holds two nested models, ``model.get_layer("encoder")`` (image -> code) and
    ``model.get_layer("decoder")`` (code -> image). ``noise_stddev``: a GaussianNoise layer
    in front of the encoder, active only in training (the denoising variant). ``dropout``: a
    Dropout of that rate after every hidden layer (not after the code or the output).
    ``kernel_regularizer``: on every Dense kernel (``gpudl.regularizers.L2(1e-5)``, ...).
    Hinton pretrained with stacked RBMs and used logistic units; here ReLU units are trained
    end to end (the demo uses Adam), which on a small training set overfits unless the
    training images are augmented: see benchmarks/RESULTS.md."""
    from .models import Input
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"deep_autoencoder expected dropout in [0, 1), got {dropout!r}")
    reg = {"kernel_regularizer": kernel_regularizer}

    def hidden_layer(h, n, label):
        h = layers.Dense(n, activation=activation, name=f"{name}_{label}", **reg)(h)
        return layers.Dropout(dropout, name=f"{name}_{label}_dropout")(h) if dropout else h

    x = Input((input_dim,))
    h = x
    for i, n in enumerate(hidden):
        h = hidden_layer(h, n, f"enc_{i + 1}")
    code = layers.Dense(code_size, name=f"{name}_code", **reg)(h)
    encoder = _model(x, code, "encoder")
    z = Input((code_size,))
    h = z
    for i, n in enumerate(reversed(hidden)):
        h = hidden_layer(h, n, f"dec_{i + 1}")
    decoder = _model(z, layers.Dense(input_dim, activation="sigmoid", name=f"{name}_out", **reg)(h), "decoder")
    inp = Input((input_dim,))
    h = layers.GaussianNoise(noise_stddev, name=f"{name}_noise")(inp) if noise_stddev else inp
    return _model(inp, decoder(encoder(h)), name)


def denoising_autoencoder(code_size=30, stddev=0.3, **kwargs):
    """deep_autoencoder trained on corrupted inputs (Gaussian noise of ``stddev``, training
    only) to rebuild the clean ones (Vincent et al.); other keywords (``dropout``,
    ``kernel_regularizer``, ...) go to deep_autoencoder."""
    return deep_autoencoder(code_size, noise_stddev=stddev, name=kwargs.pop("name", "denoising_autoencoder"),
                            **kwargs)


def conv_autoencoder(code_size=30, input_shape=(1, 28, 28), filters=(16, 32), name="conv_autoencoder"):
    """A convolutional auto-encoder: two stride-2 3x3 convolutions down (28 -> 14 -> 7), a
    Dense code; a Dense layer and two stride-2 Conv2DTranspose up, sigmoid output. Nested
    models ``encoder`` and ``decoder`` as in deep_autoencoder; H and W must divide by 4."""
    from .models import Input
    c, hh, ww = input_shape
    if hh % 4 or ww % 4:
        raise ValueError(f"conv_autoencoder expected an image height and width divisible by 4, got {input_shape}")
    f1, f2 = filters
    x = Input(tuple(input_shape))
    h = layers.Conv2D(f1, 3, strides=2, padding="same", activation="relu")(x)
    h = layers.Conv2D(f2, 3, strides=2, padding="same", activation="relu")(h)
    encoder = _model(x, layers.Dense(code_size)(layers.Flatten()(h)), "encoder")
    z = Input((code_size,))
    h = layers.Dense(f2 * (hh // 4) * (ww // 4), activation="relu")(z)
    h = layers.Reshape((f2, hh // 4, ww // 4))(h)
    h = layers.Conv2DTranspose(f1, 3, strides=2, padding="same", activation="relu")(h)
    out = layers.Conv2DTranspose(c, 3, strides=2, padding="same", activation="sigmoid")(h)
    decoder = _model(z, out, "decoder")
    inp = Input(tuple(input_shape))
    return _model(inp, decoder(encoder(inp)), name)


def vae(latent_dim=20, input_dim=784, hidden=400, name="vae"):
    """Kingma and Welling's VAE: encoder 784-400 (ReLU) -> mean and log-variance (20 each),
    z = mean + exp(log_var / 2) * eps (a Sampling layer, which adds the KL term through
    ``add_loss``); decoder 20-400 (ReLU)-784 sigmoid.

    Returned compiled-ready as a ``gpudl.generative.VariationalAutoencoder``: compile it with
    ``gpudl.generative.SummedBinaryCrossentropy()`` (summed over pixels, so the loss is nats
    per image) and ``fit(x)``; inputs outside [0, 1] are refused with a ValueError. Nested
    models ``encoder`` (image -> [z_mean, z_log_var, z]) and ``decoder`` (z -> image)."""
    from .generative import VariationalAutoencoder
    from .models import Input
    x = Input((input_dim,))
    h = layers.Dense(hidden, activation="relu", name=f"{name}_enc")(x)
    mean = layers.Dense(latent_dim, name="z_mean")(h)
    log_var = layers.Dense(latent_dim, name="z_log_var")(h)
    z = layers.Sampling(name="z")([mean, log_var])
    encoder = _model(x, [mean, log_var, z], "encoder")
    zin = Input((latent_dim,))
    h = layers.Dense(hidden, activation="relu", name=f"{name}_dec")(zin)
    decoder = _model(zin, layers.Dense(input_dim, activation="sigmoid", name=f"{name}_out")(h), "decoder")
    inp = Input((input_dim,))
    return _model(inp, decoder(encoder(inp)[2]), name, VariationalAutoencoder)


def gan(latent_dim=100, image_shape=(1, 28, 28), generator_filters=(128, 64), discriminator_filters=(64, 128),
        kernel_size=4, dropout=0.3, output_activation="sigmoid", name="gan"):
    """Goodfellow et al.'s adversarial pair in the DCGAN shape (Radford et al.), returned as a
    ``gpudl.gan.GAN`` (not yet compiled).

    Generator (``gan.generator``, latent_dim -> image): Dense to ``generator_filters[0]``
    maps of a quarter of the image's side, BatchNormalization, ReLU, Reshape; a stride-2
    Conv2DTranspose to ``generator_filters[1]`` maps (BatchNormalization, ReLU); a stride-2
    Conv2DTranspose to the image's channels with ``output_activation``: "sigmoid" (images in
    [0, 1], as ``load_images`` gives them) or "tanh" (images in [-1, 1]).

    Discriminator (``gan.discriminator``, image -> P(real)): two stride-2 Conv2D
    (``discriminator_filters``), each with LeakyReLU(0.2) and Dropout(``dropout``), then
    Dense(1, sigmoid).

    ``gan.compile()`` (Adam(2e-4, beta_1=0.5) for each model by default), ``gan.fit(x,
    epochs=..., batch_size=...)`` on images (N, C, H, W) in the output's range,
    ``gan.sample(n)``. H and W must divide by 4; ValueError otherwise."""
    from .gan import GAN, OUTPUT_RANGES
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, (int, np.integer)) or latent_dim < 1:
        raise ValueError(f"gan expected latent_dim a positive integer, got {latent_dim!r}")
    try:
        c, hh, ww = (int(s) for s in image_shape)
    except (TypeError, ValueError):
        raise ValueError(f"gan expected image_shape (channels, height, width), got {image_shape!r}") from None
    if min(c, hh, ww) < 1 or hh % 4 or ww % 4:
        raise ValueError(f"gan expected image_shape (channels, height, width) with height and width divisible "
                         f"by 4 (two stride-2 upsamplings from a quarter of the side), got {tuple(image_shape)}")
    if output_activation not in OUTPUT_RANGES:
        raise ValueError(f"gan expected output_activation in {', '.join(map(repr, OUTPUT_RANGES))}, "
                         f"got {output_activation!r}")
    g1, g2 = generator_filters
    d1, d2 = discriminator_filters
    # the generator moves fast: moving statistics that average over ~10 steps (PyTorch's
    # 0.1) follow it, where Keras' 0.99 would sample with statistics of an older generator
    bn = dict(momentum=0.9)
    generator = Sequential([
        layers.Dense(g1 * (hh // 4) * (ww // 4), use_bias=False, name=f"{name}_g_dense"),
        layers.BatchNormalization(**bn, name=f"{name}_g_bn_1"), layers.ReLU(name=f"{name}_g_relu_1"),
        layers.Reshape((g1, hh // 4, ww // 4), name=f"{name}_g_reshape"),
        layers.Conv2DTranspose(g2, kernel_size, strides=2, padding="same", use_bias=False, name=f"{name}_g_up_1"),
        layers.BatchNormalization(**bn, name=f"{name}_g_bn_2"), layers.ReLU(name=f"{name}_g_relu_2"),
        layers.Conv2DTranspose(c, kernel_size, strides=2, padding="same", activation=output_activation,
                               name=f"{name}_g_up_2"),
    ], input_shape=(int(latent_dim),), name="generator")
    discriminator = Sequential([
        layers.Conv2D(d1, kernel_size, strides=2, padding="same", name=f"{name}_d_conv_1"),
        layers.LeakyReLU(0.2, name=f"{name}_d_lrelu_1"), layers.Dropout(dropout, name=f"{name}_d_drop_1"),
        layers.Conv2D(d2, kernel_size, strides=2, padding="same", name=f"{name}_d_conv_2"),
        layers.LeakyReLU(0.2, name=f"{name}_d_lrelu_2"), layers.Dropout(dropout, name=f"{name}_d_drop_2"),
        layers.Flatten(name=f"{name}_d_flatten"),
        layers.Dense(1, activation="sigmoid", name=f"{name}_d_out"),
    ], input_shape=(c, hh, ww), name="discriminator")
    return GAN(generator, discriminator, name=name)


def load_images(name="mnist", data_dir=None, train_size=8000):
    """Flat images in [0, 1] for the auto-encoder and VAE demos: ``(x_train, y_train),
    (x_test, y_test)``.

    "mnist": full MNIST (60k / 10k) where its four files are found, else its 10,000 test
    images alone, split ``train_size`` / the rest (the first images train, in file order);
    "mnist-10k" always that split; "fashion-mnist" the full set."""
    if name not in ("mnist", "mnist-10k", "fashion-mnist"):
        raise ValueError(f"load_images expected 'mnist', 'mnist-10k' or 'fashion-mnist', got {name!r}")
    if name == "fashion-mnist":
        return load_dataset("fashion-mnist", data_dir=data_dir)
    if name == "mnist" and _has_mnist_train(data_dir):
        return load_dataset("mnist", data_dir=data_dir)
    return _mnist_10k(data_dir, train_size)


def _has_mnist_train(data_dir):
    from .datasets import _cache, mnist
    return any((d / "train-images-idx3-ubyte.gz").exists() for d in
               _cache.search_dirs("mnist", data_dir, mnist.SYSTEM_DIRS))


def _mnist_10k(data_dir, train_size):
    from .datasets import mnist
    x, y = mnist.load_test(path=data_dir, download=False)
    if not 1 <= train_size < len(x):
        raise ValueError(f"load_images expected 1 <= train_size < {len(x)}, got {train_size!r}")
    x = (x.astype(np.float32) / np.float32(255.0)).reshape(len(x), -1)
    y = y.astype(np.int64)
    return (x[:train_size], y[:train_size]), (x[train_size:], y[train_size:])
