"""Collective npz checkpoints of a multi-node optimizer, in the single-process layout.

Saving: every rank serializes its state; the ranks check that they agree on what they must
share (replicated: the whole state; ZeRO: every counter and scalar, since each rank holds
different pieces of the arrays); the whole single-process mapping is formed on rank 0
(ZeRO: rank 0 gathers every rank's pieces); rank 0 writes the file as
``fast.serializers.save_npz`` does (atomically: a temporary file renamed over the target);
every rank returns once it is written, or raises rank 0's error. Other ranks write nothing
(a file object given to them is left alone).

Loading: rank 0 reads the file's bytes and broadcasts them; every rank validates them
against its optimizer exactly as ``fast.serializers.load_npz`` does (ZeRO: reading each
whole state or master array and keeping its own piece), the ranks agree on the verdict,
and only then does every rank load. So the file needs to exist on rank 0 only, any number
of ranks can load a file saved by any number (it holds the whole state), and a bad file
raises the same error on every rank with nothing changed.
"""
import io
import os

from fast.distributed import agreement
from fast.serializers import check_npz, open_npz, write_npz


def state_digest(arrays):
    """A digest of a serialized state: every key, in sorted order, and its array."""
    keys = sorted(arrays)
    return agreement.digest(*([arrays[k] for k in keys])) + ":" + agreement.digest(
        *[bytearray(k.encode()) for k in keys])


def _rank0_only(comm, action):
    """Run ``action`` on rank 0, broadcast its result or error; every rank raises that error."""
    result, verdict, original = None, None, None
    if comm.rank == 0:
        result, verdict, original = agreement.run_locally(action)
    result, verdict = comm.bcast_obj((result, verdict))
    agreement.raise_agreed(comm, [verdict] + [None] * (comm.size - 1), original)
    return result


def save_npz(opt, file, compression=True):
    """Collective: the single-process npz of ``opt``'s state, written by rank 0."""
    comm = opt.communicator
    arrays = agreement.agree(comm, opt.local_serialized, fingerprint=opt.save_fingerprint)
    whole = opt.whole_serialized(arrays)
    _rank0_only(comm, lambda: write_npz(file, whole, compression))


def _read_bytes(file):
    if isinstance(file, (str, os.PathLike)):
        try:
            with open(file, "rb") as f:
                return f.read()
        except OSError as err:
            raise ValueError("cannot read optimizer snapshot {!r}: {}".format(file, err)) from err
    return file.read()


def load_npz(opt, file, path="", strict=True):
    """Collective: load a single-process npz (rank 0's file) into every rank's optimizer."""
    comm = opt.communicator
    data = _rank0_only(comm, lambda: _read_bytes(file))
    opened = []
    try:
        load_opened(opt, lambda: opened.append(open_npz(io.BytesIO(data), label=file)) or opened[0],
                    file, path, strict)
    finally:
        for npz in opened:
            npz.close()


def load_opened(opt, open_archive, label, path="", strict=True):
    """Collective: every rank validates the archive ``open_archive()`` returns against its
    optimizer (under ZeRO: its pieces of each whole array), the ranks agree on the verdict,
    and only then does every rank load. ``label`` names the archive in errors."""
    deserializer, archive = [], []

    def check():
        opt.check_set_up()
        deserializer.append(opt.deserializer_for(path))
        archive.append(open_archive())
        check_npz(archive[0], opt.actual_optimizer, label, path=path, strict=strict,
                  deserializer=deserializer[0])

    agreement.agree(opt.communicator, check)
    opt.actual_optimizer.serialize(deserializer[0](archive[0], path=path, strict=strict))
