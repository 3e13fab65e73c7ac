"""What checking a case finds: the case's result, its first divergence and what a side raised."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .adapter import foreign_frames
from .cases import Case


@dataclass(frozen=True)
class Raised:
    """An exception one side raised: its type's name, its message and (the implementation's)
    the traceback of the code that raised it, without the harness's frames."""
    type: str
    message: str = ""
    traceback: str = ""

    @classmethod
    def of(cls, exc: BaseException, with_traceback: bool = True) -> "Raised":
        return cls(type(exc).__name__, str(exc), foreign_frames(exc) if with_traceback else "")

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


def type_name(raised):
    """The type name of what a side raised, or None."""
    return None if raised is None else raised.type


#: What each kind of divergence's `array` names when it is not an array.
_ACTIONS = {"exception": "update()", "construction": "building the parameters and the optimizer",
            "checkpoint": "save_npz and load_npz"}


@dataclass(frozen=True)
class Divergence:
    """The first place where the implementation left the reference's bound.

    kinds: value (an element outside its bound), discrete (a counter, the loss scale, which
    arrays exist), exception (the sides raised differently), structure (an array's shape or
    dtype), changed (an array changed by an update that raised), contract (a part of the
    public API missing or of another form), ranks (the ranks of a distributed case disagree).
    """
    case: str
    step: int
    array: str
    kind: str
    index: tuple = ()
    impl_value: object = None
    ref_value: object = None
    bound: float = 0.0
    normalized: float = math.inf
    rank: int | None = None   # distributed cases: the rank that saw it
    dtype: str = ""           # value: the storage dtype of the array
    impl_raised: Raised | None = None
    ref_raised: Raised | None = None

    def describe(self) -> str:
        """One line, in words: where, and what differs."""
        where = f"{self.array}{list(self.index) if self.index else ''}"
        if self.rank is not None:
            where = f"rank {self.rank}: {where}"
        if self.kind == "value":
            return f"step {self.step}: {where}: {self.value_difference()}"
        if self.kind == "exception":
            action = _ACTIONS.get(self.array, self.array)
            if self.rank is not None:
                action = f"rank {self.rank}: {action}"
            impl = f"raised {self.impl_raised}" if self.impl_raised else "raised nothing"
            ref = f"raises {self.ref_raised}" if self.ref_raised else "raises nothing"
            return f"step {self.step}: {action}: the implementation {impl}, where the reference {ref}"
        if self.kind == "contract":
            when = "building the optimizer" if self.step == 0 else f"step {self.step}"
            return f"{when}: the implementation does not meet the contract: {self.impl_value}"
        if self.kind == "structure":
            return (f"step {self.step}: {where}: the implementation has {self.impl_value}, where "
                    f"the reference has {self.ref_value}")
        if self.kind == "discrete":
            return (f"step {self.step}: {where}: the implementation has {self.impl_value!r}, "
                    f"where the reference has {self.ref_value!r} (compared exactly)")
        if self.kind == "changed":
            return (f"step {self.step}: {where}: changed by an update that raised (an update "
                    f"that raises must change nothing)")
        if self.kind == "ranks":
            return (f"step {self.step}: {where}: the ranks disagree: {self.impl_value} where "
                    f"{self.ref_value}")
        return f"step {self.step}: {where}: {self.kind}: impl {self.impl_value!r} vs reference {self.ref_value!r}"

    def value_difference(self) -> str:
        """What differs between two values, in words: a non-finite class that differs, equal
        bits required and not met (in ulps of the storage dtype), or the error against the
        bound (with the normalized error, |impl - reference| / bound)."""
        impl, ref = self.impl_value, self.ref_value
        values = f"impl {impl!r}, reference {ref!r}"
        if not (math.isfinite(impl) and math.isfinite(ref)):
            return (f"impl {_class_word(impl)} where the reference has {_class_word(ref)} "
                    f"({values}; a non-finite value must be matched by the same one)")
        error = abs(impl - ref)
        ulps = ulps_apart(impl, ref, self.dtype) if self.dtype else None
        in_ulps = "" if ulps is None else f"{ulps} ulp{'s' if ulps != 1 else ''} of {self.dtype}"
        if self.bound == 0:
            why = ("a checkpoint reloads exactly what was saved" if self.array.endswith(" after load")
                   else f"the bound is 0: every value the reference allows rounds to the same "
                        f"{self.dtype or 'value'}")
            return f"{values}: {in_ulps or f'error {error:.6g}'} apart where equal bits are required ({why})"
        if math.isinf(self.bound):
            return f"{values}: unbounded"
        return (f"{values}: error {error:.6g}{f' ({in_ulps})' if in_ulps else ''} is "
                f"{self.normalized:.3g} x the bound {self.bound:.6g} (normalized error "
                f"{self.normalized:.3g}; at most 1 conforms)")


def _class_word(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"a finite {value!r}"


def ulps_apart(a: float, b: float, dtype: str) -> int | None:
    """How many values of `dtype` lie between a and b, counting b (0 when equal): the
    distance in units in the last place; None for a dtype other than float16/32/64 or a value
    that is not finite."""
    if dtype not in ("float16", "float32", "float64") or not (math.isfinite(a) and math.isfinite(b)):
        return None
    kind = {"float16": np.int16, "float32": np.int32, "float64": np.int64}[dtype]

    def ordinal(x):
        bits = int(np.array(x, dtype=dtype).view(kind))
        return bits if bits >= 0 else -(bits & np.iinfo(kind).max)
    return abs(ordinal(a) - ordinal(b))


@dataclass
class CaseResult:
    case: Case
    divergences: list = field(default_factory=list)
    # The worst normalized error of each step checked; a diverging step's is its
    # divergence's (inf for a divergence that is not a value's).
    step_errors: list = field(default_factory=list)
    elements: int = 0
    unbounded: int = 0
    ambiguous_steps: int = 0
    drift: float = 0.0
    # Why the case was not run, one sentence per missing part (conformance.applicability);
    # None when it ran.
    not_applicable: tuple | None = None

    @property
    def diverged(self) -> bool:
        return bool(self.divergences)

    @property
    def passed(self) -> bool:
        """Run and conforming (a case that was not applicable has not passed)."""
        return self.not_applicable is None and not self.divergences

    @property
    def status(self) -> str:
        """'passed', 'failed' (it ran and diverged) or 'not_applicable' (it did not run)."""
        if self.not_applicable is not None:
            return "not_applicable"
        return "failed" if self.divergences else "passed"

    def failed(self, require_all: bool = False) -> bool:
        """A divergence; with `require_all`, also a case that could not be run."""
        return self.diverged or (require_all and self.not_applicable is not None)

    def diverge(self, divergence: Divergence) -> None:
        """Record the divergence; its normalized error becomes its step's."""
        self.divergences.append(divergence)
        if divergence.step < 1:
            return
        if len(self.step_errors) < divergence.step:
            self.step_errors.append(divergence.normalized)
        else:
            last = divergence.step - 1
            self.step_errors[last] = max(self.step_errors[last], divergence.normalized)
