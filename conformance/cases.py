"""The case model: everything one conformance case fixes, as frozen dataclasses.

A case is pure data. Both sides of a comparison (the implementation under test and the
reference) are built from it by `conformance.adapter`; nothing about the reference is ever
read back from the implementation.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

OPTIMIZERS = (
    "SGD", "MomentumSGD", "CorrectedMomentumSGD", "NesterovAG", "AdaGrad", "AdaDelta",
    "RMSprop", "RMSpropGraves", "Adam", "AdamW", "AMSGrad", "AdaBound", "AMSBound",
    "MSVAG", "SMORMS3",
)
DTYPE_MODES = ("float64", "float32", "float16_master", "float16")
PROFILES = ("chainer", "fixed")
HOOK_KINDS = ("WeightDecay", "Lasso", "GradientClipping", "GradientHardClipping",
              "GradientNoise", "GradientLARS")
LOSS_SCALING_MODES = ("none", "static", "dynamic")
GRAD_KINDS = ("normal", "zeros", "fp16_overflow", "fp16_underflow", "subnormal")
INJECTION_KINDS = ("inf", "-inf", "nan", "none")
#: The exchange dtypes of a distributed case (fast.distributed's allreduce_grad_dtype; None:
#: the gradient's own dtype).
EXCHANGE_DTYPES = (None, "float16", "float32", "float64")


def _repr_without_defaults(obj, optional: tuple) -> str:
    """The dataclass repr, leaving out the fields named in `optional` while they hold their
    default, so that adding such a field changes no existing case's repr (and `--case-repr`
    lines printed before it still reproduce)."""
    parts = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name in optional and value == f.default:
            continue
        parts.append(f"{f.name}={value!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"


@dataclass(frozen=True)
class HookSpec:
    """One optimizer hook: its class, arguments, timing and where it is attached.

    `param` is None for an optimizer-level hook, or the name of the parameter whose update
    rule receives it (a per-rule hook, always run inside the rule).
    """
    kind: str
    args: tuple = ()
    timing: str = "auto"
    param: str | None = None

    def __post_init__(self):
        if self.kind not in HOOK_KINDS:
            raise ValueError(f"unknown hook kind {self.kind!r}; expected one of {HOOK_KINDS}")
        if self.timing not in ("auto", "pre", "post"):
            raise ValueError(f"hook timing must be 'auto', 'pre' or 'post', not {self.timing!r}")


@dataclass(frozen=True)
class LossScaling:
    """Loss scaling: off, a static scale, or dynamic with an interval."""
    mode: str = "none"
    scale: float | None = None
    interval: int = 1000

    def __post_init__(self):
        if self.mode not in LOSS_SCALING_MODES:
            raise ValueError(f"loss-scaling mode must be one of {LOSS_SCALING_MODES}")
        if self.mode == "static" and not (self.scale and self.scale > 0):
            raise ValueError("static loss scaling needs a positive scale")


@dataclass(frozen=True, repr=False)
class Injection:
    """A non-finite value (or a None gradient) planted at one step of one parameter.

    `index` is the flat element index; ignored for kind 'none' (the whole grad is None).
    `rank`: in a distributed case, the one rank whose gradient gets it (None: every rank's).
    """
    step: int
    param: str
    kind: str
    index: int = 0
    rank: int | None = None

    def __post_init__(self):
        if self.kind not in INJECTION_KINDS:
            raise ValueError(f"injection kind must be one of {INJECTION_KINDS}")
        if self.rank is not None and (int(self.rank) != self.rank or self.rank < 0):
            raise ValueError("an injection's rank must be a non-negative integer or None")

    def __repr__(self):
        return _repr_without_defaults(self, ("rank",))


@dataclass(frozen=True)
class Resume:
    """A checkpoint the case starts from: a run resumed after many updates.

    Before step 1 each side takes one update on the step-0 gradients (so every state array
    exists), saves to npz and loads the file into a freshly built optimizer with these
    counters written into it (Chainer's keys): `t` (the optimizer's), `rule_t` (one per
    parameter, in order: `<param>/t`) and, where the file has the key (the `fixed` profile),
    `beta_power` (one per parameter: MSVAG's `<param>/beta_power`). The `chainer` profile does
    not save `beta_power`, so a resumed MSVAG restarts it at `beta` whatever `t` is.
    """
    t: int
    rule_t: tuple
    beta_power: tuple = ()

    def __post_init__(self):
        if any(int(t) != t or t < 1 for t in (self.t,) + tuple(self.rule_t)):
            raise ValueError("resumed counters must be positive integers")
        if any(t > self.t for t in self.rule_t):
            raise ValueError("a rule cannot have stepped more often than its optimizer")

    def file_entries(self, names) -> dict:
        """npz key -> value to write into the checkpoint, for parameters named `names`."""
        entries = {"t": self.t}
        entries.update({f"{name}/t": t for name, t in zip(names, self.rule_t)})
        entries.update({f"{name}/beta_power": bp for name, bp in zip(names, self.beta_power)})
        return entries


@dataclass(frozen=True)
class ParamSpec:
    """A parameter: its name, shape, initial-value scale and gradient stream."""
    name: str
    shape: tuple
    grad_kind: str = "normal"
    grad_scale: float = 1.0
    init_scale: float = 1.0

    def __post_init__(self):
        if self.grad_kind not in GRAD_KINDS:
            raise ValueError(f"gradient kind must be one of {GRAD_KINDS}")

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True, repr=False)
class Case:
    """One conformance case.

    `hyperparams` and `overrides` are tuples of pairs so the case stays hashable;
    `overrides` holds (param name, hyperparameter, value) triples set on that parameter's
    rule; `disabled` names parameters whose rule is disabled; `checkpoints` are the steps
    after which both sides save to npz and load into a freshly built optimizer; `resume`
    (a `Resume`, or None) starts the case from a checkpoint with large counters.

    Distributed cases (`ranks` > 1) run only under `mpiexec -n <ranks>` with `--ranks
    <ranks>` (conformance.ranks): every rank feeds its own gradient stream to the
    implementation's multi-node optimizer (`zero`: ZeRO sharding; `exchange_dtype`: its
    allreduce_grad_dtype, None for the gradient's own dtype), and the reference is fed the
    mean gradient with the reduction's rounding as its error bound. The three fields are left
    out of the repr while they hold their defaults (one-process cases read as before).
    """
    name: str
    optimizer: str
    params: tuple
    steps: int = 4
    hyperparams: tuple = ()
    dtype_mode: str = "float32"
    profile: str = "chainer"
    hooks: tuple = ()
    loss_scaling: LossScaling = field(default_factory=LossScaling)
    injections: tuple = ()
    disabled: tuple = ()
    overrides: tuple = ()
    checkpoints: tuple = ()
    seed: int = 0
    resume: Resume | None = None
    ranks: int = 1
    zero: bool = False
    exchange_dtype: str | None = None

    def __repr__(self):
        return _repr_without_defaults(self, ("ranks", "zero", "exchange_dtype"))

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}")
        if self.dtype_mode not in DTYPE_MODES:
            raise ValueError(f"dtype mode must be one of {DTYPE_MODES}, not {self.dtype_mode!r}")
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, not {self.profile!r}")
        if self.steps < 1:
            raise ValueError("a case needs at least one step")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names) or not names:
            raise ValueError("a case needs at least one parameter, with distinct names")
        for hook in self.hooks:
            if hook.param is not None and hook.param not in names:
                raise ValueError(f"hook attached to unknown parameter {hook.param!r}")
        if self.resume is not None and not (
                len(self.resume.rule_t) == len(names)
                and len(self.resume.beta_power) in (0, len(names))):
            raise ValueError("a resumed case needs one rule_t (and beta_power, if any) per "
                             "parameter")
        if int(self.ranks) != self.ranks or self.ranks < 1:
            raise ValueError(f"ranks must be a positive integer, not {self.ranks!r}")
        if self.ranks == 1 and (self.zero or self.exchange_dtype is not None):
            raise ValueError("zero and exchange_dtype belong to distributed cases (ranks > 1)")
        if self.exchange_dtype not in EXCHANGE_DTYPES:
            raise ValueError(f"exchange_dtype must be one of {EXCHANGE_DTYPES}")
        for inj in self.injections:
            if inj.rank is not None and inj.rank >= self.ranks:
                raise ValueError(f"injection on rank {inj.rank} of a {self.ranks}-rank case")

    @property
    def storage_dtype(self) -> str:
        return "float16" if self.dtype_mode.startswith("float16") else self.dtype_mode

    @property
    def uses_master(self) -> bool:
        return self.dtype_mode == "float16_master"

    @property
    def compute_dtype(self) -> str:
        """The dtype the implementation is allowed to compute in (fp16 modes: fp32)."""
        return "float32" if self.dtype_mode.startswith("float16") else self.dtype_mode
