"""Replicated data-parallel optimizers (ChainerMN's ``create_multi_node_optimizer``).

Every rank holds the whole model and the whole optimizer state. ``setup`` broadcasts the
parameters from rank 0; each ``update`` averages the gradients over the ranks
(fast.distributed.exchange) and then runs the wrapped optimizer's ordinary step on every
rank. Since the averaged gradient is the same bytes on every rank, every decision of the
step is the same everywhere by construction: the dynamic loss-scaling skip (one rank's NaN
makes the mean NaN on every rank), the loss scale, ``opt.t``, every ``rule.t``, the hooks'
norms. N ranks therefore equal one process fed the averaged gradient.

Errors are agreed before anything is exchanged (fast.distributed.agreement): bad input on
one rank (a gradient of the wrong shape, dtype or device; a failing ``lossfun``; a setup
whose parameter names, shapes, dtypes or devices differ from rank 0's; an optimizer whose
step count, loss scale, hooks or hyperparameters have drifted apart) makes every rank raise
the same error, with no parameter, master or state changed on any rank.
"""
import numpy

from fast.distributed import agreement, checkpoints
from fast.distributed.exchange import GradientExchange, broadcast_parameters
from fast.engine import _set_grad_unchecked
from fast.optimizer import GradientMethod, named_parameters
from fast.parameter import array_device

EXCHANGE_DTYPES = ("float16", "float32", "float64")


def _exchange_dtype(allreduce_grad_dtype):
    """None, or the numpy dtype of a float16/32/64 ``allreduce_grad_dtype``."""
    if allreduce_grad_dtype is None:
        return None
    try:
        dtype = numpy.dtype(allreduce_grad_dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.name not in EXCHANGE_DTYPES:
        raise ValueError("allreduce_grad_dtype must be numpy.float16, numpy.float32, numpy.float64 "
                         "or None, got {!r}".format(allreduce_grad_dtype))
    return dtype


def _parameter_layout(pairs, comm):
    """(field, value) pairs describing the parameters; raises if one is on a device the
    communicator does not exchange."""
    kind = comm.array_device_kind()
    fields = [("the number of parameters", len(pairs))]
    for k, (name, p) in enumerate(pairs):
        device = array_device(p.data)
        if not device.startswith(kind):
            raise TypeError("parameter {!r} is on {}, but the {!r} communicator exchanges {} arrays".format(
                name, device, comm.name, "NumPy" if kind == "cpu" else "CuPy"))
        fields.append(("parameter #{}".format(k), "{} shape={} dtype={} device={}".format(
            name, tuple(p.data.shape), p.data.dtype, kind)))
    return fields


def step_fingerprint(actual):
    """(field, value) pairs that must be equal on every rank before a step: everything
    that decides what the step does, other than the gradients themselves."""
    engine = actual._engine
    engine.sync_hyperparameters()
    loss = actual._loss
    groups = engine.groups
    hooks = [(timing, name, type(h).__name__) for timing, table in actual._hookable.hooks.items()
             for name, h in table.items()]
    return [
        ("the optimizer's step count t", actual.t),
        ("the epoch", actual.epoch),
        ("the loss-scaling state (scale, dynamic, multiplier, isnan_ever)",
         (loss.scale, loss.dynamic, loss.multiplier, loss.isnan_ever)),
        ("the optimizer hooks (timing, name, type)", hooks),
        ("the parameter groups (kernel, dtype mode, members)",
         [(g.kernel_id, g.mode, str(g.dtype), [e.index for e in g.entries]) for g in groups]),
        ("the rules' step counts (rule.t)", agreement.digest(*[g.t for g in groups])),
        ("the rules' enabled flags and rule-level hooks",
         agreement.digest(*[g.enabled for g in groups], *[g.hooked for g in groups])),
        ("the optimizer's hyperparameters", sorted(actual.hyperparam.get_dict().items())),
        ("the rules' hyperparameters (per-rule overrides included)",
         agreement.digest(*[g.raw for g in groups])),
    ]


class MultiNodeOptimizer(object):
    """An optimizer that averages the gradients over the ranks, then steps as
    ``actual_optimizer`` does. Every attribute not defined here is the actual optimizer's
    (read and written through), so the public API is the same: hooks, loss scaling,
    ``use_fp32_update``, ``t``, ``epoch``, ``target``, ``serialize``, ...

    ``setup``, ``update``, ``check_nan_in_grads`` and the npz save/load are collective:
    every rank must call them, in the same order.
    """

    def __init__(self, actual_optimizer, communicator, allreduce_grad_dtype=None):
        object.__setattr__(self, "actual_optimizer", actual_optimizer)
        object.__setattr__(self, "communicator", communicator)
        object.__setattr__(self, "allreduce_grad_dtype", allreduce_grad_dtype)
        object.__setattr__(self, "_exchange", None)

    def __getattr__(self, name):
        return getattr(self.actual_optimizer, name)

    def __setattr__(self, name, value):
        setattr(self.actual_optimizer, name, value)

    def __repr__(self):
        return "MultiNodeOptimizer({!r}, {} communicator, rank {} of {})".format(
            type(self.actual_optimizer).__name__, self.communicator.name, self.communicator.rank,
            self.communicator.size)

    # --- set-up ---
    def setup(self, target):
        """Collective: check that every rank sets up the same parameters (names, shapes,
        dtypes, device kind), set up the actual optimizer, broadcast the parameters from
        rank 0. Returns self."""
        comm = self.communicator
        agreement.agree(comm, lambda: named_parameters(target),
                        fingerprint=lambda pairs: _parameter_layout(pairs, comm))
        actual = self.actual_optimizer
        actual.setup(target)
        broadcast_parameters(actual._named, comm)
        object.__setattr__(self, "_exchange", GradientExchange(actual._named, comm, self.allreduce_grad_dtype))
        return self

    def _check_set_up(self):
        if self._exchange is None:
            raise RuntimeError("Optimizer is not set up. Call `setup` method.")

    # --- the step ---
    def update(self, lossfun=None, *args, **kwds):
        """Collective: one step on the gradients averaged over the ranks.

        With ``lossfun``, each rank computes its own loss and backward (loss-scaled) first.
        A gradient that is None counts as zeros. After the step ``p.grad`` is the averaged
        gradient (a view of the exchange buffer, as ChainerMN leaves the mean in
        ``param.grad``); if the step raises, the gradients are put back as they were.
        """
        def local_phase():
            self._check_set_up()
            if lossfun is not None:
                self._backward(lossfun, args, kwds)
            return self._exchange.local_gradients()

        grads = agreement.agree(self.communicator, local_phase,
                                fingerprint=lambda _: step_fingerprint(self.actual_optimizer))
        self._step_on(self._exchange.average(grads))

    def _backward(self, lossfun, args, kwds):
        """Chainer's update(lossfun): the loss, cleared grads, backward with the loss scale."""
        actual = self.actual_optimizer
        loss = lossfun(*args, **kwds)
        for _, p in actual._named:
            p.grad = None
        loss.backward(loss_scale=actual.loss_scale)
        del loss

    def _step_on(self, means):
        """Hand the averaged gradients to the actual optimizer and step."""
        named = self.actual_optimizer._named
        originals = [p.grad for _, p in named]
        for (_, p), mean in zip(named, means):
            _set_grad_unchecked(p, mean)
        try:
            self.actual_optimizer.update()
        except BaseException:
            for (_, p), grad in zip(named, originals):
                _set_grad_unchecked(p, grad)
            raise

    def check_nan_in_grads(self):
        """Collective: dynamic loss scaling's check on the local gradients, agreed over the
        ranks, so that a non-finite value on any rank makes ``is_safe_to_update()`` False
        on every rank (``update`` itself checks the averaged gradient)."""
        actual = self.actual_optimizer

        def local_check():
            actual.check_nan_in_grads()
            return not actual.is_safe_to_update()

        bad = agreement.agree(self.communicator, local_check)
        if any(self.communicator.allgather_obj(bad)):
            actual._loss.isnan = True
            actual._loss.isnan_ever = True

    # --- checkpoints (fast.serializers.save_npz / load_npz come here) ---
    def _collective_save_npz(self, file, compression=True):
        checkpoints.save_npz(self, file, compression)

    def _collective_load_npz(self, file, path="", strict=True):
        checkpoints.load_npz(self, file, path=path, strict=strict)


def _check_wrappable(actual_optimizer, communicator, exchange_dtype):
    if not isinstance(actual_optimizer, GradientMethod):
        raise TypeError("actual_optimizer must be a fast optimizer (a fast.GradientMethod), got {}".format(
            type(actual_optimizer).__name__))
    if actual_optimizer.target is not None:
        raise ValueError("actual_optimizer is already set up: create the multi-node optimizer first, "
                         "then call its setup(), which broadcasts the parameters")
    return [("the optimizer", "{} profile={}".format(type(actual_optimizer).__name__, actual_optimizer.profile)),
            ("allreduce_grad_dtype", None if exchange_dtype is None else exchange_dtype.name),
            ("the communicator", (communicator.name, communicator.size))]


def create_multi_node_optimizer(actual_optimizer, communicator, allreduce_grad_dtype=None):
    """Wrap a ``fast`` optimizer for replicated data-parallel training (ChainerMN's
    semantics without ZeRO sharding). Collective.

    ``allreduce_grad_dtype``: the dtype the gradients are summed and divided in (float16,
    float32 or float64); None sums each gradient in its own dtype. ChainerMN's
    ``pure_nccl`` None means ``chainer.get_dtype()`` (float32 unless configured), so
    ``numpy.float32`` reproduces its default for fp16 gradients.
    """
    if not hasattr(communicator, "allgather_obj"):
        raise TypeError("communicator must come from fast.distributed.create_communicator, got {}".format(
            type(communicator).__name__))

    def local_check():
        dtype = _exchange_dtype(allreduce_grad_dtype)
        return dtype, _check_wrappable(actual_optimizer, communicator, dtype)

    dtype = agreement.agree(communicator, lambda: local_check()[0],
                            fingerprint=lambda _: local_check()[1])
    return MultiNodeOptimizer(actual_optimizer, communicator, dtype)
