"""examples/rnn_rows.py and `gpudl train --model rnn`: Lecture II's row reader, run as a
user would, for each recurrent cell."""
import importlib.util
from pathlib import Path

import pytest

from gpudl import cli

ROOT = Path(__file__).resolve().parents[1]


def _example():
    spec = importlib.util.spec_from_file_location("rnn_rows", ROOT / "examples" / "rnn_rows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fashion_available():
    from gpudl.datasets import fashion_mnist
    try:
        fashion_mnist.load_data(download=False)
    except Exception as exc:  # no local copy: the example needs the real images
        pytest.skip(f"Fashion-MNIST not on this machine ({exc})")


@pytest.mark.parametrize("cell", ["lstm", "gru", "simple"])
def test_example_learns_each_cell(fashion_available, cell, capsys):
    scores = _example().main(["--cell", cell, "--limit", "2000", "--epochs", "1"])
    out = capsys.readouterr().out
    assert "2000 training and 400 test images, read as 28 steps of 28 pixels" in out
    assert "epoch 1:" in out and "test accuracy" in out
    assert 0.3 < scores["accuracy"] <= 1.0, f"{cell}: one epoch on 2,000 images should beat chance (0.1)"


def test_example_rejects_an_unknown_cell(capsys):
    with pytest.raises(SystemExit) as exc:
        _example().parse_args(["--cell", "transformer"])
    assert exc.value.code == 2
    assert "invalid choice: 'transformer'" in capsys.readouterr().err


@pytest.mark.parametrize("cell", [None, "gru", "simple"])
def test_cli_trains_the_rnn_recipe_on_digits(cell, capsys):
    args = ["train", "--model", "rnn", "--dataset", "digits", "--epochs", "3", "--backend", "numpy", "--verbose", "0"]
    assert cli.main(args + ([] if cell is None else ["--cell", cell])) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("rnn on digits: 3 epochs")
    assert 0.3 < float(line.split()[-1]) <= 1.0, line


def test_cli_cell_needs_the_rnn_model(capsys):
    assert cli.main(["train", "--model", "mlp", "--cell", "gru"]) == 2
    assert "--cell applies to --model rnn, got --model mlp" in capsys.readouterr().err


def test_rnn_rows_recipe_builds_each_cell_and_rejects_others():
    from gpudl import recipes
    for cell, cls in recipes.RNN_CELLS.items():
        model = recipes.rnn_rows(cell, rows=8, cols=8)
        assert type(model.layers[0]).__name__ == cls
    with pytest.raises(ValueError, match=r"rnn_rows expected cell in 'lstm', 'gru', 'simple', got 'lstmx'"):
        recipes.rnn_rows("lstmx")
