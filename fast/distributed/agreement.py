"""Agreeing on errors and on what makes a step one decision, before any exchange.

A rank that meets bad input must not simply raise: the others would wait in the next
collective for ever. So each collective entry point first runs its local checks, catching
what they raise, and all ranks exchange a small verdict (``allgather`` of host objects).
If any rank failed, every rank raises the same error, built from the lowest failing rank's
exception: the same type (for the exception types below, or the nearest of them among its
base classes; ``RuntimeError`` otherwise) and the same message, prefixed with that rank.
Nothing has changed anywhere.
"""
import hashlib

import numpy

from fast.serializers import MissingKeyError

#: Exception types re-raised as themselves on every rank; others become RuntimeError.
AGREED_TYPES = {kind.__name__: kind for kind in (
    ValueError, TypeError, KeyError, IndexError, RuntimeError, ZeroDivisionError, OverflowError,
    FloatingPointError, ArithmeticError, AttributeError, NotImplementedError, LookupError,
    FileNotFoundError, PermissionError, IsADirectoryError, OSError, MissingKeyError)}


class RankError(object):
    """What one rank's local phase raised, in a form every rank can rebuild: the names of
    its type and base types, and its message."""

    def __init__(self, err):
        self.type_names = [c.__name__ for c in type(err).__mro__]
        self.message = str(err) if not isinstance(err, KeyError) or not err.args else str(err.args[0])

    def exception(self, rank, size):
        """The exception every rank raises for this error of ``rank``: of the nearest type in
        its ancestry that is in AGREED_TYPES (RuntimeError if none), its message prefixed
        with the rank (and with the original type's name when that type is not the one raised)."""
        kind = next((AGREED_TYPES[n] for n in self.type_names if n in AGREED_TYPES), RuntimeError)
        detail = self.message
        if kind.__name__ != self.type_names[0]:
            detail = "{}: {}".format(self.type_names[0], self.message)
        return kind("rank {} of {}: {}".format(rank, size, detail))


def run_locally(phase):
    """(result, None, None) or (None, RankError, the exception) for ``phase()``; only
    Exceptions are caught. The RankError is what travels; the exception stays here."""
    try:
        return phase(), None, None
    except Exception as err:
        return None, RankError(err), err


def first_failure(verdicts):
    """(rank, RankError) of the lowest rank whose verdict is an error, or None."""
    for rank, verdict in enumerate(verdicts):
        if verdict is not None:
            return rank, verdict
    return None


def raise_agreed(comm, verdicts, original=None):
    """Raise the agreed error on every rank if any verdict is an error (chained, on the
    failing rank, to its ``original`` exception)."""
    failure = first_failure(verdicts)
    if failure is None:
        return
    rank, verdict = failure
    err = verdict.exception(rank, comm.size)
    raise err from (original if rank == comm.rank else None)


def first_disagreement(fingerprints):
    """(field, values by rank) of the first field whose value differs between ranks, or None.

    ``fingerprints`` is a list (by rank) of lists of (field, value) pairs in the same order.
    """
    for k, (field, _) in enumerate(fingerprints[0]):
        values = [fp[k][1] for fp in fingerprints]
        if any(v != values[0] for v in values[1:]):
            return field, values
    return None


def _differing_items(value, other):
    """For values that are lists of (key, value) pairs: only the keys where they differ."""
    pairs = lambda v: isinstance(v, list) and all(isinstance(x, tuple) and len(x) == 2 for x in v)
    if not (pairs(value) and pairs(other)):
        return value
    mine, theirs = dict(value), dict(other)
    keys = [k for k in sorted(set(mine) | set(theirs), key=str) if mine.get(k) != theirs.get(k)]
    return ", ".join("{}={!r}".format(k, mine.get(k)) for k in keys)


def disagreement_error(field, values):
    """A ValueError naming the field and which ranks hold which value (for key-value
    lists, only the keys that differ)."""
    odd = next(v for v in values if v != values[0])
    shown = []
    for rank, value in enumerate(values):
        if rank == 0 or value != values[0]:
            shown.append("rank {}: {}".format(rank, _differing_items(value, values[0] if rank else odd)))
    return ValueError("ranks disagree on {} ({}); every rank must set up and drive the optimizer "
                      "identically".format(field, "; ".join(shown[:4])))


def agree(comm, phase, fingerprint=None):
    """Run ``phase()`` locally, then agree over the ranks: raise the same error on every
    rank if any rank's phase failed or (``fingerprint`` given) if the ranks' fingerprints
    ``fingerprint(result)`` differ. Returns this rank's result of ``phase()``. One
    ``allgather`` of host objects."""
    def local():
        result = phase()
        return result, (fingerprint(result) if fingerprint is not None else None)
    outcome, verdict, original = run_locally(local)
    gathered = comm.allgather_obj((verdict, outcome[1] if outcome is not None else None))
    raise_agreed(comm, [v for v, _ in gathered], original)
    if fingerprint is not None:
        found = first_disagreement([fp for _, fp in gathered])
        if found is not None:
            raise disagreement_error(*found)
    return outcome[0]


def digest(*arrays):
    """A short hex digest of arrays' dtypes, shapes and bytes (NumPy or CuPy)."""
    h = hashlib.blake2b(digest_size=12)
    for a in arrays:
        host = a.get() if hasattr(a, "get") and not isinstance(a, numpy.ndarray) else numpy.asarray(a)
        h.update(str((host.dtype.str, host.shape)).encode())
        h.update(numpy.ascontiguousarray(host).tobytes())
    return h.hexdigest()
