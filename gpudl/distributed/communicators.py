"""Communicators: the collectives data-parallel training needs, on existing engines only.

- :class:`LocalCommunicator`: a world of one (no launcher): every collective is the identity.
- :class:`MPICommunicator`: mpi4py over ``MPI.COMM_WORLD``, for NumPy ranks (a CuPy buffer
  goes through the host).
- :class:`NCCLCommunicator`: NCCL through ``cupy.cuda.nccl`` for CuPy ranks (ChainerMN's
  design): MPI starts the job, chooses each rank's GPU by its local rank and carries NCCL's
  unique id from rank 0 to the others; the reductions run on the GPU, on the stream gpudl's
  kernels and CuPy ops use (the current stream), so they queue behind the backward pass
  without a host synchronisation.

Every collective takes a flat contiguous array and works in place. Objects (generator states,
metric states, ids) go through MPI's pickling collectives.
"""
from __future__ import annotations

import numpy as np

from .. import backend

__all__ = ["Communicator", "LocalCommunicator", "MPICommunicator", "NCCLCommunicator"]


class Communicator:
    """The interface; ``rank``, ``size``, ``local_rank`` (rank among the processes of this
    node) and ``name`` are attributes."""

    name = "base"
    rank = 0
    size = 1
    local_rank = 0
    local_size = 1

    def allreduce(self, buf):
        """Sum ``buf`` (a flat contiguous array) over the ranks, in place; returns it."""
        raise NotImplementedError

    def bcast(self, buf, root=0):
        """Overwrite ``buf`` on every rank with root's, in place; returns it."""
        raise NotImplementedError

    def bcast_object(self, obj, root=0):
        raise NotImplementedError

    def allgather_object(self, obj) -> list:
        raise NotImplementedError

    def barrier(self):
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__} rank {self.rank} of {self.size}>"


class LocalCommunicator(Communicator):
    """A world of one: what ``init()`` gives without a launcher."""

    name = "local"

    def allreduce(self, buf):
        return buf

    def bcast(self, buf, root=0):
        _check_root(root, 1)
        return buf

    def bcast_object(self, obj, root=0):
        _check_root(root, 1)
        return obj

    def allgather_object(self, obj) -> list:
        return [obj]

    def barrier(self):
        pass


def _check_root(root, size):
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not 0 <= root < size:
        raise ValueError(f"distributed: root expected a rank in [0, {size - 1}], got {root!r}")
    return int(root)


def _check_flat(buf, what):
    if buf.ndim != 1 or not buf.flags.c_contiguous:
        raise ValueError(f"distributed {what}: expected a flat contiguous array, got shape {tuple(buf.shape)}")


def import_mpi():
    """mpi4py's MPI module (imported here, at ``init`` time, never when gpudl is imported)."""
    try:
        from mpi4py import MPI  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(f"gpudl.distributed: backend 'mpi' needs mpi4py and an MPI library ({exc}); "
                          "install gpudl[distributed] (mpi4py, mpich)") from None
    return MPI


class MPICommunicator(Communicator):
    """MPI over mpi4py. ``comm`` defaults to ``MPI.COMM_WORLD``; the local rank is the rank in
    the node's shared-memory split (``COMM_TYPE_SHARED``)."""

    name = "mpi"

    def __init__(self, comm=None):
        MPI = import_mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()

    def allreduce(self, buf):
        _check_flat(buf, "allreduce")
        if self.size == 1:
            return buf
        if backend.is_cupy_array(buf):  # an MPI without CUDA awareness: through the host
            host = backend.to_numpy(buf)
            self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
            buf[...] = backend.to_backend(host, "cupy")
            return buf
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return buf

    def bcast(self, buf, root=0):
        root = _check_root(root, self.size)
        _check_flat(buf, "bcast")
        if self.size == 1:
            return buf
        if backend.is_cupy_array(buf):
            host = backend.to_numpy(buf)
            self.comm.Bcast(host, root=root)
            buf[...] = backend.to_backend(host, "cupy")
            return buf
        self.comm.Bcast(buf, root=root)
        return buf

    def bcast_object(self, obj, root=0):
        return self.comm.bcast(obj, root=_check_root(root, self.size))

    def allgather_object(self, obj) -> list:
        return self.comm.allgather(obj)

    def barrier(self):
        self.comm.Barrier()


class NCCLCommunicator(MPICommunicator):
    """NCCL through CuPy, started over MPI.

    Before anything is allocated on a GPU, each rank makes device ``local_rank`` (modulo the
    GPUs it sees) current, so the ranks of a node spread over its GPUs; then rank 0 makes the
    NCCL unique id, MPI broadcasts it, and every rank joins the NCCL communicator with it.
    ``allreduce``/``bcast`` of a CuPy buffer run on CuPy's current stream; host arrays and
    objects go over MPI.

    ``cupy`` and ``nccl`` default to the installed modules (through gpudl's backend module).
    """

    name = "nccl"

    def __init__(self, comm=None, cupy=None, nccl=None):
        super().__init__(comm)
        cp = backend._import_cupy() if cupy is None else cupy
        count = cp.cuda.runtime.getDeviceCount()
        self.device_id = self.local_rank % count
        cp.cuda.Device(self.device_id).use()  # first: every later allocation lands on it
        self.cupy = cp
        self.nccl = backend.import_nccl() if nccl is None else nccl
        uid = self.nccl.get_unique_id() if self.rank == 0 else None
        uid = self.comm.bcast(uid, root=0)
        self.nccl_comm = self.nccl.NcclCommunicator(self.size, uid, self.rank)

    def _dtype(self, buf):
        table = {np.dtype(np.float32): "NCCL_FLOAT32", np.dtype(np.float64): "NCCL_FLOAT64",
                 np.dtype(np.float16): "NCCL_FLOAT16", np.dtype(np.int32): "NCCL_INT32",
                 np.dtype(np.int64): "NCCL_INT64"}
        name = table.get(np.dtype(buf.dtype))
        if name is None:
            raise TypeError(f"distributed nccl: expected a float16/32/64 or int32/64 buffer, got {buf.dtype}")
        return getattr(self.nccl, name)

    def _stream(self):
        return self.cupy.cuda.get_current_stream().ptr

    def allreduce(self, buf):
        if not backend.is_cupy_array(buf):
            return super().allreduce(buf)
        _check_flat(buf, "allreduce")
        self.nccl_comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._dtype(buf), self.nccl.NCCL_SUM,
                                 self._stream())
        return buf

    def bcast(self, buf, root=0):
        if not backend.is_cupy_array(buf):
            return super().bcast(buf, root)
        root = _check_root(root, self.size)
        _check_flat(buf, "bcast")
        self.nccl_comm.bcast(buf.data.ptr, buf.size, self._dtype(buf), root, self._stream())
        return buf
