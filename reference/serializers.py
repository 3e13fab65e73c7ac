"""Chainer's serializer protocol and npz checkpoints (atomic save, validated load).

``opt.serialize(serializer)`` walks the optimizer exactly as Chainer does:
``value = serializer(key, value)`` for leaves, ``serializer[name]`` for sub-paths. A
:class:`DictionarySerializer` collects ``{path: array}``; an :class:`NpzDeserializer` answers
from a loaded checkpoint. :func:`load_npz` reads and checks the whole file first, then
deserializes into the optimizer and restores the optimizer's previous state if any key,
shape, dtype or counter is wrong, so a failed load changes nothing.
"""

import io
import os
import tempfile
import zipfile

import numpy

__all__ = ["Serializer", "Deserializer", "DictionarySerializer", "NpzDeserializer",
           "CheckpointError", "MissingKeyError", "save_npz", "load_npz"]


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, or a value in it does not fit the optimizer."""


class MissingKeyError(CheckpointError, KeyError):
    """A key the optimizer needs is absent (a KeyError, as in Chainer, and a ValueError)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class Serializer:
    """Base class of the writing side of the protocol."""


class Deserializer:
    """Base class of the reading side of the protocol."""

    def has(self, key):
        raise NotImplementedError


class DictionarySerializer(Serializer):
    """Collects every serialized value into ``target`` under ``path + key``."""

    def __init__(self, target=None, path=""):
        self.target = {} if target is None else target
        self.path = path

    def __getitem__(self, key):
        return DictionarySerializer(self.target, self.path + key.strip("/") + "/")

    def __call__(self, key, value):
        self.target[self.path + key.lstrip("/")] = numpy.asarray(value)
        return value


class NpzDeserializer(Deserializer):
    """Answers ``serializer(key, value)`` from a mapping of arrays (a loaded npz).

    ``value is None`` returns the stored array; a numpy array ``value`` gets the stored array
    cast to its dtype (Chainer's ``copyto``); a Python number gets a number of its type.
    A missing key raises :class:`MissingKeyError` naming the file and the key.
    """

    def __init__(self, arrays, path="", source="<checkpoint>"):
        self.arrays = arrays
        self.path = path
        self.source = source

    def __getitem__(self, key):
        return NpzDeserializer(self.arrays, self.path + key.strip("/") + "/", self.source)

    def has(self, key):
        return self.path + key.lstrip("/") in self.arrays

    def __call__(self, key, value):
        full_key = self.path + key.lstrip("/")
        if full_key not in self.arrays:
            raise MissingKeyError("{}: key {!r} is missing".format(self.source, full_key))
        stored = self.arrays[full_key]
        if stored.dtype == object and stored.shape == () and stored[()] is None:
            return None
        if value is None:
            return stored
        if isinstance(value, numpy.ndarray):
            if stored.shape != value.shape:
                raise CheckpointError("{}: key {!r} has shape {}, expected {}".format(
                    self.source, full_key, stored.shape, value.shape))
            if stored.dtype.kind not in "fiub":
                raise CheckpointError("{}: key {!r} has dtype {}, expected a number array"
                                      .format(self.source, full_key, stored.dtype))
            return stored.astype(value.dtype)
        if stored.shape != () or stored.dtype.kind not in "fiub":
            raise CheckpointError("{}: key {!r} must be a scalar number, found {} {}".format(
                self.source, full_key, stored.dtype, stored.shape))
        if isinstance(value, (bool, numpy.bool_)):
            return bool(stored.item())
        return stored.item()


def save_npz(path, optimizer, compression=True):
    """Writes ``optimizer``'s checkpoint to ``path`` atomically (temp file + os.replace)."""
    serializer = DictionarySerializer()
    optimizer.serialize(serializer)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            writer = numpy.savez_compressed if compression else numpy.savez
            writer(stream, **serializer.target)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def read_npz(path):
    """Reads every array of an npz file, raising CheckpointError for a damaged file."""
    try:
        with open(path, "rb") as stream:
            raw = stream.read()
        with numpy.load(io.BytesIO(raw), allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as error:
        raise CheckpointError("{}: not a readable npz checkpoint ({}: {})".format(
            path, type(error).__name__, error)) from error


def load_npz(path, optimizer):
    """Loads a checkpoint into ``optimizer``; on any error the optimizer is left unchanged."""
    arrays = read_npz(path)
    snapshot = optimizer.snapshot()
    try:
        optimizer.serialize(NpzDeserializer(arrays, source=str(path)))
    except CheckpointError:
        optimizer.restore(snapshot)
        raise
    except (TypeError, ValueError, KeyError) as error:
        optimizer.restore(snapshot)
        raise CheckpointError("{}: {}".format(path, error)) from error
