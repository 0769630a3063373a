"""Embedding, global pooling, UpSampling2D, Reshape, Permute: forward against NumPy float64
references, float64 gradchecks, save/load round trips, argument errors."""
from __future__ import annotations

import numpy as np
import pytest

import gpudl
from gpudl import backend, layers
from tests.harness import check_grad, rand


def _t(x):
    return gpudl.Tensor(np.asarray(x, dtype=np.float64), dtype=np.float64)


# ---- Embedding ----------------------------------------------------------------------------

def test_embedding_lookup_and_scatter_add_gradient(backend_name):
    emb = layers.Embedding(5, 3)
    ids = np.array([[0, 2, 2], [4, 2, 1]])
    y = emb(backend.to_backend(ids))
    w = gpudl.to_numpy(emb.embeddings.data)
    assert y.shape == (2, 3, 3) and emb.embeddings.shape == (5, 3)
    np.testing.assert_array_equal(gpudl.to_numpy(y), w[ids])
    g = rand((2, 3, 3), 1)
    y.backward(backend.to_backend(g))
    want = np.zeros((5, 3))
    np.add.at(want, ids, g)  # repeated id 2 accumulates three rows
    np.testing.assert_allclose(gpudl.to_numpy(emb.embeddings.grad), want, rtol=1e-6)


def test_embedding_gradcheck_float64():
    emb = layers.Embedding(4, 2)
    emb(np.array([[0]]))
    emb.embeddings.data = emb.embeddings.data.astype(np.float64)
    ids = np.array([[1, 3, 1], [0, 1, 2]])
    check_grad(lambda: emb(ids), [], params=[emb.embeddings])


def test_embedding_initialiser_is_keras_uniform():
    emb = layers.Embedding(200, 50)
    emb(np.array([[1]]))
    e = emb.embeddings.numpy()
    assert e.min() >= -0.05 and e.max() <= 0.05 and abs(e.mean()) < 0.005 and e.std() > 0.025


def test_embedding_mask_zero():
    emb = layers.Embedding(6, 2, mask_zero=True)
    ids = np.array([[3, 1, 0, 0], [5, 0, 2, 0]])
    emb(ids)
    np.testing.assert_array_equal(emb.last_mask, ids != 0)
    np.testing.assert_array_equal(emb.compute_mask(ids), ids != 0)
    assert layers.Embedding(6, 2).compute_mask(ids) is None


def test_embedding_errors():
    emb = layers.Embedding(4, 2)
    with pytest.raises(ValueError, match=r"ids in \[0, 4\).*got id 4"):
        emb(np.array([[1, 4]]))
    with pytest.raises(ValueError, match="got id -1"):
        emb(np.array([[-1, 0]]))
    with pytest.raises(TypeError, match="integer ids"):
        emb(np.array([[0.5, 1.0]]))
    with pytest.raises(TypeError, match="integer ids"):
        emb(np.array([[True, False]]))
    with pytest.raises(ValueError, match="input_dim"):
        layers.Embedding(0, 2)
    with pytest.raises(ValueError, match="output_dim"):
        layers.Embedding(3, 2.5)


def test_embedding_in_sequential_fit_and_save_load(tmp_path):
    ids = np.random.default_rng(0).integers(0, 7, size=(12, 5))
    y = np.eye(2)[(ids.sum(1) > 15).astype(int)]
    m = gpudl.Sequential([layers.Embedding(7, 3), layers.Flatten(), layers.Dense(2, activation="softmax")],
                         input_shape=(5,))
    m.compile(gpudl.optimizers.SGD(0.1), "categorical_crossentropy")
    w0 = m.layers[0].embeddings.numpy().copy()
    m.fit(ids, y, batch_size=4, epochs=1, verbose=0)  # fit hands x over as whole-valued floats
    assert not np.array_equal(m.layers[0].embeddings.numpy(), w0)
    m.save(tmp_path / "e.gpudl")
    m2 = gpudl.load_model(tmp_path / "e.gpudl")
    np.testing.assert_array_equal(m2.predict(ids), m.predict(ids))


# ---- global pooling -----------------------------------------------------------------------

def test_global_average_pooling(backend_name):
    x = rand((2, 3, 4, 5), 2)
    layer = layers.GlobalAveragePooling2D()
    np.testing.assert_allclose(gpudl.to_numpy(layer(_t(x))), x.mean(axis=(2, 3)), rtol=1e-12)
    check_grad(lambda x: layer(x), [x])
    assert layers.GlobalAveragePooling2D(keepdims=True)(_t(x)).shape == (2, 3, 1, 1)


def test_global_max_pooling_with_ties_to_the_first(backend_name):
    x = rand((2, 3, 3, 4), 3)
    layer = layers.GlobalMaxPooling2D()
    np.testing.assert_allclose(gpudl.to_numpy(layer(_t(x))), x.max(axis=(2, 3)), rtol=0)
    check_grad(lambda x: layer(x), [x])
    tie = np.zeros((1, 1, 2, 2))
    tie[0, 0, 0, 1] = tie[0, 0, 1, 0] = 1.0
    t = _t(tie)
    t.requires_grad = True
    layer(t).sum().backward()
    want = np.zeros_like(tie)
    want[0, 0, 0, 1] = 1.0  # the first maximum in row-major order takes it all
    np.testing.assert_array_equal(gpudl.to_numpy(t.grad), want)


# ---- UpSampling2D -------------------------------------------------------------------------

def nearest_ref(x, sh, sw):
    return x.repeat(sh, axis=2).repeat(sw, axis=3)


def bilinear_ref(x, sh, sw):
    """TF's resize_bilinear(half_pixel_centers=True) loop, as in its kernel's weights."""
    n, c, h, w = x.shape
    ho, wo = h * sh, w * sw

    def weights(o, n_in, scale):
        src = (o + 0.5) * (n_in / (n_in * scale)) - 0.5
        lo_f = np.floor(src)
        lo, hi = max(int(lo_f), 0), min(int(np.ceil(src)), n_in - 1)
        return lo, hi, src - lo_f

    y = np.empty((n, c, ho, wo))
    for i in range(ho):
        t, b, dy = weights(i, h, sh)
        for j in range(wo):
            l, r, dx = weights(j, w, sw)
            top = x[:, :, t, l] + (x[:, :, t, r] - x[:, :, t, l]) * dx
            bot = x[:, :, b, l] + (x[:, :, b, r] - x[:, :, b, l]) * dx
            y[:, :, i, j] = top + (bot - top) * dy
    return y


@pytest.mark.parametrize("size", [2, (2, 3)])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_upsampling2d(backend_name, size, interpolation):
    sh, sw = (size, size) if isinstance(size, int) else size
    x = rand((2, 2, 3, 2), 4)
    ref = nearest_ref if interpolation == "nearest" else bilinear_ref
    y32 = gpudl.to_numpy(layers.UpSampling2D(size, interpolation=interpolation)(gpudl.Tensor(x.astype(np.float32))))
    layer = layers.UpSampling2D(size, interpolation=interpolation)  # a layer keeps its first input's dtype
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, ref(x, sh, sw), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gpudl.to_numpy(layer(_t(x))), ref(x, sh, sw), rtol=1e-12, atol=1e-14)
    check_grad(lambda x: layer(x), [x])


# ---- Reshape / Permute --------------------------------------------------------------------

def test_reshape_and_permute(backend_name):
    x = rand((2, 3, 4), 5)
    r = layers.Reshape((-1, 2))
    np.testing.assert_array_equal(gpudl.to_numpy(r(_t(x))), x.reshape(2, 6, 2))
    check_grad(lambda x: r(x), [x])
    p = layers.Permute((2, 1))
    np.testing.assert_array_equal(gpudl.to_numpy(p(_t(x))), x.transpose(0, 2, 1))
    check_grad(lambda x: p(x), [x])
    x4 = rand((2, 2, 3, 4), 6)
    np.testing.assert_array_equal(gpudl.to_numpy(layers.Permute((3, 1, 2))(_t(x4))), x4.transpose(0, 3, 1, 2))


def test_shape_layer_errors():
    with pytest.raises(ValueError, match="at most one -1"):
        layers.Reshape((-1, -1))
    with pytest.raises(ValueError, match="positive integers"):
        layers.Reshape((0, 3))
    with pytest.raises(ValueError, match=r"12 values per sample.*\(5,\)"):
        layers.Reshape((5,))(_t(np.zeros((2, 3, 4))))
    with pytest.raises(ValueError, match="cannot reshape"):
        layers.Reshape((-1, 5))(_t(np.zeros((2, 3, 4))))
    for dims in [(1, 1), (0, 1), (1, 3), ()]:
        with pytest.raises(ValueError, match="permutation"):
            layers.Permute(dims)
    with pytest.raises(ValueError, match="rank 3"):
        layers.Permute((2, 1))(_t(np.zeros((2, 3, 4, 5))))
    with pytest.raises(ValueError, match="interpolation"):
        layers.UpSampling2D(2, interpolation="bicubic")
    with pytest.raises(ValueError, match="size"):
        layers.UpSampling2D(0)
    with pytest.raises(ValueError, match="rank 4"):
        layers.GlobalMaxPooling2D()(_t(np.zeros((2, 3))))


# ---- save / load of each shape layer --------------------------------------------------------

def test_save_load_round_trip_of_shape_layers(tmp_path):
    m = gpudl.Sequential([
        layers.Reshape((2, 3, 4)), layers.Permute((1, 3, 2)), layers.UpSampling2D((2, 1), "bilinear"),
        layers.Conv2D(3, 2), layers.UpSampling2D(2), layers.GlobalMaxPooling2D(),
    ], input_shape=(24,))
    m2 = gpudl.Sequential([layers.Reshape((2, 2, 2)), layers.GlobalAveragePooling2D(keepdims=True),
                           layers.Flatten()], input_shape=(8,))
    for k, (model, n_in) in enumerate([(m, 24), (m2, 8)]):
        x = rand((3, n_in), 7 + k)
        model.save(tmp_path / f"s{k}.gpudl")
        loaded = gpudl.load_model(tmp_path / f"s{k}.gpudl")
        np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
        assert [l.get_config() for l in loaded.layers] == [l.get_config() for l in model.layers]
