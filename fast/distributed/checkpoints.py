"""Collective npz checkpoints of a multi-node optimizer, in the single-process layout.

Saving: every rank lists its state as the single-process serializer writes it, the arrays
as live views (nothing copied); the ranks check that they agree on what they must share
(replicated: the whole state; ZeRO: the keys and every counter and scalar, since each rank
holds different pieces of the arrays); then the keys are written in order, one at a time,
by rank 0 (ZeRO: each array gathered whole on rank 0 from every rank's piece just before it
is written, so no rank holds more than its shard and one parameter's array), as
``fast.serializers.save_npz`` writes them (atomically: a temporary file renamed over the
target); every rank returns once it is written, or raises rank 0's error. Other ranks write
nothing (a file object given to them is left alone).

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
from fast.serializers import NpzWriter, check_npz, host_array, open_npz


def entries_digest(entries):
    """A digest of a serialized state's (key, value) entries, in their order: every key and
    its value (read one at a time)."""
    return agreement.digest(*[value for _, value in entries]) + ":" + agreement.digest(
        *[bytearray(key.encode()) for key, _ in entries])


def _rank0_only(comm, action):
    """Run ``action`` on rank 0, broadcast its result or error; every rank raises that error."""
    result, verdict, original = None, None, None
    if comm.rank == 0:
        result, verdict, original = agreement.run_locally(action)
    result, verdict = comm.bcast_obj((result, verdict))
    agreement.raise_agreed(comm, [verdict] + [None] * (comm.size - 1), original)
    return result


def save_npz(opt, file, compression=True):
    """Collective: the single-process npz of ``opt``'s state, written by rank 0 one key at a
    time. A failure to write on rank 0 stops its writing but not its part in gathering the
    remaining keys, so every rank reaches the end, and every rank raises rank 0's error."""
    comm = opt.communicator
    entries = agreement.agree(comm, opt.local_entries, fingerprint=opt.save_fingerprint)
    writer, verdict, original = None, None, None
    if comm.rank == 0:
        writer, verdict, original = agreement.run_locally(lambda: NpzWriter(file, compression))
    for key, value in opt.whole_entries(entries, root=0):
        if comm.rank == 0 and verdict is None:
            _, verdict, original = agreement.run_locally(lambda: writer.add(key, host_array(value)))
        del value  # before the next array is gathered
    if comm.rank == 0:
        if verdict is None:
            _, verdict, original = agreement.run_locally(writer.commit)
        elif writer is not None:
            writer.abort()
    verdict = comm.bcast_obj(verdict)
    agreement.raise_agreed(comm, [verdict] + [None] * (comm.size - 1), original)


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
