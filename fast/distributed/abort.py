"""A job whose rank dies ends, instead of hanging.

A rank that raises an exception of its own between two collectives leaves the other ranks
waiting in the next collective for ever: MPI cannot tell a slow rank from a dead one. The
hook below, installed by ``create_communicator``, turns an uncaught exception on any rank
into MPI's abort of the whole job: the rank prints its traceback (through the except hook
that was there before), then calls ``Abort(1)`` on its communicator, which ends every rank
with a non-zero exit status, as ``python -m mpi4py script.py`` and ChainerMN's
``global_except_hook`` do.
"""
import sys

#: the hooks installed, by the communicator they abort (one each)
_installed = {}


def abort_on_uncaught_exception(mpi_comm):
    """Make an uncaught exception in this process abort every rank of ``mpi_comm``'s job.
    Idempotent; ``restore_except_hook`` undoes it."""
    if sys.excepthook in _installed.values():
        return
    previous = sys.excepthook

    def hook(kind, value, traceback):
        try:
            sys.stderr.write("\nfast.distributed: uncaught exception on rank {} of {}; aborting the job "
                             "(every rank)\n".format(mpi_comm.Get_rank(), mpi_comm.Get_size()))
            previous(kind, value, traceback)
            sys.stderr.flush()
        finally:
            mpi_comm.Abort(1)

    hook.previous = previous
    _installed[id(mpi_comm)] = hook
    sys.excepthook = hook


def restore_except_hook():
    """Put back the except hook that was there before ``abort_on_uncaught_exception``."""
    current = sys.excepthook
    if current in _installed.values():
        sys.excepthook = current.previous
        _installed.clear()
