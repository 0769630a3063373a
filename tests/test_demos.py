"""The tutorial's comparisons point the way the slides say (short runs)."""
import pytest

from gpudl import demos


def test_cross_entropy_beats_square_error():
    out = demos.square_error_vs_cross_entropy(epochs=4)
    assert out["categorical_crossentropy"] > out["mse"] + 0.2


def test_deep_sigmoid_gradient_vanishes_relu_does_not():
    out = demos.sigmoid_vs_relu(depth=8, epochs=3)
    s, r = out["sigmoid"], out["relu"]
    assert s["first_layer_grad"] < 1e-3 * s["last_layer_grad"]
    assert r["first_layer_grad"] > 0.1 * r["last_layer_grad"]
    assert r["test_accuracy"] > s["test_accuracy"] + 0.3


def test_minibatch_beats_full_batch_in_equal_epochs():
    out = demos.minibatch_vs_fullbatch(epochs=5)
    assert out["minibatch"] > out["fullbatch"] + 0.1


def test_dropout_loosens_the_training_fit():
    out = demos.dropout_demo(epochs=8, train_size=300)
    assert out[0.5]["train_loss"] > out[0.0]["train_loss"]


def test_demo_runner_lists_and_rejects(capsys):
    assert demos.run("list") == 0
    assert "sigmoid-vs-relu" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown demo 'nope'"):
        demos.run("nope")
