import json

import numpy as np
import pytest

from gpudl.augment import RandomShiftRotate, shift_rotate


def _images(n=4, h=9, w=9, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, size=(n, h, w)).astype(dtype)


def test_zero_shift_and_rotation_is_identity():
    x = _images(dtype=np.float64)
    out = RandomShiftRotate(max_shift=0, max_rotation=0.0)(x, np.random.default_rng(1))
    assert out is not x
    np.testing.assert_array_equal(out, x)


def test_zero_shift_and_rotation_is_identity_for_uint8_flat_rows():
    x = (_images(n=3, h=28, w=28, dtype=np.float64) * 255).astype(np.uint8).reshape(3, 784)
    out = RandomShiftRotate(0, 0.0, image_shape=(28, 28))(x, np.random.default_rng(0))
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("dy, dx", [(2, 0), (0, -3), (1, 2), (-2, -1)])
def test_shift_moves_one_bright_pixel_exactly(dy, dx):
    x = np.zeros((1, 7, 8), dtype=np.uint8)
    x[0, 3, 4] = 200
    out = shift_rotate(x, np.array([[dy, dx]]), np.array([0.0]))
    expected = np.zeros_like(x)
    expected[0, 3 + dy, 4 + dx] = 200
    np.testing.assert_array_equal(out, expected)


def test_random_shift_stays_within_max_shift_and_pads_with_fill():
    x = np.zeros((50, 1, 9, 9), dtype=np.float32)
    x[:, 0, 4, 4] = 1.0
    out = RandomShiftRotate(max_shift=2, max_rotation=0.0, fill=0.0)(x, np.random.default_rng(3))
    assert out.sum() == 50 and np.count_nonzero(out) == 50  # every pixel moved whole, none blurred
    _, _, rows, cols = np.nonzero(out)
    assert rows.min() >= 2 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 6
    assert len({(r, c) for r, c in zip(rows, cols)}) > 5  # the shifts really vary


def test_fill_value_pads_uncovered_pixels():
    x = np.ones((1, 5, 5), dtype=np.float32)
    out = shift_rotate(x, np.array([[0, 2]]), np.array([0.0]), fill=-1.0)
    np.testing.assert_array_equal(out[0, :, :2], -1.0)
    np.testing.assert_array_equal(out[0, :, 2:], 1.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8])
def test_rotation_by_90_degrees_matches_rot90(dtype):
    x = (_images(n=2, h=10, w=10, dtype=np.float64) * 200).astype(dtype)
    out = shift_rotate(x, np.zeros((2, 2), dtype=int), np.array([90.0, -90.0]))
    np.testing.assert_allclose(out[0, 1:-1, 1:-1], np.rot90(x[0], 1)[1:-1, 1:-1], atol=1e-5)
    np.testing.assert_allclose(out[1, 1:-1, 1:-1], np.rot90(x[1], -1)[1:-1, 1:-1], atol=1e-5)


def test_small_rotation_interpolates_between_neighbours():
    x = _images(n=1, h=15, w=15, dtype=np.float64)
    out = shift_rotate(x, np.zeros((1, 2), dtype=int), np.array([7.0]))
    # bilinear: each interior value lies within the range of the input
    assert x.min() - 1e-12 <= out[0, 3:-3, 3:-3].min() and out[0, 3:-3, 3:-3].max() <= x.max() + 1e-12
    assert not np.allclose(out, x)
    # the centre of an odd image stays put
    assert out[0, 7, 7] == pytest.approx(x[0, 7, 7])


def test_same_seed_gives_identical_output_and_images_differ_in_a_batch():
    x = _images(n=6, h=12, w=12)
    aug = RandomShiftRotate(max_shift=2, max_rotation=15.0)
    a = aug(x, np.random.default_rng(42))
    b = aug(x, np.random.default_rng(42))
    c = aug(x, np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    same = _images(n=1, h=12, w=12).repeat(6, axis=0)
    out = aug(same, np.random.default_rng(0))
    assert len({out[i].tobytes() for i in range(6)}) > 1  # each image drawn independently


def test_default_rng_follows_gpudl_seed():
    from gpudl.random import set_seed
    x = _images(n=3)
    aug = RandomShiftRotate()
    set_seed(5)
    a = aug(x)
    set_seed(5)
    np.testing.assert_array_equal(aug(x), a)


@pytest.mark.parametrize("shape, image_shape", [
    ((3, 8, 8), None),
    ((3, 2, 8, 8), None),
    ((3, 64), (8, 8)),
    ((3, 128), (2, 8, 8)),
    ((3, 8, 8), (8, 8)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.int16])
def test_shape_and_dtype_preserved(shape, image_shape, dtype):
    x = (np.random.default_rng(0).uniform(0, 100, size=shape)).astype(dtype)
    out = RandomShiftRotate(image_shape=image_shape)(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == x.dtype


def test_channels_move_together():
    x = _images(n=2, h=8, w=8)
    x4 = np.stack([x, 2 * x], axis=1)
    out = RandomShiftRotate(max_shift=2, max_rotation=20.0)(x4, np.random.default_rng(0))
    np.testing.assert_allclose(out[:, 1], 2 * out[:, 0], rtol=1e-5, atol=1e-6)


def test_uint8_output_is_rounded_and_clipped():
    x = np.full((2, 6, 6), 255, dtype=np.uint8)
    out = RandomShiftRotate(max_shift=1, max_rotation=30.0, fill=300.0)(x, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.min() == 255


def test_empty_batch():
    out = RandomShiftRotate()(np.zeros((0, 5, 5), dtype=np.float32), np.random.default_rng(0))
    assert out.shape == (0, 5, 5)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_shift": -1}, r"max_shift to be a non-negative integer, got -1"),
    ({"max_shift": 1.5}, r"max_shift .* got 1.5"),
    ({"max_rotation": -5.0}, r"max_rotation .* got -5.0"),
    ({"max_rotation": float("nan")}, r"max_rotation .* got nan"),
    ({"image_shape": (28,)}, r"image_shape \(H, W\) or \(C, H, W\) .* got \(28,\)"),
    ({"image_shape": (0, 5)}, r"got \(0, 5\)"),
    ({"fill": float("inf")}, r"finite number for fill, got inf"),
])
def test_constructor_validates_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomShiftRotate(**kwargs)


def test_flat_input_without_image_shape_is_rejected():
    with pytest.raises(ValueError, match=r"flat input of shape \(4, 784\).*image_shape=\(H, W\)"):
        RandomShiftRotate()(np.zeros((4, 784), dtype=np.float32), np.random.default_rng(0))


@pytest.mark.parametrize("shape", [(5,), (2, 1, 3, 4, 4)])
def test_wrong_rank_is_rejected(shape):
    with pytest.raises(ValueError, match=r"expected input of shape \(N, H, W\) or \(N, C, H, W\), got shape"):
        RandomShiftRotate()(np.zeros(shape, dtype=np.float32), np.random.default_rng(0))


def test_flat_input_of_wrong_size_is_rejected():
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 784\) or \(N, 28, 28\), got shape \(4, 780\)"):
        RandomShiftRotate(image_shape=(28, 28))(np.zeros((4, 780)), np.random.default_rng(0))


def test_bad_rng_and_dtype_are_rejected():
    with pytest.raises(TypeError, match="numpy.random.Generator, got int"):
        RandomShiftRotate()(np.zeros((1, 4, 4)), 0)
    with pytest.raises(ValueError, match="integer or floating images, got dtype bool"):
        RandomShiftRotate()(np.zeros((1, 4, 4), dtype=bool), np.random.default_rng(0))


def test_shift_rotate_validates_parameters():
    x = np.zeros((2, 4, 4))
    with pytest.raises(ValueError, match=r"shifts of shape \(2, 2\), got \(2,\)"):
        shift_rotate(x, np.zeros(2, dtype=int), np.zeros(2))
    with pytest.raises(ValueError, match="integer shifts"):
        shift_rotate(x, np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="2 finite angles"):
        shift_rotate(x, np.zeros((2, 2), dtype=int), np.array([0.0, np.nan]))


def test_get_config_is_json_and_round_trips():
    aug = RandomShiftRotate(max_shift=3, max_rotation=12.5, image_shape=(28, 28), fill=0.5)
    config = aug.get_config()
    assert json.loads(json.dumps(config)) == config
    assert config == {"max_shift": 3, "max_rotation": 12.5, "image_shape": [28, 28], "fill": 0.5}
    again = RandomShiftRotate.from_config(config)
    assert again.get_config() == config
    assert "max_shift=3" in repr(again)
