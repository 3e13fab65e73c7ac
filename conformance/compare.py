"""The one comparison loop: teacher-forced steps, discrete events, drift and the ladder.

`check_case(impl, case)` drives the implementation under test and the reference (under the
`Tracked` arithmetic of tolerance.py) in lockstep. Before every step the reference's
continuous state (parameters, fp32 masters, rule state) is overwritten with the
implementation's, so each step is judged from exactly the implementation's own inputs; the
discrete state (counters, loss scale, skip decisions) is never copied, and must agree with ==.
"""
from __future__ import annotations

import math
import os
import traceback
from dataclasses import dataclass, field

import numpy as np

import reference
from reference.arithmetic import Float64, Mpmath

from . import tolerance
from .adapter import Driver, Snapshot
from .cases import Case

_HERE = os.path.dirname(os.path.abspath(__file__))
#: How many ambiguous decisions of one step are also tried flipped one at a time.
MAX_SINGLE_FLIPS = 4


@dataclass(frozen=True)
class Divergence:
    """The first place where the implementation left the reference's bound."""
    case: str
    step: int
    array: str
    kind: str                 # value | discrete | exception | structure | ranks
    index: tuple = ()
    impl_value: object = None
    ref_value: object = None
    bound: float = 0.0
    normalized: float = math.inf
    rank: int | None = None   # distributed cases: the rank that saw it

    def describe(self) -> str:
        where = f"{self.array}{list(self.index) if self.index else ''}"
        if self.rank is not None:
            where = f"rank {self.rank}: {where}"
        if self.kind == "value":
            return (f"step {self.step}: {where}: impl {self.impl_value!r} vs reference "
                    f"{self.ref_value!r}: |error| {abs(self.impl_value - self.ref_value):.6g} > "
                    f"bound {self.bound:.6g} (normalized {self.normalized:.3g})")
        return f"step {self.step}: {where}: {self.kind}: impl {self.impl_value!r} vs reference {self.ref_value!r}"


@dataclass
class CaseResult:
    case: Case
    divergences: list = field(default_factory=list)
    step_errors: list = field(default_factory=list)   # worst normalized error per step
    elements: int = 0
    unbounded: int = 0
    ambiguous_steps: int = 0
    drift: float = 0.0
    not_applicable: str | None = None   # why the case was not run (conformance.applicability)

    @property
    def diverged(self) -> bool:
        return bool(self.divergences)

    @property
    def passed(self) -> bool:
        """Run and conforming (a case that was not applicable has not passed)."""
        return self.not_applicable is None and not self.divergences

    def failed(self, require_all: bool = False) -> bool:
        """A divergence; with `require_all`, also a case that could not be run."""
        return self.diverged or (require_all and self.not_applicable is not None)


# -- element comparison ----------------------------------------------------------------------
@dataclass
class ArrayCheck:
    normalized: np.ndarray   # per element; 0 where equal, inf where a non-finite class differs
    unbounded: int


def check_array(impl: np.ndarray, value: np.ndarray, bound: np.ndarray) -> ArrayCheck:
    """Normalized error |impl - value| / bound per element (<= 1 passes).

    Non-finite reference values must be matched exactly (NaN by NaN, inf by the same inf);
    an infinite bound accepts any value and is counted as unbounded.
    """
    impl = np.asarray(impl, dtype=np.float64)
    value = np.asarray(value, dtype=np.float64)
    bound = np.asarray(bound, dtype=np.float64)
    finite_ref = np.isfinite(value)
    unbounded = finite_ref & np.isinf(bound)
    same_class = (np.isnan(value) & np.isnan(impl)) | (np.isinf(value) & (impl == value))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        error = np.abs(impl - value)
        ratio = np.where(error == 0, 0.0, np.where(bound == 0, np.inf, error / bound))
    bounded = finite_ref & ~unbounded
    normalized = np.where(bounded & np.isfinite(impl), ratio, np.inf)
    normalized = np.where(unbounded | same_class, 0.0, normalized)
    return ArrayCheck(normalized, int(unbounded.sum()))


# -- the reference side ----------------------------------------------------------------------
class ReferenceSide:
    """The reference built from the case, under the tracked arithmetic."""

    def __init__(self, case: Case, ctx=None):
        self.ctx = ctx if ctx is not None else tolerance.TrackedArithmetic(case.compute_dtype)
        self.driver = _reference_driver(case, {"arithmetic": self.ctx})

    def force(self, snap: Snapshot) -> None:
        """Overwrite the continuous state with the implementation's (exact conversions)."""
        for name, ps in snap.params.items():
            p = self.driver.params[name]
            p.value = self.ctx.array(ps.param)
            rule = p.update_rule
            if ps.master is not None and rule.fp32_value is not None:
                rule.fp32_value = self.ctx.array(ps.master)
            if ps.state is not None and rule.state_values is not None:
                for key, value in ps.state.items():
                    if key in rule.state_values:
                        rule.state_values[key] = self.ctx.array(value)

    def saved_state(self):
        """Everything of the reference a step may change besides the parameters (which
        `force` writes): counters, loss scale, each rule's state, master and t, including
        whether they exist yet."""
        return self.driver.optimizer.snapshot()

    def restore(self, saved) -> None:
        self.driver.optimizer.restore(saved)

    def tracked_arrays(self):
        """name -> (value, bound) for every continuous array, keyed like the impl's."""
        return {k: (self.ctx.to_float64(v), self.ctx.bounds(v)) for k, v in self.raw().items()}

    def raw(self):
        """name -> the arithmetic's values for every continuous array."""
        out = {}
        for name, p in self.driver.params.items():
            rule = p.update_rule
            out[f"/{name} param"] = p.value
            if rule.fp32_value is not None:
                out[f"/{name} fp32_param"] = rule.fp32_value
            for key, value in (rule.state_values or {}).items():
                out[f"/{name} state {key}"] = value
        return out


def impl_arrays(snap: Snapshot) -> dict:
    out = {}
    for name, ps in snap.params.items():
        out[f"/{name} param"] = ps.param
        if ps.master is not None:
            out[f"/{name} fp32_param"] = ps.master
        for key, value in (ps.state or {}).items():
            out[f"/{name} state {key}"] = value
    return out


class HarnessError(RuntimeError):
    """An exception raised inside the harness's own code: never a verdict on an implementation."""


def _run(fn):
    """Run fn(); return the exception type name it raised, or None.

    An exception whose innermost frame is in conformance's own modules is a bug of the harness
    and is re-raised as HarnessError (exit 2), never reported as the reference's behaviour.
    """
    try:
        fn()
    except Exception as exc:  # the type is the discrete event being compared
        frames = traceback.extract_tb(exc.__traceback__)
        if frames and os.path.dirname(os.path.abspath(frames[-1].filename)) == _HERE:
            raise HarnessError(f"internal error in {os.path.basename(frames[-1].filename)}:"
                               f"{frames[-1].lineno}: {type(exc).__name__}: {exc}") from exc
        return type(exc).__name__
    return None


def _reference_driver(case: Case, optimizer_kwargs) -> Driver:
    """The reference built from the case: fed the mean over the ranks in a distributed case."""
    if case.ranks > 1:
        from .ranks import MeanGradientDriver
        return MeanGradientDriver(reference, case, optimizer_kwargs=optimizer_kwargs)
    return Driver(reference, case, optimizer_kwargs=optimizer_kwargs)


def _impl_driver(impl, case: Case, xp, world) -> Driver:
    """The implementation built from the case: on this rank, in a distributed case."""
    if case.ranks > 1:
        from .ranks import DistributedDriver
        if world is None or world.size != case.ranks:
            raise UsageErrorForCase(f"case {case.name} runs on {case.ranks} ranks: "
                                    f"mpiexec -n {case.ranks} ... --ranks {case.ranks}")
        return DistributedDriver(impl, case, world, xp=xp)
    return Driver(impl, case, xp=xp)


class UsageErrorForCase(HarnessError):
    """A distributed case asked for outside `--ranks` with its number of ranks."""


# -- the teacher-forced loop -----------------------------------------------------------------
def compute_dtype(case: Case, fp16_compute: str = "float32") -> str:
    """The dtype the implementation computes in: the case's, or `fp16_compute` for float16
    storage without a master (fast: float32 in the kernel; Chainer: NumPy float16 ops)."""
    return fp16_compute if case.dtype_mode == "float16" else case.compute_dtype


def check_case(impl, case: Case, xp=np, fp16_compute: str = "float32", world=None) -> CaseResult:
    """Teacher-forced comparison of `impl` against the reference over the case's steps.

    A distributed case (case.ranks > 1) runs on every rank of `world` (conformance.ranks):
    the same loop, with the ranks agreeing after construction, each step and each checkpoint
    (a rank that observed something else than rank 0 is a divergence; all stop together),
    and the result merged so that it is the same on every rank.
    """
    result = CaseResult(case)
    if case.ranks > 1 and world is None:
        raise UsageErrorForCase(f"case {case.name} runs on {case.ranks} ranks: "
                                f"mpiexec -n {case.ranks} ... --ranks {case.ranks}")
    distributed = world if case.ranks > 1 else None
    _check_case(impl, case, xp, fp16_compute, distributed, result)
    if distributed is not None:
        distributed.merge(result)
    return result


def _agreed(world, result, step, where, ok, driver, error=None) -> bool:
    """`ok`, agreed over the ranks (one process: `ok` itself)."""
    if world is None:
        return ok
    from .ranks import fingerprint
    return world.agree(result, step, where, ok, [] if driver is None else fingerprint(driver, error))


def _check_case(impl, case, xp, fp16_compute, world, result) -> None:
    impl_side, ref_side = [], [None]
    impl_error = _run(lambda: impl_side.append(_impl_driver(impl, case, xp, world)))
    ctx = tolerance.TrackedArithmetic(compute_dtype(case, fp16_compute))
    # Distributed: only rank 0 runs the reference; every other rank's observations (every
    # array's digest, every event) are compared with rank 0's at each agreement.
    compares = world is None or world.rank == 0
    ref_error = _run(lambda: ref_side.__setitem__(0, ReferenceSide(case, ctx))) if compares else None
    if impl_error or ref_error:
        if compares and impl_error != ref_error:
            result.divergences.append(Divergence(case.name, 0, "construction", "exception",
                                                 impl_value=impl_error, ref_value=ref_error))
        _agreed(world, result, 0, "construction", False, None)
        return
    impl_driver, ref = impl_side[0], ref_side[0]
    if not _agreed(world, result, 0, "construction", True, impl_driver):
        return
    for step in range(1, case.steps + 1):
        ok = _check_step(impl_driver, ref, case, step, result)
        if not _agreed(world, result, step, "step", ok, impl_driver):
            break
        if step in case.checkpoints:
            ok = _check_checkpoint(impl_driver, ref, case, step, result)
            if not _agreed(world, result, step, "checkpoint", ok, impl_driver):
                break


def _check_checkpoint(impl_driver, ref, case, step, result) -> bool:
    """Save and load on both sides from the same state; what is loaded must agree exactly.

    The reference is forced to the implementation's state first, so both save the same
    values; after loading, every array, counter and the loss scale must be equal (bound 0),
    and the same arrays (state, masters) must exist. The implementation's calls come first
    and do not depend on the reference (in a distributed case they are collective, and only
    rank 0 has a reference: `ref` is None elsewhere).
    """
    before = impl_driver.snapshot()
    impl_error = _run(impl_driver.checkpoint)
    loaded = None if impl_error else impl_driver.snapshot()
    if ref is None:
        return impl_error is None
    ref.force(before)
    ref_error = _run(ref.driver.checkpoint)
    if impl_error or ref_error:
        if impl_error != ref_error:
            result.divergences.append(Divergence(case.name, step, "checkpoint", "exception",
                                                 impl_value=impl_error, ref_value=ref_error))
        return False
    ref_loaded = ref.driver.snapshot()
    if not _same_discrete(case, step, None, None, loaded, ref_loaded, result):
        return False
    actual, expected = impl_arrays(loaded), impl_arrays(ref_loaded)
    for name, value in expected.items():
        if not np.array_equal(actual[name], value, equal_nan=True):
            bad = np.argwhere(~((actual[name] == value) | (np.isnan(actual[name]) & np.isnan(value))))
            index = tuple(int(i) for i in bad[0]) if len(bad) else ()
            result.divergences.append(Divergence(
                case.name, step, f"{name} after load", "value", index=index,
                impl_value=float(actual[name][index]), ref_value=float(value[index]),
                bound=0.0, normalized=math.inf))
            return False
    return True


def _check_step(impl_driver, ref, case, step, result) -> bool:
    """One teacher-forced step; returns False when the case cannot go on. (`ref` None: a
    distributed case's rank other than 0, which only drives the implementation.)"""
    before = impl_driver.snapshot()
    impl_error = _run(lambda: impl_driver.step(step))
    after = impl_driver.snapshot()
    if ref is None:
        return impl_error is None
    ref.force(before)
    saved = ref.saved_state()
    with tolerance.decisions() as log:
        ref_error = _run(lambda: ref.driver.step(step))
    ref_after = ref.driver.snapshot()
    if not _same_discrete(case, step, impl_error, ref_error, after, ref_after, result):
        return False
    # A step that raised is compared as any other: both sides raised at the same point, and
    # what changed before it (Chainer's counters, the rules updated first, the failing rule's
    # new state and master) must agree; everything else must be bitwise unchanged (bound 0).
    expected = ref.tracked_arrays()
    worst, failures = _check_arrays(case, step, impl_arrays(after), expected, result)
    if failures and log.ambiguous:
        result.ambiguous_steps += 1
        flips = ["all"] + list(range(min(log.ambiguous, MAX_SINGLE_FLIPS)))
        for flip in flips:
            ref.restore(saved)
            ref.force(before)
            with tolerance.decisions(flip=flip):
                if _run(lambda: ref.driver.step(step)) != ref_error:
                    continue
            worst, failures = _recheck_with_alternative(case, step, failures,
                                                        ref.tracked_arrays(), worst)
            if not failures:
                break
    result.step_errors.append(max(worst.values(), default=0.0))
    if failures:
        result.divergences.append(failures[0].divergence)
        return False
    return impl_error is None


def _same_discrete(case, step, impl_error, ref_error, after, ref_after, result) -> bool:
    events = [("exception", impl_error, ref_error), ("opt.t", after.t, ref_after.t),
              ("opt.epoch", after.epoch, ref_after.epoch),
              ("loss_scale", after.loss_scale, ref_after.loss_scale)]
    for name in after.params:
        events.append((f"/{name} rule.t", after.params[name].t, ref_after.params[name].t))
        # Which state arrays exist (None and an empty mapping both hold none).
        events.append((f"/{name} state keys", sorted(after.params[name].state or ()),
                       sorted(ref_after.params[name].state or ())))
        events.append((f"/{name} fp32_param present", after.params[name].master is not None,
                       ref_after.params[name].master is not None))
    for name, impl_value, ref_value in events:
        if impl_value != ref_value:
            kind = "exception" if name == "exception" else "discrete"
            result.divergences.append(Divergence(case.name, step, name, kind,
                                                 impl_value=impl_value, ref_value=ref_value))
            return False
    for name, ps in after.params.items():
        rs = ref_after.params[name]
        pairs = [("param", ps.param, rs.param), ("fp32_param", ps.master, rs.master)]
        pairs += [(f"state {k}", v, rs.state[k]) for k, v in (ps.state or {}).items()]
        for label, a, b in pairs:
            if a is not None and (a.shape != b.shape or a.dtype != b.dtype):
                result.divergences.append(Divergence(
                    case.name, step, f"/{name} {label}", "structure",
                    impl_value=f"{a.dtype}{a.shape}", ref_value=f"{b.dtype}{b.shape}"))
                return False
    return True


@dataclass
class _Failure:
    divergence: Divergence
    impl_value: np.ndarray
    normalized: np.ndarray


def _first_failure(case, step, name, impl_value, value, bound, normalized):
    bad = np.argwhere(normalized > 1.0)
    if not len(bad):
        return None
    index = tuple(int(i) for i in bad[0])
    divergence = Divergence(case.name, step, name, "value", index=index,
                            impl_value=float(impl_value[index]), ref_value=float(value[index]),
                            bound=float(bound[index]), normalized=float(normalized[index]))
    return _Failure(divergence, impl_value, normalized)


def _check_arrays(case, step, actual, expected, result):
    """Check every expected array; returns (worst normalized error per array, failures)."""
    worst, failures = {}, []
    for name, (value, bound) in expected.items():
        impl_value = actual[name]
        check = check_array(impl_value, value, bound)
        result.elements += impl_value.size
        result.unbounded += check.unbounded
        worst[name] = float(check.normalized.max()) if impl_value.size else 0.0
        failure = _first_failure(case, step, name, impl_value, value, bound, check.normalized)
        if failure:
            failures.append(failure)
    return worst, failures


def _recheck_with_alternative(case, step, failures, alternative, worst):
    """Accept each failing element if it matches the run with ambiguous decisions flipped."""
    remaining = []
    for failure in failures:
        name = failure.divergence.array
        value, bound = alternative[name]
        other = check_array(failure.impl_value, value, bound).normalized
        combined = np.minimum(failure.normalized, other)
        worst[name] = float(combined.max())
        again = _first_failure(case, step, name, failure.impl_value, value, bound, combined)
        if again:
            remaining.append(again)
    return worst, remaining


# -- free-running drift ----------------------------------------------------------------------
def free_running_drift(impl, case: Case, xp=np, world=None) -> dict:
    """Both sides run on their own; the largest relative drift per array after the last step.

    Reported, not gated: no bound on accumulated drift is justified in general (an unstable
    recurrence amplifies one ulp). Relative to the array's largest reference magnitude.
    In a distributed case each rank measures its own (the ranks agree on when to stop).
    """
    impl_driver = _impl_driver(impl, case, xp, world)
    ref_driver = _reference_driver(case, {"arithmetic": Float64()})
    for step in range(1, case.steps + 1):
        impl_error = _run(lambda: impl_driver.step(step))
        ref_error = _run(lambda: ref_driver.step(step))  # also when the impl raised
        stop = bool(impl_error or ref_error)
        if world is not None and case.ranks > 1:
            stop = any(world.allgather(stop))
        if stop:
            break
    actual, expected = impl_arrays(impl_driver.snapshot()), impl_arrays(ref_driver.snapshot())
    drift = {}
    for name, ref_value in expected.items():
        if name not in actual or actual[name].shape != ref_value.shape or not ref_value.size:
            continue
        a, r = actual[name].astype(np.float64), ref_value.astype(np.float64)
        finite = np.isfinite(a) & np.isfinite(r)
        if finite.any():
            scale = max(float(np.abs(r[finite]).max()), np.finfo(np.float64).tiny)
            drift[name] = float(np.abs(a[finite] - r[finite]).max()) / scale
    return drift


# -- the precision ladder --------------------------------------------------------------------
LADDER_RTOL = 1e-13
LADDER_DPS = 50


@dataclass
class LadderResult:
    case: Case
    worst: float = 0.0          # largest |f64 - mp| / (rtol * (|mp| + floor))
    failure: str | None = None


def ladder(case: Case) -> LadderResult:
    """The float64 reference against Mpmath(dps=50), teacher-forced, per step.

    Run in the float64 dtype mode only (there round_to is the identity; in narrower modes a
    value near a rounding boundary legitimately rounds to either neighbour). The float64 side
    runs under TrackedArithmetic("float64"), whose values are the float64 evaluation and whose
    bound B64 is its running error bound. Accepts

        |f64 - mp| <= max(1e-13 (|mp| + floor), B64),   floor = the largest |mp| of the array

    so a step whose cancellation makes float64 itself lose digits (MSVAG's vt - mt^2) is judged
    by its own error bound, and values produced by cancellation are judged against the
    array's scale, not their own.
    """
    result = LadderResult(case)
    f64 = ReferenceSide(case, tolerance.TrackedArithmetic("float64"))
    mp = ReferenceSide(case, Mpmath(dps=LADDER_DPS))
    for step in range(1, case.steps + 1):
        mp.force(f64.driver.snapshot())
        errors = (_run(lambda: f64.driver.step(step)), _run(lambda: mp.driver.step(step)))
        if errors[0] != errors[1]:
            result.failure = f"step {step}: exceptions differ: {errors}"
            return result
        if errors[0]:
            return result
        lo = f64.tracked_arrays()
        hi = {k: mp.ctx.to_float64(v) for k, v in mp.raw().items()}
        for name, exact in hi.items():
            value, own_bound = lo[name]
            finite = np.isfinite(exact)
            if not np.array_equal(np.isfinite(value), finite) or \
                    not np.array_equal(value[~finite], exact[~finite], equal_nan=True):
                result.failure = f"step {step}: {name}: non-finite values differ"
                return result
            if not finite.any():
                continue
            floor = float(np.abs(exact[finite]).max())
            scale = np.maximum(LADDER_RTOL * (np.abs(exact[finite]) + floor), own_bound[finite])
            err = np.abs(value[finite] - exact[finite])
            with np.errstate(divide="ignore", invalid="ignore"):
                normalized = np.where(err == 0, 0.0, np.where(scale == 0, np.inf, err / scale))
            result.worst = max(result.worst, float(normalized.max()))
            if normalized.max() > 1.0:
                result.failure = f"step {step}: {name}: normalized error {normalized.max():.3g}"
                return result
    return result
