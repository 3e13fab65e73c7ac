"""The distributed mode: one case on N MPI ranks (`mpiexec -n N python -m conformance run
--ranks N`).

Every rank runs the same cases through compare.check_case, symmetrically (every collective
of the implementation is reached by every rank in the same order):

- the implementation side (`DistributedDriver`) wraps the case's optimizer in the
  implementation's multi-node optimizer (`<impl>.distributed.create_multi_node_optimizer`,
  with the case's `zero` and `exchange_dtype`), feeds the rank's own gradient stream
  (streams.gradient(..., rank)), reads the parameters (whole on every rank) and the masters
  and state gathered over the ranks (`opt.gather_state()`), and saves and loads checkpoints
  collectively through one path that rank 0 makes and broadcasts;
- the reference side (`MeanGradientDriver`, built and run on rank 0 only) is the
  one-process reference fed the mean of all ranks' gradients (every rank computes every rank's stream locally) as a tracked input whose
  bound is the reduction's rounding (tolerance.mean_over_ranks);
- after construction, every step and every checkpoint the ranks exchange a fingerprint of
  what they observed (the exception, opt.t, epoch, loss scale, each rule.t, which state and
  masters exist, a digest of every array) and whether they go on: a rank that differs from
  rank 0 is a divergence naming the rank, and all ranks stop at the same step;
- at the end of a case the ranks' results are merged (`World.merge`), so every rank holds the
  same CaseResult, prints the same verdict and exits with the same status.

The harness's own exchanges go through a duplicate of mpi4py's COMM_WORLD, never through the
implementation's communicator.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
from dataclasses import replace

import numpy as np

from . import streams, tolerance
from .adapter import CalledCodeRaised, Driver, ParamState, Snapshot, to_host
from .results import Divergence
from .target import UsageError

#: The World of this process once `--ranks N` made one (for aborting on a harness error).
ACTIVE = None


class World:
    """This process's place among the ranks, over mpi4py's COMM_WORLD."""

    def __init__(self, expected: int):
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise UsageError(f"--ranks {expected} needs mpi4py ({exc})") from exc
        # A duplicate: the harness's exchanges never match one of the implementation's
        # (which may use COMM_WORLD itself), even when a wrong implementation desynchronizes.
        self.comm = MPI.COMM_WORLD.Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if self.size != expected:
            raise UsageError(f"--ranks {expected} runs under `mpiexec -n {expected}`; this is "
                             f"{'one process' if self.size == 1 else f'{self.size} ranks'}")
        self._impl_comms = {}
        global ACTIVE
        ACTIVE = self

    def allgather(self, obj) -> list:
        return self.comm.allgather(obj)

    def bcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def impl_communicator(self, distributed):
        """The implementation's "mpi" communicator (one per implementation module)."""
        key = id(distributed)
        if key not in self._impl_comms:
            self._impl_comms[key] = distributed.create_communicator("mpi")
        return self._impl_comms[key]

    # -- agreement ------------------------------------------------------------------------
    def agree(self, result, step: int, where: str, ok: bool, fingerprint: list) -> bool:
        """Exchange (ok, fingerprint); a rank whose fingerprint differs from rank 0's is a
        divergence (recorded identically on every rank). True when every rank goes on."""
        gathered = self.allgather((bool(ok), fingerprint))
        reference = gathered[0][1]
        for rank, (_, other) in enumerate(gathered[1:], start=1):
            if other != reference:
                field, mine, theirs = _first_difference(reference, other)
                result.divergences.append(Divergence(
                    result.case.name, step, f"{field} ({where})", "ranks",
                    impl_value=f"rank {rank}: {theirs}", ref_value=f"rank 0: {mine}"))
                return False
        return all(go for go, _ in gathered)

    def merge(self, result) -> None:
        """Make `result` the same on every rank: rank 0's counts, and the divergences of the
        lowest rank that has any (each labelled with its rank)."""
        gathered = self.allgather((result.divergences, result.step_errors, result.elements,
                                   result.unbounded, result.ambiguous_steps))
        chosen = []
        for rank, (divergences, *_) in enumerate(gathered):
            if divergences:
                chosen = [d if d.kind == "ranks" or d.rank is not None else
                          _with_rank(d, rank) for d in divergences]
                break
        result.divergences = chosen
        _, result.step_errors, result.elements, result.unbounded, result.ambiguous_steps = \
            gathered[0]

    def abort(self, code: int) -> None:
        self.comm.Abort(code)


def _with_rank(divergence, rank):
    return replace(divergence, rank=rank)


def _first_difference(a: list, b: list) -> tuple:
    for (field, x), (_, y) in zip(a, b):
        if x != y:
            return field, x, y
    return "the fingerprint's length", len(a), len(b)


def abort_if_distributed(code: int) -> None:
    """After a harness error on one rank: end every rank (the others may wait in a
    collective this rank will never reach)."""
    if ACTIVE is not None:
        ACTIVE.abort(code)


def distributed_module(impl):
    """`<impl>.distributed`: an attribute of the module, or its subpackage; None if neither."""
    module = getattr(impl, "distributed", None)
    if module is None:
        try:
            module = importlib.import_module(impl.__name__ + ".distributed")
        except ImportError:
            return None
    return module


def _digest(array) -> str:
    if array is None:
        return "-"
    array = np.ascontiguousarray(array)
    return f"{array.dtype}{array.shape}:" + hashlib.sha256(array.tobytes()).hexdigest()[:16]


def fingerprint(driver, error=None) -> list:
    """(field, value) pairs of what this rank observed last: the exception (`error`, else the
    driver's last one) and the discrete events of the driver's last snapshot, and a digest of
    every array in it."""
    fields = [("exception", error or getattr(driver, "last_error", None))]
    snap = getattr(driver, "last_snapshot", None)
    if snap is None:
        return fields
    fields += [("opt.t", snap.t), ("opt.epoch", snap.epoch), ("loss_scale", snap.loss_scale)]
    for name, ps in snap.params.items():
        fields += [(f"/{name} rule.t", ps.t),
                   (f"/{name} state keys", sorted(ps.state or ())),
                   (f"/{name} param", _digest(ps.param)),
                   (f"/{name} fp32_param", _digest(ps.master))]
        fields += [(f"/{name} state {k}", _digest(v)) for k, v in sorted((ps.state or {}).items())]
    return fields


class DistributedDriver(Driver):
    """The implementation under test on this rank: the case's optimizer wrapped in the
    implementation's multi-node optimizer, fed this rank's gradient stream."""

    #: every parameter has its array at setup: a multi-node optimizer's first update after a
    #: parameter gets one broadcasts rank 0's values and takes no step (ChainerMN's, fast's)
    lazy_parameters = False

    def __init__(self, impl, case, world: World, xp=np, params: str = "impl"):
        self.world = world
        self.distributed = distributed_module(impl)
        self.communicator = self._call(world.impl_communicator, self.distributed)
        self.last_snapshot = None
        self.last_error = None
        super().__init__(impl, case, xp=xp, params=params)

    def _recorded(self, action, *args):
        """Run action(*args), remembering the type of what it raises for the fingerprint (the
        implementation's exception, where a call into it raised)."""
        self.last_error = None
        try:
            action(*args)
        except Exception as exc:
            cause = exc.__cause__ if isinstance(exc, CalledCodeRaised) else exc
            self.last_error = type(cause).__name__
            raise

    def step(self, step: int) -> None:
        self._recorded(super().step, step)

    def _wrap(self, optimizer):
        case = self.case
        kwargs = {"allreduce_grad_dtype": None if case.exchange_dtype is None
                  else np.dtype(case.exchange_dtype).type}
        if case.zero:  # only when asked, so an implementation without ZeRO runs the rest
            kwargs["zero"] = True
        return self.distributed.create_multi_node_optimizer(optimizer, self.communicator, **kwargs)

    def gradient(self, i: int, spec, step: int, scale):
        """This rank's stream."""
        return streams.gradient(self.case, i, spec, step, scale, rank=self.world.rank)

    def checkpoint(self, rewrite=None) -> None:
        self._recorded(self._checkpoint, rewrite)

    def _checkpoint(self, rewrite=None) -> None:
        """Collective save and load through one path: rank 0 makes it and broadcasts it; rank
        0 (which writes and reads the file) rewrites the counters and removes it."""
        path = None
        if self.world.rank == 0:
            handle, path = tempfile.mkstemp(suffix=".npz")
            os.close(handle)
        path = self.world.bcast(path)
        try:
            self.save_and_reload(path, rewrite, rewrites_here=self.world.rank == 0)
        finally:
            if self.world.rank == 0 and os.path.exists(path):
                os.unlink(path)

    def gathered_state(self) -> dict:
        """name -> {"fp32_param", "state", "t"}: the masters and state, whole, on every rank.

        Through the collective `opt.gather_state()` where the optimizer has it (required
        under zero=True, where a rank's rule holds only its shard); otherwise (replicated, where
        each rank's rules hold the whole arrays) read from the rules directly.
        """
        opt = self.optimizer
        if hasattr(opt, "gather_state"):
            gathered = opt.gather_state()
            return {name: gathered.get("/" + name, gathered.get(name)) for name in self.params}
        if self.case.zero:
            raise RuntimeError("zero=True: the multi-node optimizer has no gather_state(), so the "
                               "masters and state cannot be read whole")
        out = {}
        for name, p in self.params.items():
            rule = p.update_rule
            out[name] = {"fp32_param": rule.fp32_param, "t": rule.t,
                         "state": None if rule.state is None else dict(rule.state)}
        return out

    def snapshot(self) -> Snapshot:
        gathered = self.gathered_state()
        params = {}
        for name, p in self.params.items():
            entry = gathered[name]
            state = entry["state"]
            params[name] = ParamState(
                param=to_host(p.data), master=to_host(entry["fp32_param"]),
                state=None if state is None else {k: to_host(v) for k, v in state.items()},
                t=int(entry["t"]), grad=to_host(p.grad))
        opt = self.optimizer
        self.last_snapshot = Snapshot(params=params, t=int(opt.t), epoch=int(opt.epoch),
                                      loss_scale=None if self.loss_scale() is None else float(self.loss_scale()))
        return self.last_snapshot

    def force(self, snap) -> None:
        raise NotImplementedError("the distributed driver is never forced (the reference is)")


class MeanGradientDriver(Driver):
    """The reference fed the mean over the case's ranks of their gradient streams, each
    element a tracked input whose bound covers the reduction's rounding
    (tolerance.mean_over_ranks). With a plain arithmetic (the free-running drift), the
    nominal mean."""

    def set_grads(self, step: int) -> None:
        case = self.case
        scale = self.optimizer.loss_scale
        means = []
        for i, spec in enumerate(case.params):
            grads = [streams.gradient(case, i, spec, step, scale, rank=r) for r in range(case.ranks)]
            if all(g is None for g in grads):
                grads[0] = np.zeros(spec.shape, dtype=case.storage_dtype)
            means.append(tolerance.mean_over_ranks(grads, case.storage_dtype, case.exchange_dtype))
        _resolve_ambiguity(case, step, means)
        for spec, mean in zip(case.params, means):
            p = self.params[spec.name]
            ctx = p.arithmetic
            if hasattr(ctx, "inputs"):
                p.grad_value = ctx.inputs(mean.value, mean.bound)
            else:
                p.grad_value = ctx.array(mean.value)


def _resolve_ambiguity(case, step, means) -> None:
    """Elements whose class depends on the summation order matter only when the step is not
    certainly skipped (dynamic loss scaling with a certainly non-finite element elsewhere);
    otherwise the case is not valid (tolerance.AmbiguousReduction)."""
    ambiguous = sum(int(m.overflow_ambiguous.sum() + m.class_ambiguous.sum()) for m in means)
    if not ambiguous:
        return
    skipped = case.loss_scaling.mode == "dynamic" and any(m.certainly_nonfinite.any() for m in means)
    if not skipped:
        raise tolerance.AmbiguousReduction(
            f"case {case.name}, step {step}: {ambiguous} gradient elements overflow the exchange "
            f"dtype in some summation orders and not in others (or are inf in some and NaN in "
            f"others): their mean depends on the transport's order, so the case is not valid")
