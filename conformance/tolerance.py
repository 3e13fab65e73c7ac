"""The one error model of the conformance gate, the same for every optimizer.

An implementation's stored value x is accepted against the reference's exact-input value v
when

    |x - v| <= B

where B is a running error bound the reference computes alongside v. B is built by running
the reference's own teacher-forced step under `Tracked`, a third arithmetic next to the
reference's Float64 and Mpmath contexts. Every number carries (value, bound):

    inputs read from storage         bound 0 (they are exact)
    constants entering the kernel    u * |c| unless exactly representable in the compute dtype
    c = a + b, a - b                 ea + eb                         + u * |c|
    c = a * b                        |a| eb + |b| ea + ea eb         + u * |c|
    c = a / b                        (ea + |c| eb) / (|b| - eb)      + u * |c|   (inf if |b| <= eb)
    c = sqrt(a)                      min(ea / sqrt(a), sqrt(ea))     + u * |c|
    c = a ** b                       |c| (|b| ea / |a| + |ln a| eb)  + POW_ULPS * u * |c|
    max, min, clip, abs, neg         the largest input bound (1-Lipschitz; no rounding)
    s = sum(a_1..a_n)                sum ea_i + (n - 1) u sum |a_i|  (any summation order)
    round_to(c, storage dtype)       keeps the exact value, adds half an ULP of the storage
                                     dtype at round(c) (it overflows to inf as a cast does)
    any result above, when |c| + its bound reaches the compute dtype's overflow threshold:
                                     bound inf (the implementation's intermediate may be inf:
                                     any value is accepted there, counted as unbounded)
    mean over N ranks (distributed)  an input with a bound: the any-order sum rule in the
                                     exchange dtype E, then the monotone rest of the reduction
                                     (x float64(1/N), rounded to E, cast to the gradient dtype)
                                     applied to the ends of the interval (`mean_over_ranks`)

with u = u_compute + u_float64: the unit roundoff of the dtype the implementation computes in
(float32 for fp16 and fp32 storage, float64 for float64) plus that of the reference's own
float64 evaluation of v. The bound is first order in u only through the stated `POW_ULPS`
allowance for a non-correctly-rounded pow; every other rule is a rigorous interval rule.
There is no per-optimizer constant.

Discrete decisions: a comparison whose operands lie within their bounds of each other is
*ambiguous* (`Decision.ambiguous`). The comparison loop runs the step once with every
decision taken nominally and, when a decision was ambiguous, once more with every ambiguous
decision flipped, and once per ambiguous decision flipped alone (up to MAX_SINGLE_FLIPS);
an element is accepted if it matches any of these runs (compare.py).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from reference.arithmetic import ObjectArithmetic

POW_ULPS = 4.0
UNIT_ROUNDOFF = {"float16": 2.0 ** -11, "float32": 2.0 ** -24, "float64": 2.0 ** -53}
#: Half the smallest subnormal of each compute dtype: the absolute rounding error of a result
#: in the subnormal range (fl(x op y) = (x op y)(1 + d) + e, |d| <= u, |e| <= eta).
UNDERFLOW = {"float16": 2.0 ** -25, "float32": 2.0 ** -150, "float64": 2.0 ** -1075}
_ETA = {UNIT_ROUNDOFF[k] + UNIT_ROUNDOFF["float64"]: UNDERFLOW[k] + UNDERFLOW["float64"]
        for k in UNIT_ROUNDOFF}


def _overflow_threshold(dtype_name: str) -> float:
    """The smallest magnitude that rounds to inf in the dtype (to nearest): its largest finite
    value plus half its spacing there; inf for float64, where the reference's own evaluation
    overflows as the implementation's does."""
    if dtype_name == "float64":
        return math.inf
    finfo = np.finfo(dtype_name)
    spacing_at_largest = float(finfo.eps) * 2.0 ** (finfo.maxexp - 1)
    return float(finfo.max) + spacing_at_largest / 2


#: Per u (as UNIT_ROUNDOFF's keys combine), the magnitude from which a result computed in that
#: dtype rounds to inf. The reference evaluates in float64 or exactly, where an intermediate
#: such as g * g of a gradient of 1e20 stays finite; an implementation computing in float32
#: (as Chainer does) gets inf there, and whatever follows from it.
_OVERFLOW = {UNIT_ROUNDOFF[k] + UNIT_ROUNDOFF["float64"]: _overflow_threshold(k)
             for k in UNIT_ROUNDOFF}


def _rounding(u: float, value: float) -> float:
    """The error of rounding one finite result: u |value| + eta (0 for an exact zero)."""
    return u * abs(value) + _ETA.get(u, 0.0) if value else 0.0


class DecisionLog:
    """Records the ambiguous comparisons of one tracked run and optionally flips them.

    flip=None takes every decision nominally; flip="all" inverts every ambiguous one;
    flip=k (an int) inverts only the k-th ambiguous decision of the run.
    """

    def __init__(self, flip=None):
        self.flip = flip
        self.ambiguous = 0

    def decide(self, nominal: bool, ambiguous: bool) -> bool:
        if not ambiguous:
            return nominal
        index = self.ambiguous
        self.ambiguous += 1
        if self.flip == "all" or self.flip == index:
            return not nominal
        return nominal


_NO_LOG = DecisionLog()
_log = _NO_LOG


@contextmanager
def decisions(flip=None):
    """Collect (and with `flip`, invert) the ambiguous decisions made inside the block."""
    global _log
    saved, _log = _log, DecisionLog(flip)
    try:
        yield _log
    finally:
        _log = saved


def _bound(x) -> float:
    return x.bound if isinstance(x, Tracked) else 0.0


def _value(x) -> float:
    return x.value if isinstance(x, Tracked) else float(x)


class Tracked:
    """A float64 value and a bound on its distance from the exact-input result."""

    __slots__ = ("value", "bound", "u")

    def __init__(self, value: float, bound: float, u: float):
        self.value = float(value)
        bound = float(bound)
        if bound != bound or (math.isfinite(self.value)
                              and abs(self.value) + bound >= _OVERFLOW.get(u, math.inf)):
            bound = math.inf
        self.bound = bound
        self.u = u

    def __repr__(self):
        return f"Tracked({self.value!r} ± {self.bound:.3g})"

    def _make(self, value, bound, other=None):
        """A result: the propagated bound plus one rounding, u |value| (when finite)."""
        u = self.u
        if value - value == 0:
            bound += _rounding(u, value)
        return Tracked(value, bound, u)

    # -- arithmetic ----------------------------------------------------------------------
    def __add__(self, other):
        if isinstance(other, np.ndarray):
            return NotImplemented
        return self._make(self.value + _value(other), self.bound + _bound(other), other)

    __radd__ = __add__

    def __sub__(self, other):
        if isinstance(other, np.ndarray):
            return NotImplemented
        return self._make(self.value - _value(other), self.bound + _bound(other), other)

    def __rsub__(self, other):
        if isinstance(other, np.ndarray):
            return NotImplemented
        return self._make(_value(other) - self.value, self.bound + _bound(other), other)

    def __mul__(self, other):
        if isinstance(other, np.ndarray):
            return NotImplemented
        a, b, ea, eb = self.value, _value(other), self.bound, _bound(other)
        return self._make(a * b, _mul_bound(a, b, ea, eb), other)

    __rmul__ = __mul__

    def __truediv__(self, other):
        if isinstance(other, np.ndarray):
            return NotImplemented
        return _divide(self, other, self)

    def __rtruediv__(self, other):
        if isinstance(other, np.ndarray):
            return NotImplemented
        return _divide(other, self, self)

    def __pow__(self, other):
        if isinstance(other, np.ndarray):
            return NotImplemented
        return _power(self, other, self)

    def __rpow__(self, other):
        if isinstance(other, np.ndarray):
            return NotImplemented
        return _power(other, self, self)

    def __neg__(self):
        return Tracked(-self.value, self.bound, self.u)

    def __pos__(self):
        return self

    def __abs__(self):
        return Tracked(abs(self.value), self.bound, self.u)

    def __float__(self):
        return self.value

    # -- comparisons: nominal answers, ambiguity recorded ----------------------------------
    def _compare(self, other, op):
        if isinstance(other, np.ndarray):
            return NotImplemented
        a, b = self.value, _value(other)
        ambiguous = abs(a - b) <= self.bound + _bound(other) and (self.bound + _bound(other)) > 0
        return _log.decide(op(a, b), ambiguous)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    def __eq__(self, other):
        return self._compare(other, lambda a, b: a == b)

    def __ne__(self, other):
        return self._compare(other, lambda a, b: a != b)

    __hash__ = None


def _mul_bound(a, b, ea, eb):
    terms = (abs(a) * eb if eb else 0.0) + (abs(b) * ea if ea else 0.0) + ea * eb
    return terms


def _divide(num, den, like):
    a, b, ea, eb = _value(num), _value(den), _bound(num), _bound(den)
    with np.errstate(all="ignore"):
        c = float(np.float64(a) / np.float64(b))
    if eb == 0 and ea == 0:
        bound = 0.0
    elif abs(b) <= eb:
        bound = math.inf
    else:
        bound = (ea + abs(c) * eb) / (abs(b) - eb) if math.isfinite(c) else math.inf
    u = max(like.u, num.u if isinstance(num, Tracked) else 0.0, den.u if isinstance(den, Tracked) else 0.0)
    return Tracked(c, bound + (_rounding(u, c) if math.isfinite(c) else 0.0), u)


def _power(base, exponent, like):
    a, b, ea, eb = _value(base), _value(exponent), _bound(base), _bound(exponent)
    with np.errstate(all="ignore"):
        c = float(np.power(np.float64(a), np.float64(b)))
    if not math.isfinite(c):
        return Tracked(c, 0.0, like.u)
    if ea == 0 and eb == 0:
        bound = 0.0
    elif a == 0 or abs(a) <= ea:
        bound = math.inf
    else:
        bound = abs(c) * (abs(b) * ea / abs(a) + (abs(math.log(abs(a))) * eb if eb else 0.0))
    exact = float(b).is_integer() and abs(b) <= 1 and ea == 0
    ulps = 0.0 if exact else POW_ULPS
    return Tracked(c, bound + (ulps * _rounding(like.u, c) if ulps else 0.0), like.u)


def _cast(value: float, dtype) -> float:
    """value rounded to dtype (to nearest, ties to even; overflowing to inf as a cast does)."""
    with np.errstate(over="ignore"):
        return float(dtype.type(value))


def half_ulp(value: float, dtype) -> float:
    """Half the spacing of `dtype` at `value` (at the smallest subnormal for 0)."""
    dtype = np.dtype(dtype)
    return float(np.spacing(np.abs(dtype.type(value)), dtype=dtype)) / 2.0


class TrackedArithmetic(ObjectArithmetic):
    """The reference's arithmetic protocol (reference.arithmetic) over `Tracked` numbers.

    `compute_dtype` is the dtype the implementation under test computes in. A number
    entering the arithmetic (a stored array element, a hyperparameter, a literal) is exact
    when the compute dtype represents it, else it carries u * |x| (it is rounded on entry).
    """

    def __init__(self, compute_dtype="float32"):
        self.compute_dtype = np.dtype(compute_dtype)
        self.u = UNIT_ROUNDOFF[self.compute_dtype.name] + UNIT_ROUNDOFF["float64"]
        self.name = f"tracked({self.compute_dtype.name})"

    # -- element operations of ObjectArithmetic ------------------------------------------
    def number(self, x):
        if isinstance(x, Tracked):
            return x
        x = float(x)
        representable = not math.isfinite(x) or float(self.compute_dtype.type(x)) == x
        return Tracked(x, 0.0 if representable else self.u * abs(x), self.u)

    def number_to_float(self, x):
        return _value(x)

    def number_sqrt(self, x):
        x = self.number(x)
        c = math.sqrt(x.value) if x.value >= 0 else math.nan
        if x.bound == 0 or not math.isfinite(c):
            bound = 0.0
        elif x.value > 0:
            bound = min(x.bound / c, math.sqrt(x.bound))
        else:
            bound = math.sqrt(x.bound)
        return Tracked(c, bound + (_rounding(self.u, c) if math.isfinite(c) else 0.0), self.u)

    def number_isnan(self, x):
        return math.isnan(_value(x))

    def number_isinf(self, x):
        return math.isinf(_value(x))

    def number_round_to(self, x, finfo):
        """Round to storage: the stored value, bounded by rounding the whole interval.

        An implementation whose result lies in [v - B, v + B] stores a value in
        [round(v - B), round(v + B)]; the bound is the distance from round(v) to the ends
        (0 when the interval rounds to one value; at most B plus one storage ULP). Where the
        interval straddles the overflow threshold, overflowing is an ambiguous decision.
        """
        x = self.number(x)
        dtype = np.dtype(finfo.dtype)
        if dtype == np.float64 or not math.isfinite(x.value):
            return x
        rounded = _cast(x.value, dtype)
        lo, hi = _cast(x.value - x.bound, dtype), _cast(x.value + x.bound, dtype)
        if math.isfinite(rounded) and math.isfinite(lo) and math.isfinite(hi):
            return Tracked(rounded, max(hi - rounded, rounded - lo), self.u)
        if not math.isfinite(x.bound):
            return Tracked(rounded, math.inf, self.u)
        largest = float(finfo.max)
        overflows = not math.isfinite(rounded)
        if _log.decide(overflows, ambiguous=True):
            return Tracked(math.copysign(math.inf, x.value), 0.0, self.u)
        finite_end = min(abs(lo), abs(hi), largest) if overflows else abs(rounded)
        return Tracked(math.copysign(finite_end, x.value),
                       largest - min(abs(lo), abs(hi), largest), self.u)

    # -- array-level conversions, vectorized (same results as the element operations) ----
    def _split(self, values):
        """(values, bounds) of an object array as two float64 arrays of its shape."""
        values = self._as_object(values)
        flat = values.ravel()
        v = np.fromiter((_value(x) for x in flat), dtype=np.float64, count=flat.size)
        b = np.fromiter((_bound(x) for x in flat), dtype=np.float64, count=flat.size)
        return v.reshape(values.shape), b.reshape(values.shape)

    def _join(self, values, bounds):
        out = np.empty(np.shape(values), dtype=object)
        u = self.u
        out.ravel()[:] = [Tracked(v, b, u) for v, b in zip(np.ravel(values).tolist(),
                                                            np.ravel(bounds).tolist())]
        return out

    def array(self, values):
        values = np.asarray(values)
        if values.dtype == object:
            return super().array(values)
        exact = values.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            representable = ~np.isfinite(exact) | (exact.astype(self.compute_dtype) == exact)
        return self._join(exact, np.where(representable, 0.0, self.u * np.abs(exact)))

    def to_float64(self, values):
        return self._split(values)[0]

    def inputs(self, values, bounds):
        """An array of inputs that carry a known error: element i is values[i] +- bounds[i].

        What a tracked input is for: a value the implementation computed before the step
        under test, whose exact result is not knowable but bounded (the mean gradient over
        ranks, `mean_over_ranks`). Everything downstream propagates the bound as usual.
        """
        values = np.asarray(values, dtype=np.float64)
        bounds = np.broadcast_to(np.asarray(bounds, dtype=np.float64), values.shape)
        if np.any(bounds < 0) or np.any(np.isnan(bounds)):
            raise ValueError("an input's bound must be a non-negative number or inf")
        return self._join(values, bounds)

    def _map(self, function, *arrays):
        arrays = [self._as_object(a) for a in arrays]
        out = np.frompyfunc(function, len(arrays), 1)(*arrays)
        return out if isinstance(out, np.ndarray) else np.asarray(out, dtype=object)

    def round_to(self, values, dtype):
        """Vectorized `number_round_to` for the common, finite case."""
        dtype = np.dtype(dtype)
        value, bound = self._split(values)
        if dtype == np.float64:
            return self._as_object(values).copy()
        with np.errstate(over="ignore", invalid="ignore"):
            rounded = value.astype(dtype).astype(np.float64)
            lo = (value - bound).astype(dtype).astype(np.float64)
            hi = (value + bound).astype(dtype).astype(np.float64)
            simple = np.isfinite(rounded) & np.isfinite(lo) & np.isfinite(hi)
            out_bound = np.where(simple, np.maximum(hi - rounded, rounded - lo), 0.0)
        out = self._join(np.where(simple, rounded, 0.0), out_bound)
        if not simple.all():
            finfo = np.finfo(dtype)
            source = self._as_object(values)
            for index in np.ndindex(simple.shape):
                if not simple[index]:
                    out[index] = self.number_round_to(source[index], finfo)
        return out

    # -- operations whose bound rule differs from the generic one ------------------------
    def bounds(self, values):
        """The float64 array of bounds that travel with `values`."""
        values = self._as_object(values)
        return np.vectorize(_bound, otypes=[np.float64])(values) if values.size else \
            np.zeros(values.shape)

    def sign(self, values):
        def sign(x):
            x = self.number(x)
            s = float(np.sign(x.value))
            return Tracked(s, 2.0 if abs(x.value) <= x.bound and x.bound > 0 else 0.0, self.u)
        return self._unwrap(self._map(sign, values))

    def maximum(self, a, b):
        return self._unwrap(self._map(lambda x, y: self._pick(x, y, max), a, b))

    def minimum(self, a, b):
        return self._unwrap(self._map(lambda x, y: self._pick(x, y, min), a, b))

    def _pick(self, x, y, choose):
        x, y = self.number(x), self.number(y)
        if math.isnan(x.value) or math.isnan(y.value):
            return Tracked(math.nan, 0.0, self.u)
        return Tracked(choose(x.value, y.value), max(x.bound, y.bound), self.u)

    def divide(self, numerator, denominator):
        return self._unwrap(self._map(lambda x, y: _divide(self.number(x), self.number(y), self.number(x)),
                                      numerator, denominator))

    def pow(self, base, exponent):
        return _power(self.number(base), self.number(exponent), self.number(base))

    def sum(self, values):
        flat = list(self._as_object(values).ravel())
        if not flat:
            return self.number(0.0)
        vals = [_value(v) for v in flat]
        if not all(math.isfinite(v) for v in vals):
            with np.errstate(invalid="ignore"):
                return Tracked(float(np.sum(np.asarray(vals))), 0.0, self.u)
        bound = math.fsum(_bound(v) for v in flat) \
            + (len(flat) - 1) * _rounding(self.u, math.fsum(abs(v) for v in vals))
        return Tracked(math.fsum(vals), bound, self.u)


# -- the mean over ranks of a distributed case ------------------------------------------------
def sum_rounding_bound(abs_sum, n_terms: int, dtype):
    """The rounding term of the sum rule above, for a sum of `n_terms` terms computed in
    `dtype` in any order: (n - 1) u sum |a_i| (u: `dtype`'s unit roundoff; the terms exact).

    It holds for recursive summation in every order (Rump, BIT 52 (2012) 201-220: the bound
    needs no (1 - nu)^-1 factor under rounding to nearest), which for n <= 3 is every
    evaluation tree; additions are exact in the subnormal range, so no underflow term.
    Overflow is outside the rule: `mean_over_ranks` decides it separately.
    """
    return (n_terms - 1) * UNIT_ROUNDOFF[np.dtype(dtype).name] * np.asarray(abs_sum, np.float64)


class AmbiguousReduction(ValueError):
    """The reduction's outcome class (finite or not, inf or NaN) depends on the summation
    order the transport uses: such gradients are not valid for a distributed case."""


@dataclass
class MeanOverRanks:
    """The mean gradient the implementation steps on, as the reference receives it.

    `value`: the nominal mean (float64, on the gradient dtype's grid, or inf/NaN); `bound`:
    the largest distance of any summation order's result from it (0 where not finite);
    `overflow_ambiguous`: elements whose finiteness depends on the order; `class_ambiguous`:
    elements certainly not finite, but inf or NaN depending on the order (value NaN).
    """
    value: np.ndarray
    bound: np.ndarray
    overflow_ambiguous: np.ndarray
    class_ambiguous: np.ndarray

    @property
    def certainly_nonfinite(self) -> np.ndarray:
        return ~np.isfinite(self.value) & ~self.overflow_ambiguous


def mean_over_ranks(grads, grad_dtype, exchange_dtype=None) -> MeanOverRanks:
    """The mean over ranks of `grads` (one array of `grad_dtype` per rank, None for zeros),
    as fast.distributed and ChainerMN's pure_nccl compute it, with its error bound.

    The reduction (docs/distributed.md, "The average"), E the exchange dtype (D when None):

        a_r = grad_r cast to E                  exact here: computed from every rank's stream
        s   = a_0 + ... + a_{N-1} in E          in an order the transport chooses
        m   = round_E(float64(s) * float64(1/N))
        g   = m cast to D

    The exact sum S (math.fsum) and the sum rule give every order's s within S +- B,
    B = (N - 1) u_E sum |a_r| (+ the float64 rounding of S); every later operation is a
    monotone function f of s, so g lies in [f(S - B), f(S + B)] (both ends rounded outward
    in float64): the nominal value is f(S), the bound the larger distance to the two ends.
    The interval rounding to E, the multiplication (exact for N a power of two) and the cast
    to D (half an ULP of D, made exact as in `round_to`) thus add nothing beyond themselves.

    Non-finite classes, decided without assuming an order: a NaN term, or terms +inf and
    -inf, make NaN; one sign of inf makes that inf unless the finite terms' partial sums
    can overflow (then the class is inf or NaN: `class_ambiguous`). Finite terms: where
    no partial sum can overflow E (sum |a_r| (1 + N u_E) rounds to a finite E value) the
    result is f(s); where the sum overflows in every order (both ends of the interval
    overflow) it is inf of S's sign, certainly for N <= 3 (two partial sums of opposite
    signs cannot both overflow with three terms), else of an ambiguous class; anything else
    is `overflow_ambiguous` (finite in some orders, inf in others).
    """
    D = np.dtype(grad_dtype)
    E = D if exchange_dtype is None else np.dtype(exchange_dtype)
    n = len(grads)
    shape = next((np.shape(g) for g in grads if g is not None), None)
    if shape is None:
        raise ValueError("mean_over_ranks needs the shape: at least one gradient that is not None")
    with np.errstate(over="ignore", invalid="ignore"):
        terms = np.stack([np.zeros(shape, E) if g is None else np.asarray(g).astype(E)
                          for g in grads]).astype(np.float64).reshape(n, -1)
    u_e = UNIT_ROUNDOFF[E.name]
    reciprocal = 1.0 / n

    def through(s):
        """f: round to E, times float64(1/N) rounded to E, cast to D (float64 out)."""
        with np.errstate(over="ignore", invalid="ignore"):
            s_e = s.astype(E).astype(np.float64)
            return (s_e * reciprocal).astype(E).astype(D).astype(np.float64)

    def cannot_overflow(abs_sum):
        with np.errstate(over="ignore", invalid="ignore"):
            return np.isfinite((abs_sum * (1.0 + n * u_e)).astype(E))

    finite_terms = np.isfinite(terms)
    all_finite = finite_terms.all(axis=0)
    safe_terms = np.where(finite_terms, terms, 0.0)
    exact = np.array([math.fsum(col) for col in safe_terms.T], dtype=np.float64)
    abs_sum = np.array([math.fsum(col) for col in np.abs(safe_terms).T], dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        spread = (sum_rounding_bound(abs_sum, n, E) + UNIT_ROUNDOFF["float64"] * np.abs(exact))
        lo = np.nextafter(exact - spread, -np.inf)
        hi = np.nextafter(exact + spread, np.inf)
    nominal, low, high = through(exact), through(lo), through(hi)
    no_partial_overflow = cannot_overflow(abs_sum)

    value = nominal.copy()
    with np.errstate(invalid="ignore"):
        bound = np.where(np.isfinite(nominal) & np.isfinite(low) & np.isfinite(high),
                         np.maximum(high - nominal, nominal - low), 0.0)
    ends_finite = np.isfinite(low) & np.isfinite(high)
    ends_overflow = np.isinf(low) & np.isinf(high) & (np.sign(low) == np.sign(high))
    with np.errstate(over="ignore", invalid="ignore"):
        sum_ends_overflow = np.isinf(lo.astype(E)) & np.isinf(hi.astype(E)) & \
            (np.sign(lo) == np.sign(hi))
    finite_result = all_finite & ends_finite & no_partial_overflow
    certain_inf = all_finite & ((no_partial_overflow & ends_overflow) |
                                (~no_partial_overflow & sum_ends_overflow))
    overflow_ambiguous = all_finite & ~finite_result & ~certain_inf
    class_ambiguous = certain_inf & ~no_partial_overflow & (n > 3)
    value = np.where(certain_inf, np.copysign(np.inf, exact), value)

    # Columns with a non-finite term.
    nan_term = np.isnan(terms).any(axis=0)
    pos_inf = (terms == np.inf).any(axis=0)
    neg_inf = (terms == -np.inf).any(axis=0)
    nan_result = ~all_finite & (nan_term | (pos_inf & neg_inf))
    inf_result = ~all_finite & ~nan_result
    inf_class_ambiguous = inf_result & ~no_partial_overflow
    value = np.where(inf_result, np.where(pos_inf, np.inf, -np.inf), value)
    value = np.where(nan_result, np.nan, value)
    class_ambiguous = class_ambiguous | inf_class_ambiguous
    value = np.where(class_ambiguous | overflow_ambiguous, np.nan, value)
    bound = np.where(np.isfinite(value), bound, 0.0)
    return MeanOverRanks(value.reshape(shape), bound.reshape(shape),
                         overflow_ambiguous.reshape(shape), class_ambiguous.reshape(shape))
