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
from dataclasses import dataclass

import numpy as np

import reference
from reference.arithmetic import Float64, Mpmath

from . import tolerance
from .adapter import CalledCodeRaised, ContractError, Driver, Snapshot
from .cases import Case
from .ranks import DistributedDriver, MeanGradientDriver, fingerprint
from .results import CaseResult, Divergence, Raised, type_name

_HERE = os.path.dirname(os.path.abspath(__file__))
#: How many ambiguous decisions of one step are also tried flipped one at a time.
MAX_SINGLE_FLIPS = 4


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
        """Overwrite the continuous state with the implementation's (exact conversions; a
        state presented through an inexact translation enters with that translation's bound,
        `ParamState.state_bounds`)."""
        for name, ps in snap.params.items():
            p = self.driver.params[name]
            p.value = self.ctx.array(ps.param)
            rule = p.update_rule
            if ps.master is not None and rule.fp32_value is not None:
                rule.fp32_value = self.ctx.array(ps.master)
            if ps.state is not None and rule.state_values is not None:
                translated = ps.state_bounds or {}
                for key, value in ps.state.items():
                    if key not in rule.state_values:
                        continue
                    rule.state_values[key] = self.ctx.inputs(value, translated[key]) \
                        if key in translated else self.ctx.array(value)

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


def _in_harness(frame) -> bool:
    return os.path.dirname(os.path.abspath(frame.filename)) == _HERE


def _harness_error(exc: BaseException) -> HarnessError:
    frames = traceback.extract_tb(exc.__traceback__)
    where = (f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}: " if frames else "")
    return HarnessError(f"internal error in {where}{type(exc).__name__}: {exc}")


def _run_impl(fn) -> Raised | None:
    """Run fn(), which drives the implementation; return what a call into the implementation
    raised (its type, message and traceback), or None.

    A ContractError (a part of the contract missing or of another form) propagates, to fail the
    case; any other exception raised by the harness's own code is a bug of the harness
    (HarnessError, exit 2).
    """
    try:
        fn()
    except CalledCodeRaised as wrapped:
        return Raised.of(wrapped.__cause__)
    except (ContractError, HarnessError):
        raise
    except Exception as exc:
        raise _harness_error(exc) from exc
    return None


def _run_reference(fn) -> Raised | None:
    """Run fn(), which drives the reference; return what the reference raised, or None.

    An exception whose innermost frame is in conformance's own modules (the tracked arithmetic,
    the adapter) is a bug of the harness and is re-raised as HarnessError (exit 2), never
    reported as the reference's behaviour.
    """
    try:
        fn()
    except CalledCodeRaised as wrapped:
        exc = wrapped.__cause__
        frames = traceback.extract_tb(exc.__traceback__)
        if frames and _in_harness(frames[-1]):
            raise _harness_error(exc) from exc
        return Raised.of(exc, with_traceback=False)
    except HarnessError:
        raise
    except Exception as exc:
        raise _harness_error(exc) from exc
    return None


def _reference_driver(case: Case, optimizer_kwargs) -> Driver:
    """The reference built from the case: fed the mean over the ranks in a distributed case."""
    if case.ranks > 1:
        return MeanGradientDriver(reference, case, optimizer_kwargs=optimizer_kwargs,
                                  side="reference")
    return Driver(reference, case, optimizer_kwargs=optimizer_kwargs, side="reference")


def _impl_driver(impl, case: Case, xp, world, params: str = "impl") -> Driver:
    """The implementation built from the case, its parameters made as `params` says
    (conformance.params): on this rank, in a distributed case."""
    if case.ranks > 1:
        if world is None or world.size != case.ranks:
            raise UsageErrorForCase(f"case {case.name} runs on {case.ranks} ranks: "
                                    f"mpiexec -n {case.ranks} ... --ranks {case.ranks}")
        return DistributedDriver(impl, case, world, xp=xp, params=params)
    return Driver(impl, case, xp=xp, params=params)


class UsageErrorForCase(HarnessError):
    """A distributed case asked for outside `--ranks` with its number of ranks."""


# -- the teacher-forced loop -----------------------------------------------------------------
def compute_dtype(case: Case, fp16_compute: str = "float32") -> str:
    """The dtype the implementation computes in: the case's, or `fp16_compute` for float16
    storage without a master (fast: float32 in the kernel; Chainer: NumPy float16 ops)."""
    return fp16_compute if case.dtype_mode == "float16" else case.compute_dtype


def check_case(impl, case: Case, xp=np, fp16_compute: str = "float32", world=None,
               params: str = "impl") -> CaseResult:
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
    progress = [0]   # the step the loop is at, for a contract failure
    try:
        _check_case(impl, case, xp, fp16_compute, distributed, result, progress, params)
    except ContractError as exc:
        if exc.side != "implementation":
            raise HarnessError(f"the reference failed the contract: {exc}") from exc
        result.diverge(Divergence(case.name, progress[0], "contract", "contract",
                                  impl_value=str(exc),
                                  impl_raised=Raised("ContractError", str(exc), exc.frames)))
    if distributed is not None:
        distributed.merge(result)
    return result


def _agreed(world, result, step, where, ok, driver, error=None) -> bool:
    """`ok`, agreed over the ranks (one process: `ok` itself)."""
    if world is None:
        return ok
    return world.agree(result, step, where, ok, [] if driver is None else fingerprint(driver, error))


def _check_case(impl, case, xp, fp16_compute, world, result, progress, params) -> None:
    impl_side, ref_side = [], [None]
    impl_error = _run_impl(lambda: impl_side.append(_impl_driver(impl, case, xp, world, params)))
    ctx = tolerance.TrackedArithmetic(compute_dtype(case, fp16_compute))
    # Distributed: only rank 0 runs the reference; every other rank's observations (every
    # array's digest, every event) are compared with rank 0's at each agreement.
    compares = world is None or world.rank == 0
    ref_error = (_run_reference(lambda: ref_side.__setitem__(0, ReferenceSide(case, ctx)))
                 if compares else None)
    if impl_error or ref_error:
        if compares and type_name(impl_error) != type_name(ref_error):
            result.diverge(Divergence(case.name, 0, "construction", "exception",
                                      impl_value=type_name(impl_error),
                                      ref_value=type_name(ref_error),
                                      impl_raised=impl_error, ref_raised=ref_error))
        _agreed(world, result, 0, "construction", False, None)
        return
    impl_driver, ref = impl_side[0], ref_side[0]
    if not _agreed(world, result, 0, "construction", True, impl_driver):
        return
    for step in range(1, case.steps + 1):
        progress[0] = step
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
    impl_error = _run_impl(impl_driver.checkpoint)
    loaded = None if impl_error else impl_driver.snapshot()
    if ref is None:
        return impl_error is None
    ref.force(before)
    ref_error = _run_reference(ref.driver.checkpoint)
    if impl_error or ref_error:
        if type_name(impl_error) != type_name(ref_error):
            result.diverge(Divergence(case.name, step, "checkpoint", "exception",
                                      impl_value=type_name(impl_error),
                                      ref_value=type_name(ref_error),
                                      impl_raised=impl_error, ref_raised=ref_error))
        return False
    ref_loaded = ref.driver.snapshot()
    if not _same_discrete(case, step, None, None, loaded, ref_loaded, result):
        return False
    actual, expected = impl_arrays(loaded), impl_arrays(ref_loaded)
    for name, value in expected.items():
        if not np.array_equal(actual[name], value, equal_nan=True):
            bad = np.argwhere(~((actual[name] == value) | (np.isnan(actual[name]) & np.isnan(value))))
            index = tuple(int(i) for i in bad[0]) if len(bad) else ()
            result.diverge(Divergence(
                case.name, step, f"{name} after load", "value", index=index,
                impl_value=float(actual[name][index]), ref_value=float(value[index]),
                bound=0.0, normalized=math.inf, dtype=str(value.dtype)))
            return False
    return True


def _check_step(impl_driver, ref, case, step, result) -> bool:
    """One teacher-forced step; returns False when the case cannot go on. (`ref` None: a
    distributed case's rank other than 0, which only drives the implementation.)"""
    before = impl_driver.snapshot()
    impl_error = _run_impl(lambda: impl_driver.step(step))
    after = impl_driver.snapshot()
    if ref is None:
        return impl_error is None
    ref.force(before)
    saved = ref.saved_state()
    with tolerance.decisions() as log:
        ref_error = _run_reference(lambda: ref.driver.step(step))
    ref_after = ref.driver.snapshot()
    if not _same_discrete(case, step, impl_error, ref_error, after, ref_after, result):
        return False
    # A step that raised is compared as any other: both sides raised at the same point, and
    # what changed before it (Chainer's counters, the rules updated first, the failing rule's
    # new state and master) must agree; everything else must be bitwise unchanged (bound 0).
    expected = with_translation_bounds(ref.tracked_arrays(), after)
    worst, failures = _check_arrays(case, step, impl_arrays(after), expected, result)
    if failures and log.ambiguous:
        result.ambiguous_steps += 1
        flips = ["all"] + list(range(min(log.ambiguous, MAX_SINGLE_FLIPS)))
        for flip in flips:
            ref.restore(saved)
            ref.force(before)
            with tolerance.decisions(flip=flip):
                if type_name(_run_reference(lambda: ref.driver.step(step))) != type_name(ref_error):
                    continue
            worst, failures = _recheck_with_alternative(
                case, step, failures, with_translation_bounds(ref.tracked_arrays(), after), worst)
            if not failures:
                break
    result.step_errors.append(max(worst.values(), default=0.0))
    if failures:
        # The worst element of the step (the first of the worst, in array order): the error
        # the diagnosis shows is the step's, the one the tables and plots show.
        result.diverge(max(failures, key=lambda f: f.divergence.normalized).divergence)
        return False
    return impl_error is None


def with_translation_bounds(expected: dict, after: Snapshot) -> dict:
    """The reference's (value, bound) per array, each translated state's bound widened.

    For a state the implementation presents as x' = round(T(s)) from its own stored s
    (ParamState.state_bounds: b >= |x' - T(s_exact)|, s_exact its unrounded result), the
    reference's stored value is round(c) with bound B_r against round(c +- B), while T(s_exact)
    lies within c +- B: so |x' - round(c)| <= B_r + b + 1.5 spacings of the storage dtype (one
    half for each of the two roundings to storage, one for B_r's own rounding of c +- B). Two
    spacings at the larger of |x'| and |round(c)| are added.
    """
    out = dict(expected)
    for name, ps in after.params.items():
        for key, bound in (ps.state_bounds or {}).items():
            array = f"/{name} state {key}"
            value, ref_bound = out[array]
            presented = ps.state[key]
            with np.errstate(invalid="ignore", over="ignore"):
                larger = np.maximum(np.abs(presented), np.abs(value)).astype(presented.dtype)
                spacing = np.spacing(larger).astype(np.float64)
            spacing = np.where(np.isfinite(spacing), spacing, 0.0)  # non-finite: matched by class
            out[array] = (value, ref_bound + bound + 2.0 * spacing)
    return out


def _same_discrete(case, step, impl_error, ref_error, after, ref_after, result) -> bool:
    events = [("exception", type_name(impl_error), type_name(ref_error)),
              ("opt.t", after.t, ref_after.t),
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
            if name == "exception":
                result.diverge(Divergence(case.name, step, name, "exception",
                                          impl_value=impl_value, ref_value=ref_value,
                                          impl_raised=impl_error, ref_raised=ref_error))
            else:
                result.diverge(Divergence(case.name, step, name, "discrete",
                                          impl_value=impl_value, ref_value=ref_value))
            return False
    for name, ps in after.params.items():
        rs = ref_after.params[name]
        pairs = [("param", ps.param, rs.param), ("fp32_param", ps.master, rs.master)]
        pairs += [(f"state {k}", v, rs.state[k]) for k, v in (ps.state or {}).items()]
        for label, a, b in pairs:
            if a is not None and (a.shape != b.shape or a.dtype != b.dtype):
                result.diverge(Divergence(
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
    """The array's worst element above its bound (the first of them), or None."""
    if not impl_value.size or not normalized.max() > 1.0:
        return None
    index = np.unravel_index(int(np.argmax(normalized)), normalized.shape)
    index = tuple(int(i) for i in index)
    divergence = Divergence(case.name, step, name, "value", index=index,
                            impl_value=float(impl_value[index]), ref_value=float(value[index]),
                            bound=float(bound[index]), normalized=float(normalized[index]),
                            dtype=str(impl_value.dtype))
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
def free_running_drift(impl, case: Case, xp=np, world=None, params: str = "impl") -> dict:
    """Both sides run on their own; the largest relative drift per array after the last step.

    Reported, not gated: no bound on accumulated drift is justified in general (an unstable
    recurrence amplifies one ulp). Relative to the array's largest reference magnitude.
    In a distributed case each rank measures its own (the ranks agree on when to stop).
    """
    impl_driver = _impl_driver(impl, case, xp, world, params)
    ref_driver = _reference_driver(case, {"arithmetic": Float64()})
    for step in range(1, case.steps + 1):
        impl_error = _run_impl(lambda: impl_driver.step(step))
        ref_error = _run_reference(lambda: ref_driver.step(step))  # also when the impl raised
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
        errors = (type_name(_run_reference(lambda: f64.driver.step(step))),
                  type_name(_run_reference(lambda: mp.driver.step(step))))
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
