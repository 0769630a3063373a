"""Creating more training data: the tutorial's shifted and rotated copies of each image.

Works on host (numpy) batches before they reach the model. Each output pixel is found by
inverse mapping: it is traced back through the shift and the rotation to a point of the
input image and read there by bilinear interpolation; points outside the image read ``fill``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["RandomShiftRotate", "shift_rotate"]

# pixels processed per chunk, bounding the temporary coordinate arrays (~16 MiB each)
_CHUNK_PIXELS = 1 << 21
# source coordinates this close to an integer are taken as that integer, so a rotation by a
# multiple of 90 degrees (cos 90 is 6e-17, not 0) moves pixels exactly
_SNAP = 1e-9


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _snap(coords: np.ndarray) -> np.ndarray:
    nearest = np.rint(coords)
    return np.where(np.abs(coords - nearest) < _SNAP, nearest, coords)


def _bilinear(images: np.ndarray, sy: np.ndarray, sx: np.ndarray, fill: float, work: np.dtype) -> np.ndarray:
    """Sample images (n, c, h, w) at float coordinates sy, sx (n, h, w)."""
    n, c, h, w = images.shape
    # a border of `fill` (one pixel above/left, two below/right) and coordinates clamped to
    # [-1, h] x [-1, w]: every corner then lies inside the padded image, and a point outside
    # the image reads only the border, so no mask is needed
    rows, cols = h + 3, w + 3
    padded = np.full((n, rows, cols, c), fill, dtype=work)
    padded[:, 1:h + 1, 1:w + 1, :] = images.transpose(0, 2, 3, 1)
    table = padded.reshape(n * rows * cols, c)
    sy = np.clip(sy, -1.0, h)
    sx = np.clip(sx, -1.0, w)
    y0 = np.floor(sy)
    x0 = np.floor(sx)
    wy = (sy - y0).astype(work)[..., None]
    wx = (sx - x0).astype(work)[..., None]
    top_left = ((y0.astype(np.intp) + 1) * cols + x0.astype(np.intp) + 1
                + (np.arange(n, dtype=np.intp) * (rows * cols))[:, None, None]).ravel()

    def corner(offset):
        return np.take(table, top_left + offset, axis=0).reshape(n, h, w, c)

    top = corner(0) * (1 - wx) + corner(1) * wx
    bottom = corner(cols) * (1 - wx) + corner(cols + 1) * wx
    return (top * (1 - wy) + bottom * wy).transpose(0, 3, 1, 2)


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def shift_rotate(images, shifts, angles, fill: float = 0.0) -> np.ndarray:
    """Shift and rotate each image of a batch by the given amounts (the deterministic core of
    :class:`RandomShiftRotate`).

    images: (N, H, W) or (N, C, H, W). shifts: (N, 2) integer pixels (down, right).
    angles: (N,) degrees, counter-clockwise as displayed (row 0 at the top), about the image
    centre; the rotation is applied first, then the shift. Returns a new array of the same
    shape and dtype; uncovered pixels get ``fill``.
    """
    x = np.asarray(images)
    if x.ndim not in (3, 4):
        raise ValueError(f"shift_rotate expected images of shape (N, H, W) or (N, C, H, W), got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"shift_rotate expected integer or floating images, got dtype {x.dtype}")
    n = x.shape[0]
    shifts = np.asarray(shifts)
    angles = np.asarray(angles, dtype=np.float64)
    if shifts.shape != (n, 2):
        raise ValueError(f"shift_rotate expected shifts of shape ({n}, 2), got {shifts.shape}")
    if not np.issubdtype(shifts.dtype, np.integer):
        raise ValueError(f"shift_rotate expected integer shifts, got dtype {shifts.dtype}")
    if angles.shape != (n,) or not np.all(np.isfinite(angles)):
        raise ValueError(f"shift_rotate expected {n} finite angles, got {angles.shape} {angles!r:.80}")
    if not _is_real(fill) or not math.isfinite(fill):
        raise ValueError(f"shift_rotate expected a finite number for fill, got {fill!r}")

    x4 = x if x.ndim == 4 else x[:, None]
    _, c, h, w = x4.shape
    out = np.empty(x4.shape, dtype=x.dtype)
    # float32 holds 8- and 16-bit pixels and float32 images exactly; wider types keep float64
    wide = x.dtype.itemsize >= 8 or (np.issubdtype(x.dtype, np.integer) and x.dtype.itemsize >= 4)
    work = np.dtype(np.float64) if wide else np.dtype(np.float32)
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    step = max(1, _CHUNK_PIXELS // max(1, c * h * w))
    for start in range(0, n, step):
        part = slice(start, start + step)
        theta = np.deg2rad(angles[part])[:, None, None]
        cos, sin = np.cos(theta), np.sin(theta)
        # undo the shift, then the rotation: where in the input does each output pixel come from
        v = rows[None] - shifts[part, 0, None, None] - cy
        u = cols[None] - shifts[part, 1, None, None] - cx
        sx = _snap(u * cos - v * sin + cx)
        sy = _snap(u * sin + v * cos + cy)
        out[part] = _cast(_bilinear(x4[part], sy, sx, float(fill), work), x.dtype)
    return out.reshape(x.shape)


def _check_offset(sample_offset):
    if not _is_int(sample_offset) or sample_offset < 0:
        raise ValueError(f"RandomShiftRotate expected a non-negative integer sample_offset, got {sample_offset!r}")
    return int(sample_offset)


class RandomShiftRotate:
    """Randomly shift each image by whole pixels and rotate it by a small angle.

    max_shift: each image moves by an integer drawn uniformly from [-max_shift, max_shift]
    on each axis. max_rotation: and turns by an angle uniform in [-max_rotation, max_rotation]
    degrees. image_shape: (H, W) or (C, H, W), needed for flat (N, H*W) batches such as
    MNIST fed to a dense network. fill: value of pixels that come from outside the image.

    ``aug(x, rng)`` returns a new array of ``x``'s shape and dtype; ``rng`` is a
    ``numpy.random.Generator`` (default: gpudl's shared one, reset by ``gpudl.set_seed``).
    ``aug(x, rng, sample_offset=k)`` (what ``fit`` calls): x holds samples k, k+1, ... of a
    batch; one key is drawn from ``rng`` and each sample's shift and angle are a pure
    function of the key and its index in the batch, so a data-parallel rank's share gets
    exactly the draws of those samples in the whole batch.
    """

    def __init__(self, max_shift: int = 2, max_rotation: float = 10.0, image_shape=None, fill: float = 0.0):
        if not _is_int(max_shift) or max_shift < 0:
            raise ValueError(f"RandomShiftRotate expected max_shift to be a non-negative integer, got {max_shift!r}")
        if not _is_real(max_rotation) or not math.isfinite(max_rotation) or max_rotation < 0:
            raise ValueError(
                f"RandomShiftRotate expected max_rotation to be a finite non-negative number of degrees, "
                f"got {max_rotation!r}"
            )
        if image_shape is not None:
            if (not isinstance(image_shape, (tuple, list)) or len(image_shape) not in (2, 3)
                    or not all(_is_int(d) and d > 0 for d in image_shape)):
                raise ValueError(
                    f"RandomShiftRotate expected image_shape (H, W) or (C, H, W) of positive integers, "
                    f"got {image_shape!r}"
                )
            image_shape = tuple(int(d) for d in image_shape)
        if not _is_real(fill) or not math.isfinite(fill):
            raise ValueError(f"RandomShiftRotate expected a finite number for fill, got {fill!r}")
        self.max_shift = int(max_shift)
        self.max_rotation = float(max_rotation)
        self.image_shape = image_shape
        self.fill = float(fill)

    def _as_images(self, x: np.ndarray) -> np.ndarray:
        """View x as (N, C, H, W), or explain which shapes were expected."""
        if self.image_shape is not None:
            shape = self.image_shape if len(self.image_shape) == 3 else (1, *self.image_shape)
            size = math.prod(shape)
            if x.ndim == 2 and x.shape[1] == size:
                return x.reshape(x.shape[0], *shape)
            if x.shape[1:] == self.image_shape:
                return x.reshape(x.shape[0], *shape)
            raise ValueError(
                f"RandomShiftRotate with image_shape={self.image_shape} expected input of shape "
                f"(N, {size}) or (N, {', '.join(map(str, self.image_shape))}), got shape {x.shape}"
            )
        if x.ndim == 2:
            raise ValueError(
                f"RandomShiftRotate got flat input of shape {x.shape}: expected (N, H, W) or (N, C, H, W), "
                f"or pass image_shape=(H, W) to augment flat (N, H*W) rows"
            )
        if x.ndim == 3:
            return x[:, None]
        if x.ndim == 4:
            return x
        raise ValueError(f"RandomShiftRotate expected input of shape (N, H, W) or (N, C, H, W), got shape {x.shape}")

    def __call__(self, x, rng: np.random.Generator | None = None, sample_offset: int | None = None) -> np.ndarray:
        if rng is None:
            from .random import get_rng
            rng = get_rng()
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"RandomShiftRotate expected a numpy.random.Generator, got {type(rng).__name__}")
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise ValueError(f"RandomShiftRotate expected integer or floating images, got dtype {x.dtype}")
        images = self._as_images(x)
        n = images.shape[0]
        if sample_offset is None:
            shifts = rng.integers(-self.max_shift, self.max_shift + 1, size=(n, 2))
            angles = rng.uniform(-self.max_rotation, self.max_rotation, size=n)
        else:
            shifts, angles = self._counter_draws(int(rng.integers(0, 2**64, dtype=np.uint64)),
                                                 _check_offset(sample_offset), n)
        return shift_rotate(images, shifts, angles, self.fill).reshape(x.shape)

    def _counter_draws(self, key, offset, n):
        """Shifts and angles of samples offset .. offset + n - 1 of a batch, each a pure
        function of (key, its index in the batch): a rank holding part of a global batch
        draws what one process holding all of it would (three SplitMix64 outputs a sample)."""
        from .functional.dropout import splitmix64
        z = splitmix64(key, 3 * offset, 3 * n).reshape(n, 3)
        u = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53  # uniform in [0, 1)
        span = 2 * self.max_shift + 1
        shifts = np.minimum(np.floor(u[:, :2] * span), span - 1).astype(np.int64) - self.max_shift
        angles = -self.max_rotation + 2.0 * self.max_rotation * u[:, 2]
        return shifts, angles

    def get_config(self) -> dict:
        """The constructor arguments, JSON-serialisable."""
        return {
            "max_shift": self.max_shift,
            "max_rotation": self.max_rotation,
            "image_shape": None if self.image_shape is None else list(self.image_shape),
            "fill": self.fill,
        }

    @classmethod
    def from_config(cls, config: dict) -> "RandomShiftRotate":
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"RandomShiftRotate({args})"
