"""Nothing lost, nothing unsafe: model-file fuzzing through load_model, determinism
across processes, and a NaN fed into training."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gpudl
from gpudl import callbacks, layers
from gpudl.errors import ModelFileError


def _model():
    m = gpudl.Sequential([layers.Dense(6, activation="relu", kernel_regularizer="l2"), layers.Dropout(0.1),
                          layers.Dense(3, activation="softmax")], input_shape=(4,))
    m.compile("adam", "categorical_crossentropy", ["accuracy"])
    x = np.random.default_rng(0).random((32, 4)).astype(np.float32)
    m.fit(x, np.arange(32) % 3, batch_size=8, epochs=1, verbose=0)
    return m


def test_fuzzed_model_files_load_or_raise_model_file_error(tmp_path):
    path = tmp_path / "m.gpudl"
    _model().save(path)
    good = path.read_bytes()
    rng = np.random.default_rng(2024)
    outcomes = {"loaded": 0, "rejected": 0}
    for i in range(2000):
        data = bytearray(good)
        kind = i % 4
        if kind == 0:                      # flip a few bytes
            for pos in rng.integers(0, len(data), size=int(rng.integers(1, 8))):
                data[pos] ^= int(rng.integers(1, 256))
        elif kind == 1:                    # truncate
            data = data[: int(rng.integers(0, len(data)))]
        elif kind == 2:                    # insert bytes
            pos = int(rng.integers(0, len(data)))
            data[pos:pos] = bytes(rng.integers(0, 256, size=int(rng.integers(1, 16)), dtype=np.uint8))
        else:                              # delete a run
            pos = int(rng.integers(0, len(data)))
            del data[pos:pos + int(rng.integers(1, 32))]
        path.write_bytes(bytes(data))
        try:
            gpudl.load_model(path)
            outcomes["loaded"] += 1
        except ModelFileError:
            outcomes["rejected"] += 1
    assert outcomes["rejected"] > 1900, outcomes


def test_header_with_valid_checksum_but_bad_architecture_is_rejected(tmp_path):
    from gpudl import io
    path = tmp_path / "m.gpudl"
    m = _model()
    m.save(path)
    meta, arrays = io.load_file(path)
    for mutate, pattern in [
        (lambda mm: mm["model"]["config"]["layers"][0].update({"class": "os.system"}), "unknown layer class"),
        (lambda mm: mm["model"]["config"]["layers"][0]["config"].update({"units": -1}), "positive integer"),
        (lambda mm: mm.update({"dtype": "object"}), "float16/float32/float64"),
        (lambda mm: mm.update({"format": "pickle"}), "expected a 'gpudl-model' file"),
        (lambda mm: mm["model"]["config"]["layers"][0]["config"].update({"evil": "__import__('os')"}), "invalid model"),
    ]:
        bad = __import__("copy").deepcopy(meta)
        mutate(bad)
        io.save_file(path, arrays, bad)
        with pytest.raises(ModelFileError, match=pattern):
            gpudl.load_model(path)
    io.save_file(path, {k: v for k, v in arrays.items() if k != "param/0"}, meta)
    with pytest.raises(ModelFileError, match="parameters"):
        gpudl.load_model(path)


SCRIPT = textwrap.dedent("""
    import hashlib, numpy as np, gpudl
    from gpudl import layers
    gpudl.set_seed(123)
    x = np.random.default_rng(1).random((200, 10)).astype(np.float32)
    y = np.arange(200) % 4
    m = gpudl.Sequential([layers.Dense(16, activation="relu"), layers.Dropout(0.3),
                          layers.Dense(4, activation="softmax")], input_shape=(10,))
    m.compile("adam", "categorical_crossentropy")
    m.fit(x, y, batch_size=16, epochs=3, verbose=0)
    print(hashlib.sha256(b"".join(w.tobytes() for w in m.get_weights())).hexdigest())
""")


def test_same_seed_same_weights_in_two_processes():
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0].strip()) == 64


def test_nan_fed_into_training_stops_at_that_batch_and_keeps_the_checkpoint(tmp_path, capsys):
    x = np.random.default_rng(0).random((64, 4)).astype(np.float32)
    y = np.arange(64) % 3
    m = _model()
    path = tmp_path / "ck.gpudl"
    m.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callbacks.ModelCheckpoint(path)])
    before = path.read_bytes()
    weights = m.get_weights()
    bad = x.copy()
    bad[8 * 3 + 2, 1] = np.nan            # a sample of the 4th batch (no shuffle)
    t = callbacks.TerminateOnNaN()
    m.fit(bad, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
          callbacks=[t, callbacks.ModelCheckpoint(path)])
    assert t.terminated_at == (0, 3)
    assert "batch 3: invalid loss nan" in capsys.readouterr().err
    assert path.read_bytes() == before          # the checkpoint is byte-identical
    # three good batches were applied, the NaN batch was not
    assert all(np.isfinite(w).all() for w in m.get_weights())
    assert any(not np.array_equal(a, b) for a, b in zip(weights, m.get_weights()))


def test_nan_without_terminate_on_nan_is_refused_before_training():
    m = _model()
    w = m.get_weights()
    x = np.full((8, 4), np.nan, dtype=np.float32)
    with pytest.raises(ValueError, match="expected finite values"):
        m.fit(x, np.zeros(8, dtype=int), verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(w, m.get_weights()))
