"""Lecture III's auto-encoders: the noise layer, the recipes, PCA, the demo's direction."""
from pathlib import Path

import numpy as np
import pytest

import gpudl
from gpudl import Tensor, demos, generative, layers, recipes
from harness import check_grad, rand

MNIST_10K = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"


# ---- GaussianNoise -------------------------------------------------------------------------------

def test_gaussian_noise_is_the_identity_at_inference_and_gradchecks(backend_name):
    noise = layers.GaussianNoise(0.5)
    noise.eval()
    x = rand((4, 6), seed=1)
    got = gpudl.to_numpy(noise(Tensor(gpudl.backend.to_backend(x), dtype=np.float64)))
    np.testing.assert_array_equal(got, x)
    check_grad(lambda t: noise(t) * t, [x])


def test_gaussian_noise_adds_noise_of_its_stddev_only_in_training(backend_name):
    noise = layers.GaussianNoise(0.3)
    x = np.full((200, 100), 0.5, dtype=np.float32)
    y = gpudl.to_numpy(noise(Tensor(gpudl.backend.to_backend(x)), training=True))
    assert y.dtype == np.float32
    assert abs(float((y - x).std()) - 0.3) < 0.01
    assert abs(float((y - x).mean())) < 0.01
    np.testing.assert_array_equal(gpudl.to_numpy(noise(Tensor(gpudl.backend.to_backend(x)), training=False)), x)


def test_gaussian_noise_rejects_a_negative_stddev():
    with pytest.raises(ValueError, match="GaussianNoise expected stddev >= 0, got -1"):
        layers.GaussianNoise(-1)


# ---- the recipes ---------------------------------------------------------------------------------

def _dense_sizes(model):
    return [l.units for l in model.layers if isinstance(l, layers.Dense)]


def test_deep_autoencoder_is_hintons_784_1000_500_250_30_and_its_mirror():
    model = recipes.deep_autoencoder()
    enc, dec = model.get_layer("encoder"), model.get_layer("decoder")
    assert _dense_sizes(enc) == [1000, 500, 250, 30]
    assert _dense_sizes(dec) == [250, 500, 1000, 784]
    assert enc.layers[-1].activation is None and dec.layers[-1].activation == "sigmoid"
    x = np.random.default_rng(0).uniform(0, 1, (3, 784)).astype(np.float32)
    out = model.predict(x)
    assert out.shape == (3, 784) and 0 < out.min() and out.max() < 1
    np.testing.assert_allclose(dec.predict(enc.predict(x)), out, rtol=1e-5, atol=1e-6)


def test_denoising_autoencoder_corrupts_only_in_training():
    model = recipes.denoising_autoencoder(code_size=4, input_dim=16, hidden=(8,), stddev=0.5)
    assert any(isinstance(l, layers.GaussianNoise) for l in model.layers)
    x = np.random.default_rng(0).uniform(0, 1, (5, 16)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), model.predict(x))
    clean = model.get_layer("decoder").predict(model.get_layer("encoder").predict(x))
    np.testing.assert_allclose(model.predict(x), clean, rtol=1e-6)
    noisy = gpudl.to_numpy(model(x, training=True))
    assert np.abs(noisy - clean).max() > 1e-3


def test_conv_autoencoder_goes_down_by_convolution_and_up_by_transpose():
    model = recipes.conv_autoencoder(code_size=10)
    kinds = [type(l).__name__ for l in model.get_layer("decoder").layers]
    assert kinds.count("Conv2DTranspose") == 2
    x = np.random.default_rng(0).uniform(0, 1, (2, 1, 28, 28)).astype(np.float32)
    assert model.get_layer("encoder").predict(x).shape == (2, 10)
    out = model.predict(x)
    assert out.shape == (2, 1, 28, 28) and 0 < out.min() and out.max() < 1
    with pytest.raises(ValueError, match="divisible by 4, got"):
        recipes.conv_autoencoder(input_shape=(1, 30, 30))


# ---- PCA and the error measure ------------------------------------------------------------------

def test_pca_with_every_component_reconstructs_exactly_and_fewer_do_worse():
    x = np.random.default_rng(0).uniform(0, 1, (50, 8))
    mean, comps = generative.pca_fit(x, 8)
    _, r = generative.pca_reconstruct(x, mean, comps)
    assert generative.reconstruction_error(x, r) < 1e-20
    errs = [generative.reconstruction_error(x, generative.pca_reconstruct(x, *generative.pca_fit(x, k))[1])
            for k in (1, 3, 6)]
    assert errs[0] > errs[1] > errs[2] > 0
    with pytest.raises(ValueError, match=r"pca_fit expected 1 <= k <= 8"):
        generative.pca_fit(x, 9)


def test_reconstruction_error_sums_over_pixels_and_averages_over_images():
    x = np.zeros((2, 4))
    x_hat = np.array([[1.0, 1.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0]])
    assert generative.reconstruction_error(x, x_hat) == pytest.approx((2.0 + 0.25) / 2)
    with pytest.raises(ValueError, match="same shape"):
        generative.reconstruction_error(x, x_hat[:1])


# ---- data and the demo ---------------------------------------------------------------------------

@pytest.mark.skipif(not (MNIST_10K / "t10k-images-idx3-ubyte.gz").exists(),
                    reason="MNIST's test images are not in the shared datasets folder here")
def test_mnist_10k_split_is_8000_and_2000_in_unit_range():
    (xtr, ytr), (xte, yte) = recipes.load_images("mnist-10k", data_dir=MNIST_10K)
    assert xtr.shape == (8000, 784) and xte.shape == (2000, 784) and len(ytr) == 8000 and len(yte) == 2000
    assert xtr.dtype == np.float32 and xtr.min() == 0.0 and xtr.max() == 1.0
    with pytest.raises(ValueError, match="load_images expected 'mnist'"):
        recipes.load_images("cifar")


def test_autoencoder_demo_beats_pca_at_the_same_code_size(tmp_path):
    out = demos.autoencoder(dataset="digits", code_size=2, hidden=(64, 32), epochs=25, batch_size=32,
                            plot=str(tmp_path / "ae.png"), verbose=False)
    assert out["autoencoder_error"] < out["pca_error"]
    assert out["held_out_by_epoch"][-1] < out["held_out_by_epoch"][0]
    assert (tmp_path / "ae.png").stat().st_size > 1000  # digits are square: the figure is drawn


def test_demo_options_come_from_the_demo_arguments():
    p = demos._demo_parser("autoencoder", demos.autoencoder)
    args = vars(p.parse_args(["--epochs", "3", "--hidden", "8,4", "--kind", "conv", "--limit", "100"]))
    assert args["epochs"] == 3 and args["hidden"] == (8, 4) and args["kind"] == "conv" and args["limit"] == 100
    assert vars(demos._demo_parser("vae", demos.vae_demo).parse_args(["--no-torch"]))["torch"] is False
    with pytest.raises(SystemExit):
        p.parse_args(["--no-such-option", "1"])
    with pytest.raises(ValueError, match="autoencoder expected kind 'deep', 'denoising' or 'conv'"):
        demos.autoencoder(dataset="digits", kind="sparse", epochs=1, verbose=False)
