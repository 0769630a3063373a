"""Regularizer factors: finite and non-negative, refused otherwise with the argument named."""
import numpy as np
import pytest

from gpudl import Tensor, regularizers
from gpudl.regularizers import L1, L1L2, L2

BUILD = {
    ("L1", "l1"): lambda v: L1(v),
    ("L2", "l2"): lambda v: L2(v),
    ("L1L2", "l1"): lambda v: L1L2(l1=v),
    ("L1L2", "l2"): lambda v: L1L2(l2=v),
}
BAD = [float("nan"), float("inf"), float("-inf"), np.float64("nan"), np.float32("inf"), -1.0, -1e-12,
       "0.1", None, True, [0.1]]


@pytest.mark.parametrize("cls,arg", list(BUILD))
@pytest.mark.parametrize("value", BAD, ids=repr)
def test_bad_factor_is_refused_naming_argument_and_value(cls, arg, value):
    with pytest.raises(ValueError) as info:
        BUILD[cls, arg](value)
    msg = str(info.value)
    assert msg.startswith(f"{cls} expected a non-negative number, got {value!r} for {arg} ")
    assert "finite and >= 0" in msg


@pytest.mark.parametrize("cls,arg", list(BUILD))
@pytest.mark.parametrize("value", [0, 0.0, 1, 0.01, np.float32(0.5), np.float64(2.0)], ids=repr)
def test_finite_non_negative_factor_is_kept_as_float(cls, arg, value):
    reg = BUILD[cls, arg](value)
    assert getattr(reg, arg) == pytest.approx(float(value)) and type(getattr(reg, arg)) is float


def test_a_saved_config_is_checked_too():
    with pytest.raises(ValueError, match="L2 expected a non-negative number, got nan for l2"):
        regularizers.get({"class": "L2", "config": {"l2": float("nan")}})
    again = regularizers.get(L1L2(0.1, 0.2).get_config())
    assert (again.l1, again.l2) == (0.1, 0.2)


def test_penalty_values():
    w = Tensor(np.array([[1.0, -2.0], [0.5, 0.0]]))
    assert float(L1(0.1)(w).data) == pytest.approx(0.1 * 3.5)
    assert float(L2(0.1)(w).data) == pytest.approx(0.1 * 5.25)
    assert float(L1L2(0.1, 0.1)(w).data) == pytest.approx(0.1 * 3.5 + 0.1 * 5.25)
    assert float(L1L2()(w).data) == 0.0
