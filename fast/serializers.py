"""Optimizer snapshots in Chainer's npz layout.

Keys: ``t``, ``epoch``, and per parameter ``<name>/t`` and ``<name>/<state>``
(``<name>`` without its leading '/'). The ``fixed`` profile adds
``<name>/fp32_param``, ``<name>/beta_power`` (MSVAG),
``<name>/initial_alpha`` (AdaBound/AMSBound) and ``loss_scaling/scale``,
``loss_scaling/dynamic``, ``loss_scaling/multiplier``,
``loss_scaling/isnan_ever`` (scale and multiplier NaN when unset).

``save_npz`` writes a temporary file next to the target and renames it over
the target. ``load_npz`` first runs the whole deserialization against a
checker that validates every key, shape and dtype without writing, and only
then loads; a truncated or corrupt file raises ``ValueError`` and leaves the
optimizer as it was; a missing key raises ``MissingKeyError`` (both a
``KeyError``, as in Chainer, and a ``ValueError``). Pickled data is never
loaded (``allow_pickle=False``): a snapshot holds numbers and booleans only.
A snapshot written by Chainer loads as is.
"""
import copy
import math
import os
import pickle
import tempfile
import zipfile

import numpy


class MissingKeyError(KeyError, ValueError):
    """A key the optimizer needs is absent from the snapshot.

    A ``KeyError`` as Chainer's strict deserializer raises, and a
    ``ValueError`` like every other problem with a snapshot's content.
    """

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def host_copy(value):
    """A NumPy copy of ``value`` (a CuPy array is copied off its device)."""
    if not isinstance(value, numpy.ndarray) and type(value).__module__.startswith("cupy"):
        return value.get()
    return numpy.array(value)


def _is_array(value):
    """A NumPy or CuPy array (not a Python or NumPy scalar)."""
    return isinstance(value, numpy.ndarray) or (
        hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, numpy.generic))


def copy_into(view, data):
    """Copy host array ``data`` into ``view`` (a NumPy array, or a contiguous CuPy array:
    copied to its device) under NumPy's same-kind casting."""
    if isinstance(view, numpy.ndarray):
        numpy.copyto(view, data, casting="same_kind")
        return
    if not numpy.can_cast(data.dtype, view.dtype, casting="same_kind"):
        raise TypeError("cannot load {} values into a {} array".format(data.dtype, view.dtype))
    view.set(numpy.ascontiguousarray(numpy.broadcast_to(data, view.shape), dtype=view.dtype))


class Serializer(object):
    """Marker base class: a saving serializer (Chainer's protocol)."""


class Deserializer(object):
    """Marker base class: a loading deserializer (Chainer's protocol)."""


class DictionarySerializer(Serializer):
    """Collects ``path/key -> array`` into a dict."""

    def __init__(self, target=None, path=""):
        self.target = {} if target is None else target
        self.path = path

    def __getitem__(self, key):
        return DictionarySerializer(self.target, self.path + key.strip("/") + "/")

    def __call__(self, key, value):
        self.target[self.path + key.lstrip("/")] = saved_value(value)
        return value


def saved_value(value):
    """What a snapshot stores for ``value``: a host copy (None: NumPy's None array)."""
    return host_copy(value) if value is not None else numpy.asarray(None)


def host_array(value):
    """``value`` as a NumPy array to write: a NumPy array itself (not copied), a CuPy array
    copied to the host, a number as a 0-d array, None as NumPy's None array."""
    if isinstance(value, numpy.ndarray):
        return value
    return saved_value(value)


class RecordingSerializer(Serializer):
    """Records ``(path/key, value)`` in the order ``serialize`` writes them, keeping each
    value as given (a live view of an array, not a copy): a state streamed one key at a
    time (fast.distributed's checkpoints)."""

    def __init__(self, entries=None, path=""):
        self.entries = [] if entries is None else entries
        self.path = path

    def __getitem__(self, key):
        return RecordingSerializer(self.entries, self.path + key.strip("/") + "/")

    def __call__(self, key, value):
        self.entries.append((self.path + key.lstrip("/"), value))
        return value


class NpzDeserializer(Deserializer):
    """Reads values from an opened npz. With ``check_only`` it validates and writes nothing."""

    def __init__(self, npz, path="", strict=True, check_only=False, problems=None):
        self.npz, self.path, self.strict = npz, path, strict
        self.check_only = check_only
        self.problems = [] if problems is None else problems

    def __getitem__(self, key):
        child = copy.copy(self)
        child.path = self.path + key.strip("/") + "/"
        return child

    def read(self, full):
        """The array stored under ``full``."""
        try:
            return self.npz[full]
        except Exception as err:  # zlib/zip/format errors of a damaged member
            raise ValueError("cannot read key {!r}: {}".format(full, err)) from err

    def __call__(self, key, value):
        full = self.path + key.lstrip("/")
        if full not in self.npz:
            if self.strict:
                raise MissingKeyError("missing key {!r}".format(full))
            return value
        data = self.read(full)
        if value is None:
            return data
        if _is_array(value):
            if tuple(data.shape) != tuple(value.shape):
                self.problems.append("key {!r} has shape {}, expected {}".format(full, data.shape, tuple(value.shape)))
            elif data.dtype.kind not in "fiub":
                self.problems.append("key {!r} has dtype {}, expected {}".format(full, data.dtype, value.dtype))
            elif not self.check_only:
                copy_into(value, data)
            return value
        if data.shape != ():
            self.problems.append("key {!r} has shape {}, expected a scalar".format(full, data.shape))
            return value
        if isinstance(value, bool):
            return bool(data)
        if isinstance(value, int):
            if data.dtype.kind not in "iub":
                self.problems.append("key {!r} has dtype {}, expected an integer".format(full, data.dtype))
                return value
            return int(data)
        return float(data)


def is_deserializer(s):
    """True for fast's and Chainer's deserializers (duck-typed by class name)."""
    return isinstance(s, Deserializer) or any(c.__name__ == "Deserializer" for c in type(s).__mro__)


def _report(s, message):
    problems = getattr(s, "problems", None)
    if problems is None:
        raise ValueError(message)
    problems.append(message)


def _has_key(s, key):
    npz = getattr(s, "npz", None)
    return npz is not None and (getattr(s, "path", "") + key) in npz


def _rule_serialize(rule, s, fixed):
    """One rule: ``t``, state (and, in the fixed profile, master and extras). A rule whose
    state does not exist yet takes a snapshot's state as Chainer's does (every key of its
    state, or none); a rule whose parameter has no array yet keeps it until it has one."""
    loading = is_deserializer(s)
    check_only = loading and getattr(s, "check_only", False)
    t = s("t", rule.t)
    if not check_only:
        rule.t = t
    slot = rule.slot
    names = rule.state_names(rule.hyperparam)
    views = slot.state_views()
    if views is not None:
        for name in names:
            s(name, views[name])
    elif loading:
        _load_new_state(rule, slot, names, s, check_only)
    if fixed:
        _serialize_master(slot, s, loading, check_only)
        _serialize_extras(rule, s, loading, check_only)


def _load_new_state(rule, slot, names, s, check_only):
    values = {}
    for name in names:
        try:
            values[name] = s(name, None)
        except KeyError:
            if rule.enabled:
                raise
            values[name] = None
    if not names or any(v is None for v in values.values()):
        return
    if slot.bound:
        shape = slot.group.shapes[slot.index]
        mismatched = [(k, numpy.shape(v)) for k, v in values.items() if numpy.shape(v) != shape]
        for name, got in mismatched:
            _report(s, "state {!r} of {} has shape {}, expected {}".format(name, getattr(s, "path", ""), got, shape))
        if mismatched:
            return
    if not check_only:
        slot.take_state({k: host_copy(v) for k, v in values.items()})


def _serialize_master(slot, s, loading, check_only):
    """The fixed profile's fp32 master, where the rule keeps one."""
    if slot.bound and slot.group.master is None:
        return
    if not loading:
        master = slot.master_view()
        if master is not None:
            s("fp32_param", master)
        return
    if not _has_key(s, "fp32_param"):
        return
    if slot.bound:
        s("fp32_param", slot.group.master_view(slot.index))
        if not check_only:
            slot.group.master_ready[slot.index] = 1
    else:
        value = s("fp32_param", None)
        if not check_only:
            slot.master = host_copy(value)


def _serialize_extras(rule, s, loading, check_only):
    """The fixed profile's per-rule scalars; a snapshot without them (e.g. one
    Chainer wrote) leaves the current values."""
    for name in rule.saved_extras():
        if not loading:
            s(name, rule.extra(name))
        elif _has_key(s, name):
            value = s(name, rule.extra(name))
            if not check_only:
                rule.set_extra(name, value)


def serialize_rule(rule, s):
    """A single rule through Chainer's serializer protocol."""
    _rule_serialize(rule, s, rule.semantics.checkpoints_keep_all)


def serialize_optimizer(opt, s):
    """Chainer's Optimizer.serialize, plus the fixed profile's extra keys."""
    engine = opt.engine
    if engine is None:
        raise RuntimeError("Optimizer is not set up. Call `setup` method.")
    engine.sync_parameters()
    engine.sync_hyperparameters()
    fixed = opt.semantics.checkpoints_keep_all
    loading = is_deserializer(s)
    check_only = loading and getattr(s, "check_only", False)
    t, epoch = s("t", opt.t), s("epoch", opt.epoch)
    if not check_only:
        opt.t, opt.epoch = t, epoch
    for e in engine.members:
        _rule_serialize(e.rule, s[e.name], fixed)
    if fixed:
        _serialize_loss_scaling(opt.scaling, s["loss_scaling"], loading, check_only)


def _serialize_loss_scaling(ls, s, loading, check_only):
    if loading and not all(_has_key(s, k) for k in ("scale", "dynamic", "multiplier", "isnan_ever")):
        return
    scale = s("scale", float("nan") if ls.scale is None else float(ls.scale))
    dynamic = s("dynamic", bool(ls.dynamic))
    multiplier = s("multiplier", float("nan") if ls.multiplier is None else float(ls.multiplier))
    isnan_ever = s("isnan_ever", bool(ls.isnan_ever))
    if loading:
        problem = _loss_scaling_problem(scale, dynamic, multiplier)
        if problem:
            _report(s, problem)
            return
    if loading and not check_only:
        ls.restore(None if math.isnan(scale) else scale, dynamic,
                   None if math.isnan(multiplier) else multiplier, isnan_ever)


def _loss_scaling_problem(scale, dynamic, multiplier):
    """Why a loaded loss-scaling state is invalid, or None.

    NaN encodes "unset" (no loss scaling; no dynamic multiplier). A set scale
    must be finite and > 0, as ``loss_scaling(scale=...)`` requires; dynamic
    scaling needs a scale and a finite multiplier >= 1 (2**(1/interval)).
    """
    if not math.isnan(scale) and not (math.isfinite(scale) and scale > 0):
        return "loss_scaling/scale must be a finite number > 0 (or NaN: off), got {}".format(scale)
    if dynamic:
        if math.isnan(scale):
            return "loss_scaling/scale is NaN (off) but loss_scaling/dynamic is set"
        if not (math.isfinite(multiplier) and multiplier >= 1):
            return "loss_scaling/multiplier must be a finite number >= 1, got {}".format(multiplier)
    return None


def save_npz(file, obj, compression=True):
    """Save ``obj`` (an optimizer) atomically to the path ``file``.

    An object with its own collective save (a ``fast.distributed`` multi-node optimizer)
    saves through it: rank 0 writes this same file.
    """
    collective = getattr(obj, "collective_save_npz", None)
    if collective is not None:
        return collective(file, compression)
    s = DictionarySerializer()
    obj.serialize(s)
    write_npz(file, s.target, compression)


def write_npz(file, arrays, compression=True):
    """Write ``arrays`` (key -> array) as an npz (``NpzWriter``)."""
    writer = NpzWriter(file, compression)
    try:
        for key, value in arrays.items():
            writer.add(key, value)
    except BaseException:
        writer.abort()
        raise
    writer.commit()


#: bytes of an array handed to the archive at a time (its compressed output is as large)
WRITE_CHUNK_BYTES = 1 << 18


class NpzWriter(object):
    """An npz written one array at a time, as ``numpy.savez`` / ``savez_compressed`` write
    it (a zip member ``<key>.npy`` per array, in order): to a path atomically (a temporary
    file beside it, fsynced by ``commit``, then renamed over it; ``abort`` removes it), or
    to an open file object as is."""

    def __init__(self, file, compression=True):
        self.path, self.tmp = None, None
        if isinstance(file, (str, os.PathLike)):
            self.path = os.fspath(file)
            fd, self.tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz",
                                            dir=os.path.dirname(os.path.abspath(self.path)))
            self.file = os.fdopen(fd, "wb")
        else:
            self.file = file
        try:
            self.zip = zipfile.ZipFile(self.file, mode="w", allowZip64=True,
                                       compression=zipfile.ZIP_DEFLATED if compression else zipfile.ZIP_STORED)
        except BaseException:
            self.abort()
            raise

    def add(self, key, value):
        """Write ``value`` (a NumPy array or a number) as the member ``<key>.npy``. A
        C-contiguous array of numbers is written from its own memory (``numpy.savez`` would
        copy it into a bytes object first): the header ``write_array`` writes, then the
        data."""
        array = numpy.asanyarray(value)
        with self.zip.open(key + ".npy", "w", force_zip64=True) as member:
            if array.dtype.hasobject or not array.flags.c_contiguous:
                numpy.lib.format.write_array(member, array, allow_pickle=True)
                return
            numpy.lib.format.write_array_header_1_0(member, numpy.lib.format.header_data_from_array_1_0(array))
            data = memoryview(array.reshape(-1)).cast("B") if array.size else b""
            for begin in range(0, len(data), WRITE_CHUNK_BYTES):
                member.write(data[begin:begin + WRITE_CHUNK_BYTES])

    def commit(self):
        """Finish the archive (and, for a path, put it in place)."""
        self.zip.close()
        if self.path is None:
            return
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        finally:
            self.abort()

    def abort(self):
        """Give up: for a path, the temporary file is removed and the target left as it was."""
        if self.path is None:
            return
        if not self.file.closed:
            self.file.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def load_npz(file, obj, path="", strict=True):
    """Load a snapshot into ``obj``; every key is validated before anything changes.

    An object with its own collective load (a ``fast.distributed`` multi-node optimizer)
    loads through it: rank 0 reads the file, every rank validates and loads its bytes.
    """
    collective = getattr(obj, "collective_load_npz", None)
    if collective is not None:
        return collective(file, path=path, strict=strict)
    with open_npz(file) as npz:
        check_npz(npz, obj, file, path=path, strict=strict)
        obj.serialize(NpzDeserializer(npz, path=path, strict=strict))


def open_npz(file, label=None):
    """The opened npz archive of ``file`` (a path or a file object); a clear ValueError
    naming ``label`` (default: ``file``) when it is not one. Pickles are never loaded."""
    label = file if label is None else label
    try:
        npz = numpy.load(file, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, pickle.UnpicklingError) as err:
        raise ValueError("cannot read optimizer snapshot {!r}: {}".format(label, err)) from err
    if not isinstance(npz, numpy.lib.npyio.NpzFile):
        raise ValueError("optimizer snapshot {!r} is a single .npy array, not an npz archive".format(label))
    return npz


def check_npz(npz, obj, label, path="", strict=True, deserializer=NpzDeserializer):
    """Run ``obj``'s whole deserialization against ``npz`` without writing anything, and
    raise MissingKeyError or ValueError (naming ``label``) for the first problems found.
    ``deserializer``: NpzDeserializer or a subclass taking the same arguments."""
    problems = []
    try:
        obj.serialize(deserializer(npz, path=path, strict=strict, check_only=True, problems=problems))
    except MissingKeyError as err:
        raise MissingKeyError("optimizer snapshot {!r} does not match the optimizer: {}".format(
            label, err)) from None
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError("optimizer snapshot {!r} is corrupt: {}".format(label, err)) from err
    if problems:
        raise ValueError("optimizer snapshot {!r} does not match the optimizer: {}".format(
            label, "; ".join(problems[:10])))
