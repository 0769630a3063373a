"""Data-parallel training: one process per device, each holding the whole model, the ranks
summing their gradients every step (ChainerMN's design, on existing engines: MPI through
mpi4py for NumPy ranks, NCCL through CuPy for GPU ranks).

::

    import gpudl.distributed as dist
    dist.init()                                   # a world of one without a launcher
    model.fit(x, y, batch_size=256, distributed=True)   # batch_size is the global batch

Launch with ``mpiexec -n 4 python -m mpi4py train.py`` (``-m mpi4py`` makes a rank that
raises abort the whole job instead of leaving the others waiting in a collective).

Importing this module touches nothing: mpi4py (and NCCL) are imported by :func:`init`.
"""
from __future__ import annotations

import os
import sys

from .communicators import Communicator, LocalCommunicator, MPICommunicator, NCCLCommunicator
from .optimizer import DistributedOptimizer
from .reduce import GradientReducer, combine_states, share

__all__ = ["init", "shutdown", "world", "rank", "size", "local_rank", "broadcast_parameters",
           "DistributedOptimizer", "allreduce_metrics", "launched", "share", "Communicator",
           "LocalCommunicator", "MPICommunicator", "NCCLCommunicator", "GradientReducer"]

BACKENDS = ("auto", "mpi", "nccl")

# environment variables an MPI launcher sets in every process it starts (MPICH/Hydra, PMIx,
# Open MPI, Intel MPI, Slurm's PMI)
_LAUNCHER_ENV = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS",
                 "PMI_FD", "HYDRA_CONTROL_FD")

_world: Communicator | None = None
_writer = True  # False on the ranks > 0 while a distributed fit runs: they print and write nothing


def launched() -> bool:
    """True when this process was started by an MPI launcher (or MPI is already initialised)."""
    return "mpi4py.MPI" in sys.modules or any(v in os.environ for v in _LAUNCHER_ENV)


def init(backend: str = "auto") -> Communicator:
    """Join the job's world and return its communicator (idempotent for one backend).

    ``"auto"``: NCCL when gpudl's backend is CuPy and the job has several ranks, MPI when
    launched by mpiexec, else a world of one (mpi4py is not even imported). ``"mpi"`` and
    ``"nccl"`` insist on their engine (a clear ImportError without it). For ``"nccl"`` call
    ``init`` before anything is put on a GPU: it selects this rank's device first.
    """
    global _world
    if backend not in BACKENDS:
        raise ValueError(f"distributed.init: backend expected one of {', '.join(map(repr, BACKENDS))}, "
                         f"got {backend!r}")
    if _world is not None:
        if backend in ("auto", _world.name):
            return _world
        if _world.size > 1:
            raise ValueError(f"distributed.init: already initialised with backend {_world.name!r}, "
                             f"asked for {backend!r}")
        # a world of one asked for an explicit engine: join it
    _world = _make(backend)
    return _world


def _make(backend_name):
    from .. import backend
    if backend_name == "auto":
        if not launched():
            return LocalCommunicator()
        mpi = MPICommunicator()
        if mpi.size > 1 and backend.get_backend() == "cupy":
            return NCCLCommunicator(mpi.comm)
        return mpi if mpi.size > 1 else LocalCommunicator()
    if backend_name == "mpi":
        return MPICommunicator()
    return NCCLCommunicator()


def shutdown() -> None:
    """Forget the communicator (the next ``init`` or ``world`` starts afresh); for tests."""
    global _world, _writer
    _world, _writer = None, True


def world() -> Communicator:
    """The current communicator (``init("auto")`` on first use)."""
    return _world if _world is not None else init("auto")


def rank() -> int:
    return world().rank


def size() -> int:
    return world().size


def local_rank() -> int:
    """This process's rank among those of its node (it picks the node's GPU)."""
    return world().local_rank


def is_writer() -> bool:
    """False on a rank > 0 during a distributed fit: progress, messages and files are rank 0's."""
    return _writer


def _set_writer(value: bool) -> bool:
    global _writer
    old, _writer = _writer, bool(value)
    return old


def broadcast_parameters(model, root: int = 0, comm=None) -> None:
    """Every Parameter of ``model`` (a model, a layer, or a list of Parameters) overwritten
    in place with root's, one collective per dtype: identical starting weights everywhere."""
    from .reduce import broadcast_arrays
    comm = world() if comm is None else comm
    params = list(model) if isinstance(model, (list, tuple)) else model.params()
    broadcast_arrays(comm, [p.data for p in params], root)


def _concrete(m):
    """The metric holding the state: "accuracy" (AutoAccuracy) holds its resolved kind."""
    return m.resolved if hasattr(m, "resolved") else m


def allreduce_metrics(metrics, comm=None) -> None:
    """Sum the states of stateful metrics (``gpudl.metrics``) over the ranks, in place, so
    ``result()`` gives the metric of the whole data on every rank. States are sums (totals,
    counts, confusion counts, AUC histograms): that is what makes them add. A rank that saw
    no sample takes the others' states (and, for "accuracy", the kind they resolved to)."""
    from .. import backend
    comm = world() if comm is None else comm
    metrics = list(metrics)
    if comm.size == 1:
        return
    local = []
    for m in metrics:
        c = _concrete(m)
        if c is None or c._state is None:
            local.append(None)
        else:
            local.append((type(c), {k: backend.to_numpy(v) for k, v in c._state.items()}))
    gathered = comm.allgather_object(local)
    on_gpu = backend.get_backend() == "cupy"
    for i, m in enumerate(metrics):
        entries = [g[i] for g in gathered if g[i] is not None]
        c = _concrete(m)
        if not entries:
            continue
        cls = entries[0][0]
        if c is None:  # an unresolved "accuracy" on a rank that saw nothing
            m.resolved = c = cls(name=m.name)
        summed = combine_states([e[1] for e in entries])
        c._state = {k: backend.to_backend(v, "cupy" if on_gpu else "numpy") for k, v in summed.items()}
