"""gpudl.distributed in this process: the world of one (no launcher), the pieces the ranks
rely on (shares, the fused reducer, per-sample masks and augmentation, metric sums), and the
NCCL communicator's start-up against stand-ins for MPI and CuPy's NCCL."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import gpudl
import gpudl.distributed as dist
from gpudl import augment, callbacks, layers, optimizers
from gpudl import functional as F
from gpudl import random as grandom
from gpudl.distributed.reduce import GradientReducer, combine_states, share


@pytest.fixture(autouse=True)
def _fresh_world():
    dist.shutdown()
    yield
    dist.shutdown()


def _model(dropout=0.3, seed=7):
    gpudl.set_seed(seed)
    m = gpudl.Sequential([layers.Dense(16, activation="relu", kernel_regularizer="l2"), layers.Dropout(dropout),
                          layers.Dense(16, activation="relu"), layers.Dropout(2 * dropout / 3, seed=3),
                          layers.Dense(3, activation="softmax")], input_shape=(16,))
    m.compile(optimizers.Adam(1e-2, global_clipnorm=1.0), "sparse_categorical_crossentropy", ["accuracy"])
    return m


def _data(n=45):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 16)).astype(np.float32), rng.integers(0, 3, n)


def _same_weights(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


def test_without_a_launcher_the_world_is_one_and_fit_is_unchanged():
    x, y = _data()
    aug = augment.RandomShiftRotate(max_shift=1, max_rotation=10.0, image_shape=(4, 4))
    kw = dict(batch_size=8, epochs=3, verbose=0, seed=5, validation_split=0.2, augment=aug,
              callbacks=[callbacks.ReduceLROnPlateau(monitor="val_loss", patience=0, factor=0.5)])
    a, b = _model(), _model()
    ha = a.fit(x, y, **kw)
    hb = b.fit(x, y, distributed=True, **kw)
    assert isinstance(dist.world(), dist.LocalCommunicator)
    assert (dist.rank(), dist.size(), dist.local_rank()) == (0, 1, 0)
    assert _same_weights(a, b)
    assert ha.history == hb.history and len(ha.epoch) == 3


def test_compiling_with_a_distributed_optimizer_makes_fit_distributed_and_saves(tmp_path):
    x, y = _data()
    a, b = _model(), _model()
    b.compile(dist.DistributedOptimizer(optimizers.Adam(1e-2, global_clipnorm=1.0)),
              "sparse_categorical_crossentropy", ["accuracy"])
    a.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=1)
    b.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=1)
    assert _same_weights(a, b) and type(b.optimizer) is optimizers.Adam
    b.save(tmp_path / "b.gpudl")
    meta = gpudl.io.load_file(tmp_path / "b.gpudl")[0]
    assert meta["training"]["world_size"] == 1 and meta["training"]["global_batch_size"] == 8


def test_importing_gpudl_or_a_world_of_one_never_imports_mpi4py():
    code = ("import sys, os; [os.environ.pop(k, None) for k in list(os.environ) if k.startswith(('PMI', 'OMPI', "
            "'HYDRA', 'MPI_'))]; import gpudl, gpudl.distributed as d; d.init(); print(d.size(), "
            "'mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "False"]


def test_init_refuses_an_unknown_backend():
    with pytest.raises(ValueError, match="backend expected one of 'auto', 'mpi', 'nccl', got 'gloo'"):
        dist.init("gloo")
    with pytest.raises(TypeError, match="distributed expected True, False or None"):
        _model().fit(*_data(), distributed="yes")


def test_shares_cover_the_batch_in_order_and_differ_by_at_most_one():
    for n in (0, 1, 2, 7, 16):
        for size in (1, 2, 3, 5):
            parts = [share(n, r, size) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(parts[r][1] == parts[r + 1][0] for r in range(size - 1))
            lens = [hi - lo for lo, hi in parts]
            assert max(lens) - min(lens) <= 1


class _PairedComm:
    """Two ranks in one process: each allreduce adds the buffer the other rank left."""

    size = 2

    def __init__(self, rank, peer_buffers):
        self.rank, self.peer = rank, peer_buffers

    def allreduce(self, buf):
        buf += self.peer.pop(0)
        return buf

    def allgather_object(self, obj):
        other = self.peer.pop(0)
        return [obj, other] if self.rank == 0 else [other, obj]


def test_reducer_weights_shares_and_an_empty_share_adds_zeros_not_nan():
    p = gpudl.Parameter(np.zeros(3))
    q = gpudl.Parameter(np.zeros(2))
    g_rank0 = [np.array([1.0, 2.0, 3.0]), None]  # q without a gradient anywhere
    # rank 1 holds no sample: weight 0, no gradients, its loss absent
    r1 = GradientReducer(dist.LocalCommunicator())
    buf1, _ = r1._layout([p, q], 1)
    r1.reduce([p, q], [None, None], 0.0, extras=[np.float64(np.inf)])
    peer = [r1._buf.copy()]
    assert np.all(r1._buf == 0)
    r0 = GradientReducer(_PairedComm(0, peer))
    grads, (loss,) = r0.reduce([p, q], g_rank0, 1.0, extras=[np.float64(2.5)])
    np.testing.assert_array_equal(grads[0], [1.0, 2.0, 3.0])
    assert grads[1] is None and float(loss) == 2.5
    assert r0.bytes_per_step == (3 + 2 + 2 + 1) * 8


def test_penalty_counts_once_when_shares_are_weighted():
    # the L2 gradient of a model split 1:2 over two "ranks" sums to one model's
    x, y = _data(3)
    grads = []
    for lo, hi in [(0, 3), (0, 1), (1, 3)]:
        m = _model(dropout=0.0)
        m.train(True)
        total, _ = m._forward_loss(gpudl.Tensor(x[lo:hi]), y[lo:hi], None, training=True)
        total.backward()
        grads.append([p.grad.astype(np.float64) for p in m.trainable_params()])
    whole, a, b = grads
    for g, ga, gb in zip(whole, a, b):
        np.testing.assert_allclose(ga * (1 / 3) + gb * (2 / 3), g, rtol=1e-5, atol=1e-7)


def test_a_share_gets_the_global_batch_s_dropout_mask_rows():
    x = np.ones((10, 6), dtype=np.float32)
    with grandom.training_step(4, 0, key=99):
        whole = F.dropout(gpudl.Tensor(x), 0.5).data
        seeded = layers.Dropout(0.5, seed=1)
        seeded.train(True)
        whole_seeded = seeded(gpudl.Tensor(x)).data
    for lo, hi in [(0, 3), (3, 10), (7, 7)]:
        with grandom.training_step(4, lo, key=99):
            part = F.dropout(gpudl.Tensor(x[lo:hi]), 0.5).data
            part_seeded = seeded(gpudl.Tensor(x[lo:hi])).data
        np.testing.assert_array_equal(part, whole[lo:hi])
        np.testing.assert_array_equal(part_seeded, whole_seeded[lo:hi])
    assert 0 < (whole == 0).sum() < whole.size


def test_a_share_gets_the_global_batch_s_augmentation():
    aug = augment.RandomShiftRotate(max_shift=2, max_rotation=20.0)
    x = np.random.default_rng(0).uniform(size=(9, 7, 7)).astype(np.float32)
    whole = aug(x, np.random.default_rng(5), sample_offset=0)
    for lo, hi in [(0, 4), (4, 9), (9, 9)]:
        np.testing.assert_array_equal(aug(x[lo:hi], np.random.default_rng(5), sample_offset=lo), whole[lo:hi])
    assert not np.array_equal(whole, x)
    with pytest.raises(ValueError, match="non-negative integer sample_offset, got -1"):
        aug(x, np.random.default_rng(5), sample_offset=-1)


class _GatherComm:
    """Rank ``rank`` of two; allgather answers with the other rank's object given beforehand."""

    size = 2

    def __init__(self, rank, other):
        self.rank, self.other = rank, other
        self.sent = None

    def allgather_object(self, obj):
        self.sent = obj
        return [obj, self.other] if self.rank == 0 else [self.other, obj]


def test_metric_states_sum_over_ranks_and_an_idle_rank_takes_them():
    from gpudl import metrics
    busy = metrics.get("accuracy")
    busy.update_state(np.array([0, 1, 1]), np.eye(3)[[0, 1, 2]])  # 2 of 3 right
    idle = metrics.get("accuracy")  # this rank saw nothing: unresolved, no state
    # rank 0 (busy) meets rank 1 (idle); rank 1 meets what rank 0 sent
    c0 = _GatherComm(0, [None])
    dist.allreduce_metrics([busy], c0)
    dist.allreduce_metrics([idle], _GatherComm(1, c0.sent))
    assert busy.result() == idle.result() == pytest.approx(2 / 3)
    other = metrics.get("accuracy")
    other.update_state(np.array([2]), np.eye(3)[[2]])
    c = _GatherComm(1, c0.sent)
    dist.allreduce_metrics([other], c)  # both busy: the counts add
    assert other.result() == pytest.approx(3 / 4)
    assert combine_states([None, {"a": 1.0}, {"a": 2.0}]) == {"a": 3.0}


def test_mid_epoch_resume_needs_the_saved_global_batch_size(tmp_path):
    x, y = _data()
    m = _model()
    ck = tmp_path / "ck.gpudl"

    class Stop(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        m.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[callbacks.ModelCheckpoint(ck, save_freq=2), Stop()])
    with pytest.raises(ValueError, match="global batch_size of 8; resume it with batch_size=8, got 16"):
        _model().fit(x, y, batch_size=16, epochs=2, verbose=0, resume_from=ck, distributed=True)


# ---- NCCL start-up, against stand-ins for MPI's communicator and CuPy's NCCL -----------------

class _FakeMPIComm:
    """rank ``rank`` of ``size`` on one node; bcast hands rank 0's object to every rank."""

    board = {}

    def __init__(self, rank, size, log):
        self.rank, self.size, self.log = rank, size, log

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    def Split_type(self, kind, key=0):
        return self

    def Free(self):
        pass

    def bcast(self, obj, root=0):
        if self.rank == root:
            _FakeMPIComm.board["uid"] = obj
        self.log.append(("bcast", self.rank))
        return _FakeMPIComm.board["uid"]


class _FakeArray:
    """What the communicator reads of a CuPy array."""

    __module__ = "cupy._stand_in"

    def __init__(self, n, dtype):
        self.size, self.dtype, self.ndim = n, np.dtype(dtype), 1
        self.data = type("Ptr", (), {"ptr": 0xABC})()
        self.flags = type("Flags", (), {"c_contiguous": True})()


def _fakes(log, devices=2):
    class Nccl:
        NCCL_SUM, NCCL_FLOAT32, NCCL_FLOAT64, NCCL_FLOAT16, NCCL_INT32, NCCL_INT64 = range(6)

        @staticmethod
        def get_unique_id():
            log.append("get_unique_id")
            return (1, 2, 3)

        class NcclCommunicator:
            def __init__(self, ndev, uid, rank):
                log.append(("NcclCommunicator", ndev, uid, rank))

            def allReduce(self, send, recv, count, dtype, op, stream):
                log.append(("allReduce", send, recv, count, dtype, op, stream))

            def bcast(self, buf, count, dtype, root, stream):
                log.append(("bcast_nccl", buf, count, dtype, root, stream))

    class Device:
        def __init__(self, i):
            self.i = i

        def use(self):
            log.append(("Device.use", self.i))

    class Stream:
        ptr = 0x5EED

    cuda = type("cuda", (), {"Device": Device, "runtime": type("rt", (), {"getDeviceCount": staticmethod(
        lambda: devices)}), "get_current_stream": staticmethod(lambda: Stream)})
    return type("cupy", (), {"cuda": cuda}), Nccl


def test_nccl_start_up_selects_the_device_then_shares_rank_0_s_id():
    pytest.importorskip("mpi4py")
    logs = []
    for rank in (0, 1):
        log = []
        cupy, nccl = _fakes(log)
        c = dist.NCCLCommunicator(_FakeMPIComm(rank, 2, log), cupy=cupy, nccl=nccl)
        assert (c.rank, c.size, c.local_rank, c.device_id) == (rank, 2, rank, rank)
        c.allreduce(_FakeArray(5, np.float32))
        c.bcast(_FakeArray(4, np.float64), root=0)
        logs.append(log)
    rank0, rank1 = logs
    assert rank0[:4] == [("Device.use", 0), "get_unique_id", ("bcast", 0), ("NcclCommunicator", 2, (1, 2, 3), 0)]
    assert rank1[:3] == [("Device.use", 1), ("bcast", 1), ("NcclCommunicator", 2, (1, 2, 3), 1)]
    assert "get_unique_id" not in rank1
    # in place, on CuPy's current stream, as one call each
    assert rank1[3] == ("allReduce", 0xABC, 0xABC, 5, 1, 0, 0x5EED)
    assert rank1[4] == ("bcast_nccl", 0xABC, 4, 2, 0, 0x5EED)


def test_nccl_ranks_beyond_the_node_s_gpus_wrap_around():
    pytest.importorskip("mpi4py")
    log = []
    cupy, nccl = _fakes(log, devices=2)
    c = dist.NCCLCommunicator(_FakeMPIComm(3, 4, log), cupy=cupy, nccl=nccl)
    assert c.device_id == 1 and log[0] == ("Device.use", 1)
    with pytest.raises(TypeError, match="expected a float16/32/64 or int32/64 buffer, got uint8"):
        c.allreduce(_FakeArray(3, np.uint8))


# ---- the GPU path, on gpudl's CuPy stand-in (make test's gpu tier) ---------------------------

def _stand_in():
    import importlib.util
    spec = importlib.util.find_spec("cupy")
    return spec is not None and spec.origin is not None and "fakecupy" in spec.origin


@pytest.mark.gpu
@pytest.mark.skipif(not _stand_in(), reason="counts transfers on gpudl's CuPy stand-in (PYTHONPATH=tests/fakecupy)")
def test_distributed_fit_on_the_device_equals_fit_and_moves_nothing_more():
    import cupy
    x, y = _data(48)

    def run(n, distributed):
        gpudl.set_backend("cupy")
        m = _model()
        cupy.reset_transfers()
        h = m.fit(x[:n], y[:n], batch_size=8, epochs=1, verbose=0, seed=2, distributed=distributed)
        return m, h, dict(cupy.transfers)
    for n in (24,):
        a, ha, plain = run(n, False)
        b, hb, fused = run(n, True)
        assert _same_weights(a, b) and ha.history == hb.history
        # the fused buffer, its flags and the loss are written on the device: no extra copy
        assert fused == plain, f"{n // 8} distributed steps moved {fused}, plain fit {plain}"


def test_the_train_command_takes_distributed(capsys):
    from gpudl.cli import main
    rc = main(["train", "--distributed", "--dataset", "digits", "--epochs", "1", "--limit", "200",
               "--batch-size", "64", "--backend", "numpy", "--verbose", "0"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "distributed: 1 ranks (local)" in out and "mlp on digits: 1 epochs" in out
