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
optimizer as it was. A snapshot written by Chainer loads as is.
"""
import math
import os
import tempfile
import zipfile

import numpy


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
        self.target[self.path + key.lstrip("/")] = numpy.array(value) if value is not None else numpy.asarray(None)
        return value


class NpzDeserializer(Deserializer):
    """Reads values from an opened npz. With ``check_only`` it validates and writes nothing."""

    def __init__(self, npz, path="", strict=True, check_only=False, problems=None):
        self.npz, self.path, self.strict = npz, path, strict
        self.check_only = check_only
        self.problems = [] if problems is None else problems

    def __getitem__(self, key):
        return NpzDeserializer(self.npz, self.path + key.strip("/") + "/", self.strict, self.check_only,
                               self.problems)

    def __call__(self, key, value):
        full = self.path + key.lstrip("/")
        if full not in self.npz:
            if self.strict:
                if self.check_only:
                    self.problems.append("missing key {!r}".format(full))
                    return value
                raise KeyError(full)
            return value
        try:
            data = self.npz[full]
        except Exception as err:  # zlib/zip/format errors of a damaged member
            raise ValueError("cannot read key {!r}: {}".format(full, err)) from err
        if data.dtype == object:
            if data.shape == () and data[()] is None:
                return None
            self.problems.append("key {!r} holds Python objects".format(full))
            return value
        if value is None:
            return data
        if isinstance(value, numpy.ndarray):
            if data.shape != value.shape:
                self.problems.append("key {!r} has shape {}, expected {}".format(full, data.shape, value.shape))
            elif data.dtype.kind not in "fiu" or not numpy.all(numpy.isfinite(data)) and value.dtype.kind != "f":
                self.problems.append("key {!r} has dtype {}, expected {}".format(full, data.dtype, value.dtype))
            elif not self.check_only:
                numpy.copyto(value, data, casting="same_kind")
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


def _rule_serialize(rule, group, index, s, fixed):
    """One rule: ``t``, state (and, in the fixed profile, master and extras)."""
    loading = isinstance(s, Deserializer)
    t = s("t", rule.t)
    if not loading or not getattr(s, "check_only", False):
        rule.t = t
    if group.initialized[index]:
        views = group.state_views(index)
        for name in group.state_names:
            s(name, views[name])
    elif loading:
        values = {}
        for name in group.state_names:
            try:
                values[name] = s(name, None)
            except KeyError:
                if rule.enabled:
                    raise
                values[name] = None
        if group.state_names and all(v is not None for v in values.values()):
            views = group.state_views(index)
            for name, v in values.items():
                if numpy.shape(v) != views[name].shape:
                    s.problems.append("state {!r} of {} has shape {}, expected {}".format(
                        name, s.path, numpy.shape(v), views[name].shape))
            if not s.check_only and not s.problems:
                for name, v in values.items():
                    numpy.copyto(views[name], v, casting="same_kind")
                group.initialized[index] = 1
    if fixed and group.master is not None:
        master = group.master_view(index)
        if loading:
            if not (s.path + "fp32_param") in s.npz:
                return
            s("fp32_param", master)
            if not s.check_only:
                group.master_ready[index] = 1
        elif group.master_ready[index]:
            s("fp32_param", master)
    rule.serialize_extras(s, fixed) if not (loading and s.check_only) else _check_extras(rule, s, fixed)


def _check_extras(rule, s, fixed):
    for name in rule.extras:
        key = s.path + name
        if fixed and key in s.npz and numpy.asarray(s.npz[key]).shape != ():
            s.problems.append("key {!r} must be a scalar".format(key))


def serialize_optimizer(opt, s):
    """Chainer's Optimizer.serialize, plus the fixed profile's extra keys."""
    opt._check_set_up()
    fixed = opt.profile == "fixed"
    loading = isinstance(s, Deserializer)
    check_only = loading and s.check_only
    t, epoch = s("t", opt.t), s("epoch", opt.epoch)
    if not check_only:
        opt.t, opt.epoch = t, epoch
    for name, p in opt._named:
        rule = p.update_rule
        _rule_serialize(rule, rule._group, rule._index, s[name], fixed)
    if fixed:
        _serialize_loss_scaling(opt, s["loss_scaling"], loading, check_only)


def _serialize_loss_scaling(opt, s, loading, check_only):
    ls = opt._loss
    if loading and not all((s.path + k) in s.npz for k in ("scale", "dynamic", "multiplier", "isnan_ever")):
        return
    scale = s("scale", float("nan") if ls.scale is None else float(ls.scale))
    dynamic = s("dynamic", bool(ls.dynamic))
    multiplier = s("multiplier", float("nan") if ls.multiplier is None else float(ls.multiplier))
    isnan_ever = s("isnan_ever", bool(ls.isnan_ever))
    if loading and not check_only:
        ls.scale = None if math.isnan(scale) else scale
        ls.dynamic = bool(dynamic)
        ls.multiplier = None if math.isnan(multiplier) else multiplier
        ls.isnan_ever = bool(isnan_ever)


def save_npz(file, obj, compression=True):
    """Save ``obj`` (an optimizer) atomically to the path ``file``."""
    s = DictionarySerializer()
    obj.serialize(s)
    save = numpy.savez_compressed if compression else numpy.savez
    if not isinstance(file, (str, os.PathLike)):
        save(file, **s.target)
        return
    path = os.fspath(file)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            save(f, **s.target)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_npz(file, obj, path="", strict=True):
    """Load a snapshot into ``obj``; every key is validated before anything changes."""
    try:
        npz = numpy.load(file, allow_pickle=True)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError("cannot read optimizer snapshot {!r}: {}".format(file, err)) from err
    with npz:
        problems = []
        try:
            obj.serialize(NpzDeserializer(npz, path=path, strict=strict, check_only=True, problems=problems))
        except (zipfile.BadZipFile, EOFError, OSError) as err:
            raise ValueError("optimizer snapshot {!r} is corrupt: {}".format(file, err)) from err
        if problems:
            raise ValueError("optimizer snapshot {!r} does not match the optimizer: {}".format(
                file, "; ".join(problems[:10])))
        obj.serialize(NpzDeserializer(npz, path=path, strict=strict))
