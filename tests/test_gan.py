"""Lecture III's GAN: the DCGAN pair's shapes, the two-optimizer loop (each model moves only
in its own step, the discriminator frozen only around the generator's), seeded repeats, the
direction of training, the demo, and the bad-input errors."""
import warnings
from pathlib import Path

import numpy as np
import pytest

import gpudl
from gpudl import demos, gan as gan_mod, layers, optimizers, recipes

#: MNIST's 10k test set beside the checkout (as in CI); tests needing it skip without it
MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"


@pytest.fixture(autouse=True)
def _fixed_conv_algorithms():
    # the fixed rule instead of timing each new shape: quicker at these sizes, and the same
    # algorithms (so the same bits) in every process
    old = gpudl.backend.set_deterministic(True)
    yield
    gpudl.backend.set_deterministic(old)


TINY = dict(latent_dim=8, image_shape=(1, 8, 8), generator_filters=(8, 4), discriminator_filters=(4, 8))


def _blobs(n, side=8, seed=0):
    """Real images for the tiny models: a bright square on a dark field, at random places
    (a distribution an untrained generator does not make)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, side, side), np.float32)
    for i, (r, c) in enumerate(rng.integers(0, side - 3, size=(n, 2))):
        x[i, 0, r:r + 4, c:c + 4] = 1.0
    return x


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def _trainable_values(model):
    return [gpudl.to_numpy(p.data).copy() for p in model.trainable_params()]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


# ---- the recipe -------------------------------------------------------------------------------

def test_generator_and_discriminator_shapes():
    g = recipes.gan(**TINY)
    assert isinstance(g, gan_mod.GAN)
    assert (g.latent_dim, g.image_shape, g.output_range) == (8, (1, 8, 8), (0.0, 1.0))
    z = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    images = g.generator.predict(z)
    assert images.shape == (5, 1, 8, 8)
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert g.discriminator.predict(images).shape == (5, 1)
    assert g.adversarial.predict(z).shape == (5, 1)
    assert g.sample(3).shape == (3, 1, 8, 8)
    np.testing.assert_array_equal(g.sample(z=z), images)

    big = recipes.gan(latent_dim=16, image_shape=(1, 28, 28), generator_filters=(4, 2), discriminator_filters=(2, 4))
    assert big.generator.output_shape == (1, 28, 28)
    # 7x7 maps, then 14x14, then the image; the discriminator halves twice, then one logit
    assert [tuple(s) for s in big.generator._output_shapes] == [
        (196,), (196,), (196,), (4, 7, 7), (2, 14, 14), (2, 14, 14), (2, 14, 14), (1, 28, 28)]
    assert [tuple(s) for s in big.discriminator._output_shapes] == [
        (2, 14, 14), (2, 14, 14), (2, 14, 14), (4, 7, 7), (4, 7, 7), (4, 7, 7), (196,), (1,)]

    wide = recipes.gan(latent_dim=4, image_shape=(3, 12, 16), generator_filters=(4, 2),
                       discriminator_filters=(2, 2), output_activation="tanh")
    out = wide.sample(2)
    assert out.shape == (2, 3, 12, 16) and wide.output_range == (-1.0, 1.0)
    assert out.min() >= -1.0 and out.max() <= 1.0 and out.min() < 0.0


def test_gan_takes_models_of_ones_own_and_reads_their_range():
    gen = gpudl.Sequential([layers.Dense(16), layers.Reshape((1, 4, 4)), layers.Tanh()], input_shape=(3,))
    disc = gpudl.Sequential([layers.Flatten(), layers.Dense(1, activation="sigmoid")], input_shape=(1, 4, 4))
    g = gan_mod.GAN(gen, disc).compile()
    assert g.output_range == (-1.0, 1.0) and g.image_shape == (1, 4, 4)
    logs = g.train_on_batch(np.linspace(-1, 1, 64, dtype=np.float32).reshape(4, 1, 4, 4))
    assert set(logs) == {"d_loss", "g_loss", "d_accuracy"}
    linear = gpudl.Sequential([layers.Dense(16), layers.Reshape((1, 4, 4))], input_shape=(3,))
    with pytest.raises(ValueError, match="ending in 'sigmoid' or 'tanh'.*got a last layer Reshape "
                                         "'reshape_1' without an activation: pass output_range"):
        gan_mod.GAN(linear, disc)
    assert gan_mod.GAN(linear, disc, output_range=(-3, 3)).output_range == (-3.0, 3.0)


# ---- the loop ---------------------------------------------------------------------------------

class _Spy(optimizers.Adam):
    """Adam that records which Parameters each of its steps updates."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stepped = []

    def step(self, params):
        self.stepped.append({id(p) for p in params})
        super().step(params)


def test_each_model_moves_only_in_its_own_step():
    g = recipes.gan(**TINY)
    d_opt, g_opt = _Spy(1e-2), _Spy(1e-2)
    g.compile(d_opt, g_opt)
    d_ids = {id(p) for p in g.discriminator.trainable_params()}
    g_ids = {id(p) for p in g.generator.trainable_params()}
    assert d_ids and g_ids and not d_ids & g_ids
    d0, g0 = _weights(g.discriminator), _trainable_values(g.generator)
    g.train_on_batch(_blobs(16))
    g.fit(_blobs(32), epochs=1, batch_size=16, verbose=0)
    # the discriminator's optimizer saw its weights alone; the generator's, through the
    # frozen discriminator, the generator's alone
    assert d_opt.stepped == [d_ids] * 3 and g_opt.stepped == [g_ids] * 3
    assert not _same(_weights(g.discriminator), d0) and not _same(_trainable_values(g.generator), g0)
    # the freeze is undone: trainable again, every weight differentiable again
    assert g.discriminator.trainable and all(l.trainable for l in g.discriminator.layers)
    assert all(p.requires_grad for p in g.discriminator.trainable_params())
    assert len(g.adversarial.trainable_params()) == len(g_ids) + len(d_ids)


def test_a_layer_frozen_inside_the_discriminator_stays_frozen():
    g = recipes.gan(**TINY)
    first = g.discriminator.layers[0]
    first.trainable = False
    g.compile()
    w0, rest0 = _weights(first), _weights(g.discriminator.layers[3])
    g.fit(_blobs(16), epochs=1, batch_size=8, verbose=0)
    assert not first.trainable and g.discriminator.trainable
    assert _same(_weights(first), w0) and not _same(_weights(g.discriminator.layers[3]), rest0)


def test_compiling_with_a_frozen_model_warns_that_it_will_not_learn():
    g = recipes.gan(**TINY)
    g.discriminator.trainable = False
    with pytest.warns(UserWarning, match="the discriminator has no trainable parameters"):
        g.compile()


def test_the_generators_step_leaves_no_gradient_on_the_discriminator():
    g = recipes.gan(**TINY).compile()
    g.train_on_batch(_blobs(8))
    for p in g.discriminator.params():
        p.grad = None
    with gan_mod._frozen(g.discriminator):
        g.adversarial.train_step((g._noise(4), np.ones((4, 1), np.float32), None))
    assert all(p.grad is None for p in g.discriminator.params())
    assert all(p.grad is not None for p in g.generator.trainable_params())


def test_one_discriminator_step_lowers_its_loss_on_a_fixed_batch():
    g = recipes.gan(**TINY, dropout=0.0).compile(d_optimizer=optimizers.Adam(1e-2))
    g.train_on_batch(_blobs(16, seed=1))  # a GAN step first: the discriminator must be trainable after it
    real = _blobs(32)
    fake = g.sample(32)
    x = np.concatenate([real, fake])
    y = np.concatenate([np.ones((32, 1)), np.zeros((32, 1))]).astype(np.float32)
    before = g.discriminator.evaluate(x, y)[0]
    g.discriminator.train_on_batch(x, y)
    after = g.discriminator.evaluate(x, y)[0]
    assert after < before


def test_seeded_runs_repeat_exactly_and_seeds_differ():
    x = _blobs(40)

    def run(seed):
        gpudl.set_seed(seed)
        g = recipes.gan(**TINY).compile()
        h = g.fit(x, epochs=2, batch_size=16, verbose=0)
        return h.history, _weights(g.generator), _weights(g.discriminator), g.sample(4)

    a, b, c = run(3), run(3), run(4)
    assert a[0] == b[0]
    for u, v in zip(a[1:], b[1:]):
        assert _same(u, v) if isinstance(u, list) else np.array_equal(u, v)
    assert not np.array_equal(a[3], c[3])
    assert set(a[0]) == {"d_loss", "g_loss", "d_accuracy"} and len(a[0]["d_loss"]) == 2


def test_fit_counts_batches_and_calls_callbacks():
    seen = []
    cb = gpudl.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append((epoch, dict(logs))))
    g = recipes.gan(**TINY).compile()
    h = g.fit(_blobs(33), epochs=2, batch_size=16, verbose=0, callbacks=[cb])  # a last batch of 1 is left out
    assert [e for e, _ in seen] == [0, 1] and h.epoch == [0, 1]
    assert seen[1][1]["g_loss"] == h.history["g_loss"][1]
    assert g.d_optimizer.iterations == 4 and g.g_optimizer.iterations == 4
    assert g.fit(_blobs(8), epochs=0).history == {}


def test_the_generator_learns_to_fool_a_trained_discriminator():
    gpudl.set_seed(1)
    x = _blobs(256)
    # a discriminator that all but holds still while the generator trains
    g = recipes.gan(**TINY, dropout=0.0).compile(d_optimizer=optimizers.SGD(1e-12),
                                                 g_optimizer=optimizers.Adam(5e-3, beta_1=0.5))
    # the discriminator trained alone against the untrained generator tells its images apart
    d = g.discriminator
    d.compile(optimizers.Adam(1e-2), "binary_crossentropy", ["accuracy"])
    fakes = g.sample(256)
    d.fit(np.concatenate([x, fakes]), np.concatenate([np.ones(256), np.zeros(256)]).reshape(-1, 1),
          batch_size=64, epochs=15, verbose=0)
    d.compile(optimizers.SGD(1e-12), "binary_crossentropy", ["accuracy"])
    caught_before = float((g.discriminate(g.sample(256)) < 0.5).mean())
    assert caught_before > 0.9
    g.fit(x, epochs=4, batch_size=32, verbose=0)
    caught_after = float((g.discriminate(g.sample(256)) < 0.5).mean())
    assert caught_after < caught_before - 0.3


# ---- the demo ---------------------------------------------------------------------------------

def test_gan_demo_runs_end_to_end_and_returns_its_figures(tmp_path):
    plot = tmp_path / "gan.png"
    out = demos.gan_demo(dataset="digits", epochs=2, batch_size=32, latent_dim=16, generator_filters=(16, 8),
                         discriminator_filters=(8, 16), classifier_epochs=1, samples=20, limit=128,
                         plot=str(plot), verbose=False)
    assert plot.exists() and plot.stat().st_size > 0
    assert sum(out["class_counts"]) == 20 and len(out["class_counts"]) == 10
    assert out["classes_found"] == sum(c > 0 for c in out["class_counts"])
    assert 0.0 < out["mean_confidence"] <= 1.0 and 0.0 <= out["classifier_accuracy"] <= 1.0
    assert 0.0 < out["real_confidence"] <= 1.0 and 0.0 < out["untrained_confidence"] <= 1.0
    assert out["epochs"] == 2 and len(out["d_loss"]) == 2 and len(out["g_loss"]) == 2


@pytest.mark.skipif(not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(), reason="no MNIST files here")
def test_gan_demo_on_a_slice_of_mnist(tmp_path):
    out = demos.gan_demo(data_dir=str(MNIST_DIR), epochs=1, latent_dim=8, generator_filters=(8, 4),
                         discriminator_filters=(4, 8), classifier_epochs=1, samples=50, limit=128, plot=None,
                         verbose=False)
    assert sum(out["class_counts"]) == 50 and out["epochs"] == 1


@pytest.mark.slow
def test_gan_demo_samples_read_as_digits_more_than_the_untrained_generators(tmp_path):
    out = demos.gan_demo(dataset="digits", epochs=20, batch_size=32, latent_dim=16, classifier_epochs=20,
                         samples=500, plot=None, verbose=False)
    assert out["classifier_accuracy"] > 0.8
    assert out["mean_confidence"] > out["untrained_confidence"]
    assert out["classes_found"] > out["untrained_classes_found"]


def test_demo_options_reach_the_command_line():
    p = demos._demo_parser("gan", demos.DEMOS["gan"][1])
    args = vars(p.parse_args(["--epochs", "3", "--latent-dim", "16", "--limit", "100", "--plot", "none"]))
    assert (args["epochs"], args["latent_dim"], args["limit"], args["plot"]) == (3, 16, 100, None)


# ---- bad input --------------------------------------------------------------------------------

def test_images_outside_the_generators_range_are_refused():
    g = recipes.gan(**TINY).compile()
    x = _blobs(8) * 255.0
    with pytest.raises(ValueError, match=r"expected pixels in \[0, 1\].*divide uint8 images by 255.*got values in "
                                         r"\[0, 255\]"):
        g.fit(x)
    with pytest.raises(ValueError, match=r"expected pixels in \[0, 1\]"):
        g.train_on_batch(x.astype(np.uint8))
    with pytest.raises(ValueError, match=r"expected pixels in \[0, 1\].*\(x \+ 1\) / 2.*got values in \[-1, 1\]"):
        g.fit(_blobs(8) * 2 - 1)
    t = recipes.gan(**TINY, output_activation="tanh").compile()
    with pytest.raises(ValueError, match=r"expected pixels in \[-1, 1\].*x / 127.5 - 1.*got values in \[0, 255\]"):
        t.fit(x)
    with pytest.raises(ValueError, match=r"expected pixels in \[-1, 1\], the generator's output range, got values "
                                         r"in \[-5, 1\]"):
        t.fit(_blobs(8) * 6 - 5)
    with pytest.warns(UserWarning, match=r"only the upper half of the generator's \[-1, 1\]; map \[0, 1\] images "
                                         r"with x \* 2 - 1"):
        t.fit(_blobs(8), epochs=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t.fit(_blobs(8) * 2 - 1, epochs=1, verbose=0)  # [-1, 1] is what it wants
    bad = _blobs(8)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        g.fit(bad)


def test_bad_shapes_ranks_types_and_arguments_are_refused():
    with pytest.raises(ValueError, match="latent_dim a positive integer, got 0"):
        recipes.gan(latent_dim=0)
    with pytest.raises(ValueError, match="latent_dim a positive integer, got 2.5"):
        recipes.gan(latent_dim=2.5)
    with pytest.raises(ValueError, match=r"divisible by 4.*got \(1, 30, 30\)"):
        recipes.gan(image_shape=(1, 30, 30))
    with pytest.raises(ValueError, match=r"\(channels, height, width\), got \(28, 28\)"):
        recipes.gan(image_shape=(28, 28))
    with pytest.raises(ValueError, match="output_activation in 'sigmoid', 'tanh', got 'relu'"):
        recipes.gan(output_activation="relu")
    g = recipes.gan(**TINY)
    with pytest.raises(RuntimeError, match="call compile"):
        g.fit(_blobs(8))
    opt = optimizers.Adam()
    with pytest.raises(ValueError, match="two optimizer objects"):
        g.compile(opt, opt)
    g.compile()
    with pytest.raises(ValueError, match=r"rank 4 \(N, 1, 8, 8\), got rank 2 shape \(8, 64\); reshape them with "
                                         r"x.reshape\(-1, 1, 8, 8\)"):
        g.fit(_blobs(8).reshape(8, 64))
    with pytest.raises(ValueError, match=r"rank 4 \(N, 1, 8, 8\), got rank 5"):
        g.fit(_blobs(8)[None])
    with pytest.raises(ValueError, match=r"shape \(N, 1, 8, 8\) \(what the generator makes\), got \(8, 1, 12, 12\)"):
        g.fit(np.zeros((8, 1, 12, 12), np.float32))
    with pytest.raises(TypeError, match="NumPy or CuPy array, got list"):
        g.fit([[0.5]])
    with pytest.raises(TypeError, match="as numbers, got dtype"):
        g.fit(np.full((8, 1, 8, 8), "a"))
    with pytest.raises(ValueError, match="at least one image"):
        g.fit(np.zeros((0, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="at least 2 images"):
        g.fit(np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="batch_size expected a positive integer, got 0"):
        g.fit(_blobs(8), batch_size=0)
    with pytest.raises(ValueError, match="epochs expected a non-negative integer, got -1"):
        g.fit(_blobs(8), epochs=-1)
    with pytest.raises(ValueError, match=r"z of shape \(n, 8\), got shape \(2, 3\)"):
        g.sample(z=np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="n expected a positive integer, got 0"):
        g.sample(0)
    with pytest.raises(TypeError, match="a gpudl model as the discriminator, got str"):
        gan_mod.GAN(g.generator, "d")
    with pytest.raises(ValueError, match=r"takes input shape \(N, 1, 4, 4\) but the generator makes \(N, 1, 8, 8\)"):
        gan_mod.GAN(g.generator, gpudl.Sequential([layers.Flatten(), layers.Dense(1, activation="sigmoid")],
                                                  input_shape=(1, 4, 4)))
