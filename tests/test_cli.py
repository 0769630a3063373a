"""The gpudl command, run as a user would (in-process through main, and once as a script)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import gpudl
from gpudl import cli


def test_hello_on_digits_prints_accuracy(capsys, monkeypatch):
    monkeypatch.setenv("GPUDL_DATA_DIR", "/nonexistent-gpudl-data")
    assert cli.main(["hello", "--dataset", "digits", "--epochs", "2", "--verbose", "0", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "backend: numpy" in out and "digits" in out
    acc = float(out.strip().splitlines()[-1].split()[-1])
    assert 0.5 < acc <= 1.0


def test_train_plot_and_save(tmp_path, capsys):
    png, model = tmp_path / "curves.png", tmp_path / "m.gpudl"
    rc = cli.main(["train", "--model", "mlp", "--dataset", "digits", "--epochs", "2", "--backend", "numpy",
                   "--plot", str(png), "--save", str(model), "--verbose", "0"])
    assert rc == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = gpudl.load_model(model)
    assert m.predict(np.zeros((1, 64), dtype=np.float32)).shape == (1, 10)
    assert "test accuracy" in capsys.readouterr().out


def test_unusable_backend_is_one_clear_line(capsys):
    if gpudl.backend.cupy_available():
        pytest.skip("a GPU is present")
    assert cli.main(["hello", "--backend", "cupy", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gpudl: error: backend 'cupy'") and "Traceback" not in err


def test_bad_epochs(capsys):
    assert cli.main(["train", "--epochs", "0"]) == 2
    assert "--epochs must be a positive integer, got 0" in capsys.readouterr().err


def test_console_script_runs():
    exe = os.path.join(os.path.dirname(sys.executable), "gpudl")
    if not os.path.exists(exe):
        pytest.skip("gpudl console script not installed in this environment")
    out = subprocess.run([exe, "demo", "list", "--backend", "numpy"], capture_output=True, text=True, check=True)
    assert "square-error-vs-cross-entropy" in out.stdout


def test_bench_quick_prints_every_case_checked_against_the_peer(capsys):
    assert cli.main(["bench", "--quick", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("op "))
    rows = lines[head + 1:]
    assert [r.split("  ")[0] for r in rows] == ["relu fwd", "maxout k=4 fwd", "softmax-CE fwd+bwd",
                                                "conv2d fwd+bwd", "LSTM fwd+bwd"]
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    for row in rows:
        fields = row.split()
        same, ours = fields[-4], float(fields[-3])
        assert ours > 0, row
        if have_torch:  # the answer is checked against PyTorch before anything is timed
            assert same == "yes" and float(fields[-2]) > 0 and float(fields[-1]) > 0, row
        else:
            assert same == "-" and fields[-2:] == ["-", "-"], row
