import numpy as np
import pytest

import gpudl
from gpudl import Tensor
from gpudl import functional as F
from gpudl.testing import gradcheck


def test_identity_when_not_training():
    x = Tensor(np.random.rand(4, 5).astype(np.float32))
    assert F.dropout(x, 0.5, training=False) is x


def test_inverted_scaling_keeps_the_mean():
    x = Tensor(np.ones((200, 500), dtype=np.float32))
    y = F.dropout(x, 0.3, training=True).numpy()
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.02


def test_same_seed_same_mask():
    x = Tensor(np.ones((10, 10), dtype=np.float32))
    gpudl.set_seed(3)
    a = F.dropout(x, 0.5).numpy()
    gpudl.set_seed(3)
    b = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(1, 5), (4, 3), (2, 3, 4)])
def test_gradient_uses_the_same_mask(shape):
    # a fresh mask per call would break the numerical check: fix it by re-seeding inside fn
    def fn(x):
        gpudl.set_seed(11)
        return F.dropout(x, 0.4, training=True)
    assert gradcheck(fn, [np.random.default_rng(1).standard_normal(shape)])


@pytest.mark.parametrize("rate", [-0.1, 1.0, 2, "0.5", None])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match=r"dropout expected a rate in \[0, 1\)"):
        F.dropout(Tensor(np.ones(3)), rate)
