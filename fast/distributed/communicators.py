"""Communicators: who the ranks are and the few collectives the optimizer needs.

Both communicators sit on an existing engine; none moves bytes itself:

- ``MpiCommunicator`` ("mpi"): NumPy arrays through mpi4py (any MPI; the tests use the
  MPICH wheel). Arrays are exchanged with mpi4py's buffer calls (``Reduce_scatter_block``,
  ``Allgather``, ``Bcast``), small host objects with its pickle-based calls
  (``allgather``, ``bcast``, ``gather``).
- ``PureNcclCommunicator`` ("pure_nccl"): CuPy arrays through NCCL (``cupy.cuda.nccl``), as
  ChainerMN's communicator of that name; host objects and NCCL's unique id go over MPI.
  UNVERIFIED: no GPU was available when it was written (docs/distributed.md).

The "mpi" communicator sums float16 buffers with a reduction of its own given to MPI
(``MPI.Op.Create``): fast's F16C sum (fast.backends.cpu.sum_f16_into), which rounds each
sum of two float16 values to the float16 nearest it, the bits MPICH's float16 ``MPI.SUM``
gives, several times faster than MPICH's software float16 arithmetic. MPI still moves the
bytes and chooses the algorithm (a commutative reduction, as ``MPI.SUM``).

Every call is collective: all ranks must make the same calls in the same order.
"""
import os
import pickle

import numpy

from fast.backends import cpu as cpu_backend
from fast.distributed.abort import abort_on_uncaught_exception

#: ChainerMN's default chunk for broadcasting a pickled object (MPI counts are 32-bit ints)
OBJECT_CHUNK_BYTES = 256 * 1024 * 1024


def _world(mpi_comm):
    """The MPI communicator to use (COMM_WORLD by default); imports mpi4py."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError("fast.distributed needs mpi4py (pip install mpi4py, and an MPI such "
                          "as the mpich wheel)") from err
    return MPI, (MPI.COMM_WORLD if mpi_comm is None else mpi_comm)


def _usable_cores():
    """The cores this process may run on (its affinity mask), as a sorted list."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks on this platform
        return list(range(os.cpu_count() or 1))


def core_share(masks, intra_rank):
    """This rank's share of its node's cores: the ranks whose affinity mask equals its own
    (all of them when MPI does not bind ranks to cores) split the mask's cores, the first
    ranks taking one more where they do not divide evenly; at least one. ``masks``: every
    rank's mask on the node, by intra rank."""
    mine = masks[intra_rank]
    sharing = [r for r, mask in enumerate(masks) if mask == mine]
    base, extra = divmod(len(mine), len(sharing))
    return max(1, base + (1 if sharing.index(intra_rank) < extra else 0))


def _node_layout(MPI, comm):
    """(intra_rank, intra_size, inter_rank, inter_size, core share): this process's place
    among the processes of its node (MPI's shared-memory split), its node's among the
    nodes, as ChainerMN names them, and its share of the node's cores (``core_share``).
    Collective."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    try:
        intra_rank, intra_size = node.Get_rank(), node.Get_size()
        share = core_share(node.allgather(_usable_cores()), intra_rank)
        leaders = comm.Split(0 if intra_rank == 0 else MPI.UNDEFINED, key=comm.Get_rank())
        inter = None
        if leaders != MPI.COMM_NULL:
            inter = (leaders.Get_rank(), leaders.Get_size())
            leaders.Free()
        inter_rank, inter_size = node.bcast(inter, root=0)
    finally:
        node.Free()
    return intra_rank, intra_size, inter_rank, inter_size, share


def _host_contiguous(array):
    """A C-contiguous NumPy array of ``array``'s values (a CuPy array is copied to the host;
    a contiguous NumPy array is itself)."""
    if not isinstance(array, numpy.ndarray) and hasattr(array, "get"):
        array = array.get()
    return numpy.ascontiguousarray(array)


def _float16_sum(incoming, inout, datatype):
    """MPI user function: ``inout += incoming`` for float16 buffers (fast's F16C sum;
    NumPy's float16 addition, the same bits, where the build lacks F16C)."""
    incoming = numpy.frombuffer(incoming, dtype=numpy.float16)
    inout = numpy.frombuffer(inout, dtype=numpy.float16)
    if not cpu_backend.sum_f16_into(inout, incoming):
        numpy.add(incoming, inout, out=inout)


class MpiCommunicator(object):
    """Collectives over an mpi4py communicator, on NumPy arrays.

    ``rank``, ``size``, ``intra_rank``/``intra_size`` (within the node) and
    ``inter_rank``/``inter_size`` (the node among the nodes) as in ChainerMN, and
    ``core_share``, this rank's share of its node's cores (``core_share``); besides the
    collectives the optimizers use, the object calls ChainerMN's dataset, iterator and
    extension helpers make (``bcast_obj``, ``gather_obj``, ``allreduce_obj``, ``send_obj``,
    ``recv_obj``, and ``bcast`` of an array), with ChainerMN's signatures.
    """

    name = "mpi"
    xp = numpy

    def __init__(self, mpi_comm=None):
        self._MPI, self.mpi_comm = _world(mpi_comm)
        self.rank = self.mpi_comm.Get_rank()
        self.size = self.mpi_comm.Get_size()
        (self.intra_rank, self.intra_size, self.inter_rank, self.inter_size,
         self.core_share) = _node_layout(self._MPI, self.mpi_comm)
        self._float16_sum_op = None

    def array_device_kind(self):
        """The kind of array this communicator exchanges ('cpu': NumPy)."""
        return "cpu"

    def reduce_scatter_sum(self, padded, shard):
        """``shard`` = block ``rank`` of the sum over the ranks of ``padded`` (contiguous
        NumPy arrays of one float dtype; ``padded.size == size * shard.size``). float16 is
        summed by fast's reduction (the module doc), other dtypes by ``MPI.SUM``."""
        self.mpi_comm.Reduce_scatter_block(padded, shard, op=self.sum_op(padded.dtype))

    def sum_op(self, dtype):
        """The MPI reduction that sums arrays of ``dtype``: fast's float16 sum for float16
        (created at first use), ``MPI.SUM`` for the others."""
        if numpy.dtype(dtype) != numpy.float16:
            return self._MPI.SUM
        if self._float16_sum_op is None:
            self._float16_sum_op = self._MPI.Op.Create(_float16_sum, commute=True)
        return self._float16_sum_op

    def allgather_blocks(self, padded):
        """Every rank's block ``rank`` of ``padded`` (size * block elements) into every
        rank's ``padded``, in place."""
        self.mpi_comm.Allgather(self._MPI.IN_PLACE, padded)

    def bcast_array(self, array, root=0):
        """Overwrite a contiguous NumPy array with ``root``'s, in place."""
        self.mpi_comm.Bcast(array, root=root)

    def allgather_host(self, array):
        """Every rank's copy of a (small) host NumPy array, stacked by rank: shape
        (size,) + array.shape. Host data goes over MPI with either communicator."""
        array = numpy.ascontiguousarray(array)
        out = numpy.empty((self.size,) + array.shape, dtype=array.dtype)
        self.mpi_comm.Allgather(array, out)
        return out

    def gather_pieces(self, piece, counts, root=0):
        """On ``root``: a new flat host array, every rank's ``piece`` (a contiguous array of
        ``counts[r]`` elements on rank r, of one dtype; NumPy or CuPy) in rank order; None
        elsewhere. One ``Gatherv`` of host data."""
        piece = _host_contiguous(piece)
        kind = self._datatype(piece.dtype)
        out = numpy.empty(int(sum(counts)), dtype=piece.dtype) if self.rank == root else None
        self.mpi_comm.Gatherv([piece, piece.size, kind], [out, list(counts), kind] if self.rank == root else None,
                              root=root)
        return out

    def allgather_pieces(self, piece, counts):
        """``gather_pieces`` on every rank (one ``Allgatherv`` of host data)."""
        piece = _host_contiguous(piece)
        kind = self._datatype(piece.dtype)
        out = numpy.empty(int(sum(counts)), dtype=piece.dtype)
        self.mpi_comm.Allgatherv([piece, piece.size, kind], [out, list(counts), kind])
        return out

    @staticmethod
    def _datatype(dtype):
        """The MPI datatype of a NumPy dtype (given explicitly: a view of fast's staggered
        buffers exports its format as '=f', which mpi4py does not map)."""
        from mpi4py.util.dtlib import from_numpy_dtype
        return from_numpy_dtype(dtype)

    def allgather_obj(self, obj):
        """Every rank's (small, picklable) ``obj``, as a list indexed by rank."""
        return self.mpi_comm.allgather(obj)

    def gather_obj(self, obj, root=0):
        """Every rank's (picklable) ``obj`` as a list on ``root``; None elsewhere."""
        return self.mpi_comm.gather(obj, root=root)

    def bcast_obj(self, obj, max_buf_len=OBJECT_CHUNK_BYTES, root=0):
        """``root``'s (picklable) ``obj`` on every rank: pickled, and broadcast in pieces of at
        most ``max_buf_len`` bytes (ChainerMN's signature and chunking)."""
        if max_buf_len is None or max_buf_len < 1:
            raise ValueError("max_buf_len must be a positive number of bytes, got {!r}".format(max_buf_len))
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL) if self.rank == root else None
        length = self.mpi_comm.bcast(None if data is None else len(data), root=root)
        buffer = bytearray(data) if data is not None else bytearray(length)
        view = memoryview(buffer)
        for begin in range(0, length, max_buf_len):
            self.mpi_comm.Bcast([view[begin:begin + max_buf_len], self._MPI.BYTE], root=root)
        return obj if self.rank == root else pickle.loads(buffer)

    def allreduce_obj(self, obj):
        """The sum over the ranks of a (picklable) ``obj`` (ChainerMN's: mpi4py's allreduce)."""
        return self.mpi_comm.allreduce(obj)

    def send_obj(self, obj, dest, tag=0):
        """Send a (picklable) ``obj`` to rank ``dest`` (point to point)."""
        self.mpi_comm.send(obj, dest=dest, tag=tag)

    def recv_obj(self, source, status=None, tag=None):
        """Receive an object sent by ``send_obj`` from rank ``source`` (any tag by default)."""
        return self.mpi_comm.recv(source=source, status=status, tag=self._MPI.ANY_TAG if tag is None else tag)

    def bcast(self, x, root=0):
        """``root``'s NumPy array ``x`` on every rank (others pass anything, e.g. None); the
        shape and dtype travel with it (ChainerMN's array broadcast)."""
        meta = (tuple(x.shape), numpy.dtype(x.dtype).str) if self.rank == root else None
        shape, dtype = self.mpi_comm.bcast(meta, root=root)
        out = numpy.ascontiguousarray(x) if self.rank == root else numpy.empty(shape, dtype=dtype)
        self.mpi_comm.Bcast(out, root=root)
        return out


_NCCL_DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64"}


class PureNcclCommunicator(MpiCommunicator):
    """Collectives over NCCL on CuPy arrays; host objects over MPI.

    The NCCL communicator is created at the first array collective, on the CUDA device
    current then (as ChainerMN does: select each rank's device first, typically
    ``cupy.cuda.Device(comm.intra_rank).use()``). Rank 0 draws NCCL's unique id and
    broadcasts it over MPI. Arrays are reduced on CuPy's current stream.

    UNVERIFIED on GPUs (none was available): see docs/distributed.md.
    """

    name = "pure_nccl"

    def __init__(self, mpi_comm=None):
        super(PureNcclCommunicator, self).__init__(mpi_comm)
        import cupy
        from cupy.cuda import nccl
        if not nccl.available:
            raise RuntimeError("the 'pure_nccl' communicator needs NCCL, which CuPy cannot load here")
        self.xp, self._cupy, self._nccl = cupy, cupy, nccl
        self._nccl_comm = None

    def array_device_kind(self):
        return "cuda"

    def _comm(self):
        if self._nccl_comm is None:
            uid = self._nccl.get_unique_id() if self.rank == 0 else None
            uid = self.mpi_comm.bcast(uid, root=0)
            self._nccl_comm = self._nccl.NcclCommunicator(self.size, uid, self.rank)
        return self._nccl_comm

    def _type_id(self, array):
        name = _NCCL_DTYPES.get(array.dtype.name)
        if name is None:
            raise TypeError("NCCL exchanges float16/32/64 arrays here, got {}".format(array.dtype))
        return getattr(self._nccl, name)

    def _stream(self):
        return self._cupy.cuda.get_current_stream().ptr

    def reduce_scatter_sum(self, padded, shard):
        """``shard`` = block ``rank`` of the sum over the ranks of ``padded`` (ncclReduceScatter)."""
        self._comm().reduceScatter(padded.data.ptr, shard.data.ptr, shard.size, self._type_id(shard),
                                   self._nccl.NCCL_SUM, self._stream())

    def allgather_blocks(self, padded):
        """Every rank's block ``rank`` of ``padded`` into every rank's ``padded``, in place
        (ncclAllGather with the send buffer inside the receive buffer)."""
        block = padded.size // self.size
        send = padded.data.ptr + self.rank * block * padded.itemsize
        self._comm().allGather(send, padded.data.ptr, block, self._type_id(padded), self._stream())

    def bcast_array(self, array, root=0):
        """Overwrite a contiguous CuPy array with ``root``'s, in place."""
        self._comm().bcast(array.data.ptr, array.size, self._type_id(array), root, self._stream())


def create_communicator(name="mpi", mpi_comm=None, abort_on_error=True, cpu_threads=None):
    """A communicator by ChainerMN's name: "mpi" (NumPy arrays over mpi4py) or "pure_nccl"
    (CuPy arrays over NCCL, unverified). ``mpi_comm``: an mpi4py communicator
    (``MPI.COMM_WORLD`` by default). ``abort_on_error``: an uncaught exception on this rank
    aborts the whole job instead of leaving the other ranks waiting in a collective
    (fast.distributed.abort; ``False`` leaves ``sys.excepthook`` alone).

    ``cpu_threads``: the threads of fast's CPU passes on this rank (``fast.set_cpu_threads``).
    None: the rank's share of its node's cores (``comm.core_share``), unless the user chose
    already (``fast.set_cpu_threads`` called before, or ``OMP_NUM_THREADS`` set), which is
    left as it is; an int: that many."""
    if name not in ("mpi", "pure_nccl"):
        raise ValueError("unknown communicator {!r}: use 'mpi' or 'pure_nccl'".format(name))
    if cpu_threads is not None and (isinstance(cpu_threads, bool) or not isinstance(cpu_threads, int)
                                    or cpu_threads < 1):
        raise ValueError("cpu_threads must be a positive int or None, got {!r}".format(cpu_threads))
    comm = MpiCommunicator(mpi_comm) if name == "mpi" else PureNcclCommunicator(mpi_comm)
    if cpu_threads is not None:
        cpu_backend.set_threads(cpu_threads)
    elif cpu_backend.threads_chosen_by() != "user" and "OMP_NUM_THREADS" not in os.environ:
        cpu_backend.set_threads(comm.core_share, chosen_by="share")
    if abort_on_error:
        abort_on_uncaught_exception(comm.mpi_comm)
    return comm
