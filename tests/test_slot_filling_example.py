"""examples/slot_filling.py: Lecture II's slot filling trains with fit on padded sentences,
and the padding changes nothing (outputs at real steps, loss, gradients)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import gpudl

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("slot_filling", ROOT / "examples" / "slot_filling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_sentences_are_tagged_by_role(example):
    sents = example.generate(200, seed=3)
    for words, tags in sents:
        assert len(words) == len(tags)
        for w, t in zip(words, tags):
            if w in ("arrive", "leave", "on", "to", "from"):
                assert t == "O"
    # the slides' pair: the same city is a destination after "arrive", a departure after "leave"
    roles = {(ws[ws.index(w) - 1] if ws.index(w) else None, t)
             for ws, ts in sents for w, t in zip(ws, ts) if t in ("B-dest", "B-depart")}
    assert ("arrive", "B-dest") in roles and ("leave", "B-depart") in roles


def test_example_reaches_095_per_word_on_held_out_sentences(example, capsys):
    result = example.main(["--sentences", "1000", "--epochs", "8", "--seed", "0"])
    out = capsys.readouterr().out
    assert "held-out per-word accuracy" in out
    assert result["accuracy"] >= 0.95, result["accuracy"]
    # cities never seen in training are placed by their context
    assert result["unseen_accuracy"] >= 0.9, result["unseen_accuracy"]
    # and context is what it takes: each word alone cannot tell a destination from a departure
    assert result["baseline_accuracy"] < result["accuracy"] - 0.1, result
    # the logged validation accuracy counts real words only: it equals the hand count
    assert abs(result["history"]["val_accuracy"][-1] - result["accuracy"]) < 1e-6


def _padded(example, extra):
    sents = example.generate(12, seed=7)
    vocab = example.Vocabulary(sents)
    length = max(len(ws) for ws, _ in sents)
    return vocab, vocab.encode(sents, length), vocab.encode(sents, length + extra), length


def test_padding_changes_nothing(example):
    vocab, (x, y), (xp, yp), length = _padded(example, extra=5)
    gpudl.set_seed(1)
    model = example.build_model(len(vocab), embed=8, units=6)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    short = model.predict(x)
    other = example.build_model(len(vocab), embed=8, units=6)  # the same weights, longer padding
    other.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    other.build(xp.shape[1:])
    other.set_weights(model.get_weights())
    long = other.predict(xp)
    real = x != 0
    np.testing.assert_allclose(long[:, :length][real], short[real], rtol=1e-5, atol=1e-6)
    a = model.test_on_batch(x, y, return_dict=True)
    b = other.test_on_batch(xp, yp, return_dict=True)
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5)
    np.testing.assert_allclose(b["accuracy"], a["accuracy"], rtol=1e-6)
    # and the gradients: one SGD step from the same weights lands on the same weights
    w0 = model.get_weights()
    model.train_on_batch(x, y)
    w_short = model.get_weights()
    other.set_weights(w0)
    other.train_on_batch(xp, yp)
    for u, v in zip(w_short, other.get_weights()):
        np.testing.assert_allclose(v, u, rtol=1e-5, atol=1e-7)
