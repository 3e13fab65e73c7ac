"""What checking a case finds: the case's result and its first divergence."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .cases import Case


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
