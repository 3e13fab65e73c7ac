"""A job whose rank dies ends, instead of hanging.

A rank that raises an exception of its own between two collectives leaves the other ranks
waiting in the next collective for ever: MPI cannot tell a slow rank from a dead one. The
hook below, installed by ``create_communicator``, turns an uncaught exception on any rank
into MPI's abort of the whole job: the rank writes its traceback to its standard error, then
calls ``Abort(1)`` on its communicator, which ends every rank with a non-zero exit status, as
``python -m mpi4py script.py`` and ChainerMN's ``global_except_hook`` do. An except hook of
the program's own, installed before, is called in place of the standard traceback.

The launcher forwards a rank's output from a pipe and is itself ended by the abort: what it
has not read by then is lost. The standard traceback therefore goes out in one write, and the rank
waits ``FORWARD_WAIT_S`` before aborting; a traceback printed piece by piece was seen cut
after its first line.
"""
import os
import sys
import time
import traceback

#: seconds an aborting rank leaves the launcher to forward its traceback
FORWARD_WAIT_S = 0.5

#: the hooks installed, by the communicator they abort (one each)
_installed = {}


def abort_on_uncaught_exception(mpi_comm):
    """Make an uncaught exception in this process abort every rank of ``mpi_comm``'s job.
    Idempotent; ``restore_except_hook`` undoes it."""
    if sys.excepthook in _installed.values():
        return
    previous = sys.excepthook

    def hook(kind, value, trace):
        try:
            header = "\nfast.distributed: uncaught exception on rank {} of {}; aborting the job " \
                     "(every rank)\n".format(mpi_comm.Get_rank(), mpi_comm.Get_size())
            if previous is sys.__excepthook__:
                write_all(sys.stderr, header + "".join(traceback.format_exception(kind, value, trace)))
            else:
                write_all(sys.stderr, header)
                previous(kind, value, trace)
                sys.stderr.flush()
            time.sleep(FORWARD_WAIT_S)
        finally:
            mpi_comm.Abort(1)

    hook.previous = previous
    _installed[id(mpi_comm)] = hook
    sys.excepthook = hook


def write_all(stream, text):
    """Write `text` to the file descriptor under `stream` in as few writes as the pipe allows,
    after whatever `stream` still buffers (through `stream` itself where it has no descriptor)."""
    stream.flush()
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        stream.write(text)
        stream.flush()
        return
    data = text.encode(getattr(stream, "encoding", None) or "utf-8", "backslashreplace")
    while data:
        data = data[os.write(fd, data):]


def restore_except_hook():
    """Put back the except hook that was there before ``abort_on_uncaught_exception``."""
    current = sys.excepthook
    if current in _installed.values():
        sys.excepthook = current.previous
        _installed.clear()
