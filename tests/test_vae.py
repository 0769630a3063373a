"""Lecture III's VAE: the sampling layer and its KL term, the loss in nats per image, the
recipe and its PyTorch twin, the bad-input check, the demo's direction."""
import numpy as np
import pytest

import gpudl
from gpudl import Tensor, demos, generative, layers, optimizers, peers, recipes
from harness import check_grad, rand


def _t(a):
    return Tensor(gpudl.backend.to_backend(np.asarray(a)), dtype=np.asarray(a).dtype)


# ---- Sampling --------------------------------------------------------------------------------

def test_sampling_is_mean_plus_scaled_eps_and_adds_the_kl_term(backend_name):
    mean, log_var, eps = rand((3, 4), 1), rand((3, 4), 2), rand((3, 4), 3)
    s = layers.Sampling()
    z = gpudl.to_numpy(s([_t(mean), _t(log_var)], eps=eps))
    np.testing.assert_allclose(z, mean + np.exp(log_var / 2) * eps, rtol=1e-12)
    kl = -0.5 * (1 + log_var - mean ** 2 - np.exp(log_var)).sum(axis=1).mean()
    assert len(s.losses) == 1
    np.testing.assert_allclose(float(gpudl.to_numpy(s.losses[0].data)), kl, rtol=1e-12)
    assert layers.Sampling(kl_weight=0)([_t(mean), _t(log_var)], eps=eps) is not None


def test_sampling_gradchecks_with_a_fixed_eps(backend_name):
    eps = rand((3, 4), 3)
    s = layers.Sampling()

    def sample(m, lv):
        s._clear_losses()
        return s([m, lv], eps=eps)

    def kl(m, lv):
        s._clear_losses()
        s([m, lv], eps=eps)
        return s.losses[0]
    check_grad(sample, [rand((3, 4), 1), rand((3, 4), 2)])
    check_grad(kl, [rand((3, 4), 1), rand((3, 4), 2)])


def test_sampling_draws_standard_normal_noise_and_checks_its_inputs():
    mean, log_var = np.full((4000, 2), 1.0, np.float32), np.full((4000, 2), np.log(4.0), np.float32)
    z = gpudl.to_numpy(layers.Sampling()([mean, log_var]))
    assert z.dtype == np.float32
    assert abs(z.mean() - 1.0) < 0.1 and abs(z.std() - 2.0) < 0.1
    with pytest.raises(ValueError, match=r"expected \[z_mean, z_log_var\]"):
        layers.Sampling()(mean)
    with pytest.raises(ValueError, match="of the same shape"):
        layers.Sampling()([mean, log_var[:, :1]])
    with pytest.raises(ValueError, match=r"expected eps of shape \(4000, 2\)"):
        layers.Sampling()([mean, log_var], eps=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="kl_weight >= 0"):
        layers.Sampling(kl_weight=-1)


# ---- the loss and the recipe ------------------------------------------------------------------

def test_summed_binary_crossentropy_is_nats_per_image():
    rng = np.random.default_rng(0)
    t, p = rng.uniform(0, 1, (5, 12)), rng.uniform(0.05, 0.95, (5, 12))
    want = -(t * np.log(p) + (1 - t) * np.log(1 - p)).sum(axis=1).mean()
    got = generative.SummedBinaryCrossentropy()(t, Tensor(p, dtype=np.float64))
    np.testing.assert_allclose(float(got.data), want, rtol=1e-6)


def test_vae_is_784_400_20_and_its_loss_counts_the_kl_term():
    model = recipes.vae()
    enc, dec = model.get_layer("encoder"), model.get_layer("decoder")
    assert [l.units for l in enc.layers if isinstance(l, layers.Dense)] == [400, 20, 20]
    assert [l.units for l in dec.layers if isinstance(l, layers.Dense)] == [400, 784]
    x = np.random.default_rng(0).uniform(0, 1, (16, 784)).astype(np.float32)
    mean, log_var, z = enc.predict(x)
    assert mean.shape == log_var.shape == z.shape == (16, 20)
    model.compile(optimizers.Adam(1e-3), generative.SummedBinaryCrossentropy())
    loss = model.test_on_batch(x)
    assert len(model.losses) == 1  # the KL term of the last forward pass
    kl = float(model.losses[0].data)
    assert kl > 0
    # nats per image: the summed BCE of a near-uniform output is about 784 * log 2, plus KL
    assert 0.8 * 784 * np.log(2) < loss - kl < 1.2 * 784 * np.log(2)


@pytest.mark.parametrize("bad", [2.0, -1.0])
def test_vae_refuses_pixels_outside_the_unit_interval(bad):
    model = recipes.vae(latent_dim=2, input_dim=16, hidden=8)
    model.compile(optimizers.Adam(1e-3), generative.SummedBinaryCrossentropy())
    x = np.random.default_rng(0).uniform(0, 1, (8, 16)).astype(np.float32)
    x[3, 5] = bad
    for call in (model.fit, model.evaluate, model.train_on_batch):
        with pytest.raises(ValueError, match=r"expected pixels in \[0, 1\].*divide uint8 images by 255\), got "
                                             r"values in \["):
            call(x)
    with pytest.raises(ValueError, match="fit validation_data expected pixels in"):
        model.fit(x.clip(0, 1), validation_data=(x, x), epochs=1, verbose=0)


# ---- the PyTorch twin ------------------------------------------------------------------------

@pytest.mark.torch
def test_torch_twin_of_the_vae_computes_the_same_functions():
    torch = pytest.importorskip("torch")
    model = recipes.vae(latent_dim=3, input_dim=10, hidden=6)
    twin = peers.torch_twin("vae", latent_dim=3, input_dim=10, hidden=6)
    peers.copy_twin_weights(twin, model)
    x = np.random.default_rng(0).uniform(0, 1, (4, 10)).astype(np.float32)
    z = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    with torch.no_grad():
        h = torch.relu(twin.fc1(torch.as_tensor(x)))
        mean, log_var = twin.fc21(h).numpy(), twin.fc22(h).numpy()
        image = torch.sigmoid(twin.fc4(torch.relu(twin.fc3(torch.as_tensor(z))))).numpy()
    got = model.get_layer("encoder").predict(x)
    np.testing.assert_allclose(got[0], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], log_var, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.get_layer("decoder").predict(z), image, rtol=1e-5, atol=1e-6)
    trainer = peers.TorchVAETrainer(twin, x, batch_size=2)
    first = trainer.evaluate(x)
    for _ in range(30):
        trainer.epoch()
    assert trainer.evaluate(x) < first


# ---- the demo --------------------------------------------------------------------------------

def test_vae_demo_loss_falls(tmp_path):
    out = demos.vae_demo(dataset="digits", latent_dim=2, hidden=32, epochs=3, batch_size=32, torch=False,
                         plot=str(tmp_path / "vae.png"), verbose=False)
    assert out["loss"][-1] < out["loss"][0]
    assert out["test_loss"] < out["loss"][0]
    assert (tmp_path / "vae.png").stat().st_size > 1000


def test_a_saved_vae_loads_as_a_vae_that_still_checks_its_pixels(tmp_path):
    model = recipes.vae(latent_dim=2, input_dim=16, hidden=8)
    model.compile(optimizers.Adam(1e-3), generative.SummedBinaryCrossentropy())
    x = np.random.default_rng(0).uniform(0, 1, (8, 16)).astype(np.float32)
    model.fit(x, epochs=1, verbose=0)
    model.save(tmp_path / "vae.gpudl")
    again = gpudl.load_model(tmp_path / "vae.gpudl")
    assert isinstance(again, generative.VariationalAutoencoder)
    z = np.ones((2, 2), np.float32)
    np.testing.assert_array_equal(again.get_layer("decoder").predict(z), model.get_layer("decoder").predict(z))
    with pytest.raises(ValueError, match=r"expected pixels in \[0, 1\]"):
        again.fit(x * 3, epochs=1, verbose=0)
