"""Where cases come from: the fixed CI suite and hypothesis strategies.

`ci_suite(level)` is deterministic. Level "ci" covers the whole matrix
optimizer x dtype mode x hook (none or one of six) x loss-scaling mode x profile with small
shapes, plus feature cases (odd and large sizes, special gradient streams, injections, None
grads, disabled rules, per-rule overrides and hooks, hook order, checkpoints, raised errors)
and trajectories that reach late steps (14-step runs with varied skipped steps in both
profiles, runs resumed at t = 10^3, 10^5, 10^7). Level "full" runs the same cases with more
steps and larger shapes.

`cases()` is the hypothesis strategy; `settings_profile(name)` gives the `ci`
(derandomized), `dev` and `deep` settings.
"""
from __future__ import annotations

import itertools

from hypothesis import HealthCheck, settings, strategies as st

from .cases import (DTYPE_MODES, HOOK_KINDS, OPTIMIZERS, PROFILES, Case, HookSpec, Injection,
                    LossScaling, ParamSpec, Resume)

#: Arguments for each hook kind, chosen so the hook is active on the generated streams.
HOOK_ARGS = {
    "WeightDecay": (1e-2,),
    "Lasso": (1e-3,),
    "GradientClipping": (1.0,),
    "GradientHardClipping": (-0.5, 0.5),
    "GradientNoise": (0.3,),
    "GradientLARS": (1e-2, 1e-3),
}
#: Hooks that Chainer can attach to a single update rule (call_for_each_param).
PER_RULE_HOOKS = ("WeightDecay", "Lasso", "GradientHardClipping", "GradientNoise",
                  "GradientLARS")
#: The hyperparameter a per-rule override changes, per optimizer.
LEARNING_RATE = {name: "lr" for name in OPTIMIZERS}
LEARNING_RATE.update({n: "alpha" for n in ("Adam", "AdamW", "AMSGrad", "AdaBound", "AMSBound")})
LEARNING_RATE["AdaDelta"] = "rho"
#: Non-default hyperparameters that switch on a different code path.
VARIANTS = {
    "RMSprop": ({"eps_inside_sqrt": True}, {"eps_inside_sqrt": True, "eps": 1e-6},
                {"eps": 1e-4}),
    "Adam": ({"amsgrad": True}, {"adabound": True}, {"weight_decay_rate": 1e-2},
             {"eta": 0.5}),
    "AdamW": ({"weight_decay_rate": 1e-2},),
    "MSVAG": ({"beta": 0.9},),
    "AdaBound": ({"final_lr": 0.5, "gamma": 0.1},),
}
#: Hyperparameters the matrix uses instead of the defaults: RMSprop's default eps (1e-8)
#: underflows in float16, so with it every float16 step would only raise the eps error
#: (that error is covered by the feature cases, which keep the defaults).
MATRIX_HYPERPARAMS = {"RMSprop": (("eps", 1e-6),)}
LOSS_SCALINGS = (LossScaling(), LossScaling("static", 64.0), LossScaling("dynamic", None, 2))
SMALL_SHAPES = ((), (0,), (1,), (7,), (2, 3))
ODD_SIZES = (15, 16, 17, 31, 33, 63, 65, 129, 257)
MORE_ODD_SIZES = ODD_SIZES + (127, 255, 1023, 1025)
LARGE_SHAPE = (43, 47)       # 2021 elements: not a multiple of any vector width
LARGER_SHAPE = (67, 61)      # 4087 elements


#: The long runs: LONG_STEPS steps under dynamic scaling with a small interval, and the steps
#: a non-finite gradient skips, per profile. The two patterns share no step, so no step index
#: is skipped in every long run of an optimizer and dtype mode; each leaves at least 8 normal
#: steps and, after a skip, a run of more than two growth intervals (2 x LONG_INTERVAL steps).
LONG_STEPS = 14
LONG_INTERVAL = 2
LONG_SKIPS = {"chainer": (1, 4, 11), "fixed": (2, 3, 9)}
#: Optimizers whose update depends on the step count: the Adam family's bias correction and
#: AdaBound's bound schedule (each rule's t), MSVAG's beta_power (beta ** (t + 1)).
STEP_COUNTED = ("Adam", "AdamW", "AMSGrad", "AdaBound", "AMSBound", "MSVAG")
#: The updates a resumed case has made before its first step.
RESUME_AT = (10**3, 10**5, 10**7)
#: MSVAG's beta in the resumed cases: beta ** 1001 (4e-5) is far from both 0 and 1, and
#: beta ** 100001 underflows to 0 in float64.
RESUMED_MSVAG_BETA = 0.99


def _params(shapes, **kwargs):
    return tuple(ParamSpec(f"p{i}", tuple(s), **kwargs) for i, s in enumerate(shapes))


def _skip_injection(ls: LossScaling, params) -> tuple:
    """A non-finite grad at step 2 when dynamic scaling would skip that step."""
    if ls.mode != "dynamic":
        return ()
    target = next(p for p in params if p.size)
    return (Injection(2, target.name, "inf", 0),)


def matrix_cases(steps=3, shapes=SMALL_SHAPES):
    """Every optimizer x dtype mode x hook x loss-scaling mode x profile."""
    hooks = (None,) + HOOK_KINDS
    for opt, mode, hook, ls, profile in itertools.product(
            OPTIMIZERS, DTYPE_MODES, hooks, LOSS_SCALINGS, PROFILES):
        params = _params(shapes)
        yield Case(
            name=f"matrix/{opt}/{mode}/{hook or 'nohook'}/{ls.mode}/{profile}",
            optimizer=opt, params=params, steps=steps, dtype_mode=mode, profile=profile,
            hyperparams=MATRIX_HYPERPARAMS.get(opt, ()),
            hooks=() if hook is None else (HookSpec(hook, HOOK_ARGS[hook]),),
            loss_scaling=ls, injections=_skip_injection(ls, params), seed=len(opt))


def feature_cases(steps=3, odd_sizes=ODD_SIZES, large_shape=LARGE_SHAPE):
    """Cases aimed at one feature each, over every optimizer and the four dtype modes."""
    for opt, mode in itertools.product(OPTIMIZERS, DTYPE_MODES):
        tag = f"{opt}/{mode}"
        base = dict(optimizer=opt, dtype_mode=mode, steps=steps)
        yield Case(name=f"odd-sizes/{tag}", params=_params([(n,) for n in odd_sizes]), **base)
        yield Case(name=f"large/{tag}", params=_params([large_shape]),
                   optimizer=opt, dtype_mode=mode, steps=2)
        for variant in VARIANTS.get(opt, ()):
            key = ",".join(f"{k}={v}" for k, v in variant.items())
            yield Case(name=f"variant/{tag}/{key}", params=_params([(9,), (33,)]),
                       hyperparams=tuple(variant.items()), **base)
        for kind, scale in (("normal", 1e-3), ("normal", 1e3), ("zeros", 1.0),
                            ("fp16_overflow", 1.0), ("fp16_underflow", 1.0),
                            ("subnormal", 1.0)):
            yield Case(name=f"grads/{tag}/{kind}x{scale:g}",
                       params=_params([(17,), ()], grad_kind=kind, grad_scale=scale), **base)
        params = _params([(5,), (8,), (3,)])
        yield Case(name=f"none-grad-disabled-override/{tag}", params=params,
                   injections=(Injection(2, "p0", "none"), Injection(3, "p2", "nan", 1)),
                   disabled=("p1",), overrides=(("p2", LEARNING_RATE[opt], 0.5 if
                                                 LEARNING_RATE[opt] != "rho" else 0.9),),
                   **base)
        yield from long_cases(opt, mode)
        yield from resumed_cases(opt, mode, steps)
        order = (HookSpec("WeightDecay", (0.5,)), HookSpec("GradientHardClipping", (-0.05, 0.05)))
        for label, chain in (("decay-then-clip", order), ("clip-then-decay", order[::-1])):
            yield Case(name=f"hook-order/{tag}/{label}", params=_params([(5,), ()]),
                       hooks=chain, **base)
        for profile in PROFILES:
            clip = (HookSpec("GradientClipping", (1.0,)),)
            yield Case(name=f"clip-small-norm/{tag}/{profile}", profile=profile, hooks=clip,
                       params=_params([(6,)], grad_scale=1e-3), **base)
            yield Case(name=f"clip-zero-norm/{tag}/{profile}", profile=profile, hooks=clip,
                       params=_params([(6,)], grad_kind="zeros"), **base)
            # A per-rule LARS whose fp16 sum of squares underflows: norm 0 in the chainer
            # profile (NumPy's fp16 norm), not in the fixed one (float64).
            lars = (HookSpec("GradientLARS", (0.01, 0.001), param="p0"),
                    HookSpec("GradientLARS", (0.01, 0.001), param="p1"))
            yield Case(name=f"rule-lars-tiny-grad/{tag}/{profile}", profile=profile, hooks=lars,
                       params=_params([(), (5,)], grad_scale=1e-4, init_scale=1.0), **base)
        for profile in PROFILES:
            ls = LossScaling("dynamic", None, 2) if mode.startswith("float16") else LossScaling()
            yield Case(name=f"checkpoint/{tag}/{profile}", params=_params([(6,), (13,)]),
                       profile=profile, loss_scaling=ls, checkpoints=(2,), **base)
            hooks = (HookSpec("WeightDecay", HOOK_ARGS["WeightDecay"]),
                     HookSpec("GradientClipping", (0.3,)),
                     HookSpec("GradientHardClipping", (-0.05, 0.05), timing="post"),
                     HookSpec("Lasso", HOOK_ARGS["Lasso"], param="p0"),
                     HookSpec("GradientLARS", HOOK_ARGS["GradientLARS"], timing="post", param="p1"))
            for order, chain in (("forward", hooks), ("reversed", hooks[:3][::-1] + hooks[3:])):
                yield Case(name=f"hook-chain/{tag}/{profile}/{order}",
                           params=_params([(4,), (9,)]), profile=profile, hooks=chain,
                           loss_scaling=LossScaling("static", 8.0), **base)
    yield from intermediate_overflow_cases(steps)
    for mode in DTYPE_MODES:
        for opt, hp in (("Adam", {"eps": 1e-60}), ("RMSprop", {"eps": 1e-60}),
                        ("AdamW", {"eps": 1e-60})):
            yield Case(name=f"error/{opt}-tiny-eps/{mode}", optimizer=opt, dtype_mode=mode,
                       params=_params([(3,)]), hyperparams=tuple(hp.items()))


def intermediate_overflow_cases(steps=3):
    """Gradients of about 3e19 in float32: g * g overflows float32 (above 1.8e19) where the
    stored results stay finite, so an implementation that computes in float32, as Chainer
    does, gets inf in its intermediates where the reference's exact ones are finite (the
    error model leaves those elements unbounded); the smaller gradients are checked as usual.
    Last, the campaign's alarm that found it: AMSBound on fp32 masters with a per-parameter
    learning rate, whose GradientLARS (fixed profile: on the masters) scales tiny gradients
    by a trust ratio of about 1e20."""
    for opt in OPTIMIZERS:
        yield Case(name=f"intermediate-overflow/{opt}/float32", optimizer=opt, dtype_mode="float32",
                   params=_params([(9,), ()], grad_scale=3e19), steps=steps)
    yield Case(name="intermediate-overflow/AMSBound/float16_master/fixed/GradientLARS",
               optimizer="AMSBound", dtype_mode="float16_master", profile="fixed", steps=16,
               params=_params([(), (), ()], grad_scale=1e-4, init_scale=1.0)[:1]
               + _params([(), (), ()], grad_scale=1e-4, init_scale=0.0)[1:],
               hyperparams=(("alpha", 1e-4), ("beta1", 0.0), ("beta2", 0.9), ("eps", 1e-8)),
               hooks=(HookSpec("GradientLARS", (0.01, 0.001)),), overrides=(("p0", "alpha", 0.05),),
               resume=Resume(t=1002, rule_t=(1000, 999, 998)))


#: The optimizers whose update_core rejects an eps too small for the dtype it computes in
#: (Adam's family: float32 for fp16 parameters; RMSprop: the gradient's dtype).
EPS_CHECKED = ("Adam", "AdamW", "AMSGrad", "AdaBound", "AMSBound", "RMSprop")


def rejected_update_cases():
    """Updates that Chainer rejects midway (eps too small), in every dtype mode where the
    check fails and both profiles: `opt.t` has advanced, the enabled rules before the
    rejected one have updated, the rejected rule's `t`, state and master have changed, the
    rules after it and the loss scale have not (compared as after any step). RMSprop in
    float16 keeps its default eps (1e-8, below float16's smallest subnormal); elsewhere eps
    is 1e-60, and an override gives a rule an eps that passes, so the rules before it update."""
    for opt, mode, profile in itertools.product(EPS_CHECKED, DTYPE_MODES[1:], PROFILES):
        tag = f"{mode}/{profile}"
        tiny = () if (opt, mode) == ("RMSprop", "float16") else (("eps", 1e-60),)
        passing = 1e-4 if opt == "RMSprop" else 1e-8
        base = dict(optimizer=opt, dtype_mode=mode, profile=profile, hyperparams=tiny)
        three = _params([(5,), (7,), (3,)])
        yield Case(name=f"error/{opt}-none-grads/{tag}", steps=2,
                   params=_params([(), ()]), injections=(Injection(1, "p0", "none"),
                                                         Injection(1, "p1", "none")), **base)
        yield Case(name=f"error/{opt}-after-updates/{tag}", steps=2, params=three,
                   overrides=(("p0", "eps", passing),), **base)
        yield Case(name=f"error/{opt}-after-updates-hooks/{tag}", steps=2, params=three,
                   overrides=(("p0", "eps", passing),),
                   hooks=(HookSpec("GradientClipping", (0.3,)),
                          HookSpec("WeightDecay", HOOK_ARGS["WeightDecay"], param="p1")),
                   loss_scaling=LossScaling("static", 8.0), **base)
        yield Case(name=f"error/{opt}-disabled-first/{tag}", steps=2, params=three,
                   disabled=("p0",), **base)
        yield Case(name=f"error/{opt}-after-skip/{tag}", steps=3, params=three,
                   overrides=(("p0", "eps", passing),),
                   loss_scaling=LossScaling("dynamic", None, 1),
                   injections=(Injection(1, "p1", "inf", 2),), **base)


def long_cases(opt, mode):
    """Runs of LONG_STEPS steps in each profile, with that profile's skipped steps."""
    for profile, skips in LONG_SKIPS.items():
        kinds = ("inf", "nan", "-inf")
        injections = tuple(Injection(step, f"p{i % 2}", kinds[i % 3], 2 * i + 1)
                           for i, step in enumerate(skips))
        yield Case(name=f"long/{opt}/{mode}/{profile}", params=_params([(3,), (11,)]),
                   steps=LONG_STEPS, optimizer=opt, dtype_mode=mode, profile=profile,
                   hyperparams=MATRIX_HYPERPARAMS.get(opt, ()), injections=injections,
                   loss_scaling=LossScaling("dynamic", None, LONG_INTERVAL))


def resumed_counters(optimizer, hyperparams, t, n_params) -> Resume:
    """The counters of a run resumed after `t` updates of its first rule: each later rule
    missed one more update (disabled for a while), the optimizer counted two skipped steps,
    and MSVAG's beta_power is beta ** (rule t + 1), as Chainer keeps it."""
    rule_t = tuple(t - i for i in range(n_params))
    beta_power = ()
    if optimizer == "MSVAG":
        beta = dict(hyperparams)["beta"]
        beta_power = tuple(beta ** (n + 1) for n in rule_t)
    return Resume(t + 2, rule_t, beta_power)


def resumed_cases(opt, mode, steps):
    """Cases resumed from a checkpoint at large counters (RESUME_AT), in both profiles:
    every step-counted optimizer, and SGD with GradientNoise (whose noise decays with t)."""
    if opt not in STEP_COUNTED + ("SGD",):
        return
    hyperparams = (("beta", RESUMED_MSVAG_BETA),) if opt == "MSVAG" else ()
    hooks = (HookSpec("GradientNoise", HOOK_ARGS["GradientNoise"]),) if opt == "SGD" else ()
    ls = LossScaling("dynamic", None, 2) if mode.startswith("float16") else LossScaling()
    params = _params([(5,), (17,)])
    for profile, t in itertools.product(PROFILES, RESUME_AT):
        yield Case(name=f"resume/{opt}/{mode}/{profile}/t={t}", optimizer=opt,
                   dtype_mode=mode, profile=profile, params=params, steps=steps,
                   hyperparams=hyperparams, hooks=hooks, loss_scaling=ls,
                   resume=resumed_counters(opt, hyperparams, t, len(params)))


#: Tensors for the norms of GradientClipping and GradientLARS: past one 256-wide block tree,
#: and an odd 2-D shape; then one past 65,536 elements, so that an implementation that cuts
#: tensors into chunks (fast: 32,768 elements; apex: 65,536) must add partial sums across
#: chunks (two cases only: the reference takes about 10 s a step there).
REDUCTION_SHAPES = ((300,), LARGE_SHAPE)
MULTI_CHUNK_SHAPE = (70001,)


def reduction_cases(steps=3):
    """The two norm-taking hooks over large tensors, in every dtype mode and profile."""
    hooks = ("GradientClipping", "GradientLARS")
    for hook, mode, profile in itertools.product(hooks, DTYPE_MODES, PROFILES):
        yield Case(name=f"large-norm/{hook}/{mode}/{profile}", optimizer="MomentumSGD",
                   params=_params(REDUCTION_SHAPES), steps=steps, dtype_mode=mode, profile=profile,
                   hooks=(HookSpec(hook, HOOK_ARGS[hook]),))
    for hook, mode in zip(hooks, ("float32", "float16_master")):
        yield Case(name=f"multi-chunk-norm/{hook}/{mode}", optimizer="MomentumSGD",
                   params=_params([MULTI_CHUNK_SHAPE, (5,)]), steps=2, dtype_mode=mode,
                   hooks=(HookSpec(hook, HOOK_ARGS[hook]),))


LEVELS = {
    "smoke": lambda: itertools.islice(matrix_cases(steps=2), 0, None, 17),
    "ci": lambda: itertools.chain(matrix_cases(), feature_cases(), reduction_cases(),
                                  rejected_update_cases()),
    "full": lambda: itertools.chain(matrix_cases(steps=6),
                                    feature_cases(steps=8, odd_sizes=MORE_ODD_SIZES,
                                                  large_shape=LARGER_SHAPE),
                                    reduction_cases(steps=6), rejected_update_cases()),
}


# -- the distributed slice (--ranks N) ----------------------------------------------------------
#: The exchange dtypes per dtype mode: the gradient's own (None) and, where it differs from
#: it, float32 (ChainerMN's default for fp16 gradients; a narrowing cast for float64).
EXCHANGES = {"float64": (None, "float32"), "float32": (None,),
             "float16_master": (None, "float32"), "float16": (None, "float32")}
#: Parameters of the distributed matrix: 14 elements in a 0-d, a 7- and a 6-element
#: parameter, so 3 ranks get uneven shards (5, 5, 4 or however the implementation pads) and
#: the shard edges fall inside the 7- and 6-element parameters at 2 and 3 ranks.
DISTRIBUTED_SHAPES = ((), (7,), (2, 3))
#: Parameters of the norm cases: 309 elements; the 300-element one straddles every shard
#: edge at 2 and 3 ranks, next to 7, 1 and 0-d.
NORM_SHAPES = ((7,), (300,), (1,), ())


def _one_rank_skip(ranks: int, ls: LossScaling, params) -> tuple:
    """Under dynamic scaling, a NaN at step 2 in the last rank's gradient only."""
    if ls.mode != "dynamic":
        return ()
    target = next(p for p in params if p.size)
    return (Injection(2, target.name, "nan", 3, rank=ranks - 1),)


def distributed_cases(ranks: int, steps: int = 3):
    """The distributed slice at `ranks` ranks (every case has `ranks` in its name).

    - matrix: every optimizer x dtype mode x zero (False, True) x exchange dtype (EXCHANGES),
      one profile each, alternating so that every optimizer and dtype mode runs in both;
      float16 modes under dynamic loss scaling with one rank's NaN at step 2 (3 steps; the
      others 2 steps);
    - norms: GradientClipping and GradientLARS over NORM_SHAPES, every dtype mode x zero,
      profiles alternating (each hook and mode in both);
    - one rank's non-finite values (NaN on the last rank, -inf on rank 0) and a None gradient
      on one rank, under dynamic scaling, every dtype mode x zero;
    - checkpoints (save and load at step 2) and resumed at t = 10^3, every dtype mode x
      zero, profiles alternating;
    - the elementwise optimizer-level hooks together (WeightDecay, GradientHardClipping after
      the update, GradientNoise) and per-rule hooks (replicated only: zero=True refuses them).
    """
    tag = f"ranks{ranks}"
    zeros = (False, True)
    for (o, opt), (m, mode), zero in itertools.product(enumerate(OPTIMIZERS),
                                                       enumerate(DTYPE_MODES), zeros):
        profile = PROFILES[(o + m + zero) % 2]
        fp16 = mode.startswith("float16")
        ls = LossScaling("dynamic", None, 2) if fp16 else LossScaling()
        params = _params(DISTRIBUTED_SHAPES)
        for exchange in EXCHANGES[mode]:
            layout = "zero" if zero else "replicated"
            yield Case(name=f"{tag}/matrix/{opt}/{mode}/{layout}/E={exchange or 'D'}/{profile}",
                       optimizer=opt, params=params, steps=steps if fp16 else steps - 1,
                       dtype_mode=mode,
                       profile=profile, hyperparams=MATRIX_HYPERPARAMS.get(opt, ()),
                       loss_scaling=ls, injections=_one_rank_skip(ranks, ls, params),
                       seed=len(opt), ranks=ranks, zero=zero, exchange_dtype=exchange)
    for (h, hook), (m, mode), zero in itertools.product(
            enumerate(("GradientClipping", "GradientLARS")), enumerate(DTYPE_MODES), zeros):
        layout = "zero" if zero else "replicated"
        profile = PROFILES[(h + m + zero) % 2]
        yield Case(name=f"{tag}/norm/{hook}/{mode}/{layout}/{profile}", optimizer="MomentumSGD",
                   params=_params(NORM_SHAPES), steps=steps, dtype_mode=mode, profile=profile,
                   hooks=(HookSpec(hook, HOOK_ARGS[hook]),), ranks=ranks, zero=zero)
    for (m, mode), zero in itertools.product(enumerate(DTYPE_MODES), zeros):
        layout = "zero" if zero else "replicated"
        base = dict(optimizer="Adam", dtype_mode=mode, ranks=ranks, zero=zero)
        profile = PROFILES[(m + zero) % 2]
        yield Case(name=f"{tag}/one-rank-nonfinite/{mode}/{layout}/{profile}",
                   params=_params([(5,), (8,), ()]), steps=4, profile=profile,
                   loss_scaling=LossScaling("dynamic", None, 1),
                   injections=(Injection(1, "p1", "none", rank=0),
                               Injection(2, "p1", "nan", 6, rank=ranks - 1),
                               Injection(3, "p2", "-inf", 0, rank=0)), **base)
        ls = LossScaling("dynamic", None, 2) if mode.startswith("float16") else LossScaling()
        yield Case(name=f"{tag}/checkpoint/{mode}/{layout}/{profile}",
                   params=_params([(6,), (13,)]), steps=steps, profile=profile,
                   loss_scaling=ls, checkpoints=(2,), **base)
        params = _params([(5,), (17,)])
        yield Case(name=f"{tag}/resume/{mode}/{layout}/{PROFILES[(m + zero + 1) % 2]}/t=1000",
                   params=params, steps=steps, profile=PROFILES[(m + zero + 1) % 2],
                   loss_scaling=ls, resume=resumed_counters("Adam", (), 1000, len(params)),
                   **base)
        hooks = (HookSpec("WeightDecay", HOOK_ARGS["WeightDecay"]),
                 HookSpec("GradientHardClipping", (-0.05, 0.05), timing="post"),
                 HookSpec("GradientNoise", HOOK_ARGS["GradientNoise"]))
        yield Case(name=f"{tag}/hooks/{mode}/{layout}/{profile}", params=_params([(4,), (9,)]),
                   steps=steps, profile=profile, hooks=hooks,
                   loss_scaling=LossScaling("static", 8.0), **dict(base, optimizer="SGD"))
        if not zero:
            rule_hooks = (HookSpec("Lasso", HOOK_ARGS["Lasso"], param="p0"),
                          HookSpec("GradientLARS", HOOK_ARGS["GradientLARS"], param="p1"))
            yield Case(name=f"{tag}/rule-hooks/{mode}/{layout}/{profile}",
                       params=_params([(4,), (9,)]), steps=steps, profile=profile,
                       hooks=rule_hooks, **dict(base, optimizer="MomentumSGD"))


#: The distributed slice at each level (the one-process levels do not change with it).
DISTRIBUTED_LEVELS = {
    "smoke": lambda ranks: itertools.islice(distributed_cases(ranks, steps=2), 0, None, 17),
    "ci": lambda ranks: distributed_cases(ranks),
    "full": lambda ranks: distributed_cases(ranks, steps=6),
}


def ci_suite(level="ci", ranks: int = 1) -> list:
    """The fixed suite at `level` ('smoke', 'ci' or 'full'), in a stable order: the
    one-process suite (ranks 1), or the distributed slice on `ranks` ranks."""
    if level not in LEVELS:
        raise ValueError(f"unknown suite level {level!r}; expected one of {sorted(LEVELS)}")
    if ranks == 1:
        return list(LEVELS[level]())
    if ranks < 1:
        raise ValueError(f"ranks must be a positive integer, not {ranks!r}")
    return list(DISTRIBUTED_LEVELS[level](ranks))


# -- hypothesis --------------------------------------------------------------------------------
SHAPES = ((), (0,), (1,), (2,), (7,), (8,), (9,), (16,), (17,), (3, 5), (31,), (33,), (65,),
          (129,), (257,))


@st.composite
def hyperparams(draw, optimizer: str):
    lr_name = LEARNING_RATE[optimizer]
    out = {}
    if lr_name == "rho":
        out["rho"] = draw(st.sampled_from((0.9, 0.95, 0.99)))
    else:
        out[lr_name] = draw(st.sampled_from((1e-4, 1e-3, 1e-2, 0.1, 0.5)))
    if optimizer in ("MomentumSGD", "CorrectedMomentumSGD", "NesterovAG", "RMSpropGraves"):
        out["momentum"] = draw(st.sampled_from((0.0, 0.5, 0.9)))
    if optimizer in ("Adam", "AdamW", "AMSGrad", "AdaBound", "AMSBound"):
        out["beta1"] = draw(st.sampled_from((0.0, 0.5, 0.9)))
        out["beta2"] = draw(st.sampled_from((0.9, 0.99, 0.999)))
        out["eps"] = draw(st.sampled_from((1e-8, 1e-6, 1e-3)))
    if optimizer in ("Adam", "AdamW"):
        out["weight_decay_rate"] = draw(st.sampled_from((0.0, 0.0, 1e-2)))
    if optimizer == "Adam":
        out["amsgrad"] = draw(st.booleans())
    if optimizer == "RMSprop":
        out["eps_inside_sqrt"] = draw(st.booleans())
        out["eps"] = draw(st.sampled_from((1e-8, 1e-6, 1e-4)))
    if optimizer == "MSVAG":
        out["beta"] = draw(st.sampled_from((0.5, 0.9, 0.99)))
    return tuple(out.items())


@st.composite
def trajectory_lengths(draw):
    """A number of steps: 1-6 mostly, one draw in four a tail of 7-30 steps."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.integers(7, 30))
    return draw(st.integers(1, 6))


@st.composite
def cases(draw, modes=DTYPE_MODES, per_rule_hooks=True, checkpoints=True, profiles=PROFILES,
          optimizers=OPTIMIZERS) -> Case:
    """A random case over the whole case model (optionally fewer optimizers, dtype modes or
    profiles, only optimizer-level hooks, or no checkpoints). One case in four runs 7-30
    steps, one in four (with checkpoints) is resumed at a large counter (RESUME_AT)."""
    optimizer = draw(st.sampled_from(optimizers))
    mode = draw(st.sampled_from(modes))
    profile = draw(st.sampled_from(profiles))
    n = draw(st.integers(1, 3))
    params = tuple(
        ParamSpec(f"p{i}", draw(st.sampled_from(SHAPES)),
                  grad_kind=draw(st.sampled_from(("normal",) * 4 + ("zeros", "fp16_overflow",
                                                                    "fp16_underflow", "subnormal"))),
                  grad_scale=draw(st.sampled_from((1e-4, 1e-2, 1.0, 1e2))),
                  init_scale=draw(st.sampled_from((0.0, 1e-2, 1.0, 10.0))))
        for i in range(n))
    steps = draw(trajectory_lengths())
    names = [p.name for p in params]
    hooks = tuple(draw(st.lists(_hooks(names, per_rule_hooks), max_size=2)))
    ls = draw(st.sampled_from(LOSS_SCALINGS + (LossScaling("static", 1024.0),
                                               LossScaling("dynamic", None, 1))))
    injections = tuple(draw(st.lists(st.builds(
        Injection, st.integers(1, steps), st.sampled_from(names),
        st.sampled_from(("inf", "-inf", "nan", "none")), st.integers(0, 1000)), max_size=2)))
    disabled = tuple(draw(st.lists(st.sampled_from(names), max_size=1)))
    overrides = ()
    if draw(st.booleans()):
        lr_name = LEARNING_RATE[optimizer]
        overrides = ((draw(st.sampled_from(names)), lr_name, 0.9 if lr_name == "rho" else 0.05),)
    checkpoint_steps = st.lists(st.integers(1, steps), max_size=1 if checkpoints else 0)
    saves = tuple(draw(checkpoint_steps))
    hp = draw(hyperparams(optimizer))
    resume = None
    if checkpoints and draw(st.integers(0, 3)) == 0:
        resume = resumed_counters(optimizer, hp, draw(st.sampled_from(RESUME_AT)), n)
    return Case(name="hypothesis", optimizer=optimizer, params=params, steps=steps,
                hyperparams=hp, dtype_mode=mode, profile=profile,
                hooks=hooks, loss_scaling=ls, injections=injections, disabled=disabled,
                overrides=overrides, checkpoints=saves, seed=draw(st.integers(0, 2**16)),
                resume=resume)


@st.composite
def _hooks(draw, names, per_rule=True):
    kind = draw(st.sampled_from(HOOK_KINDS))
    param = None
    if per_rule and kind in PER_RULE_HOOKS and draw(st.booleans()):
        param = draw(st.sampled_from(names))
    timing = draw(st.sampled_from(("auto", "pre", "post")))
    return HookSpec(kind, HOOK_ARGS[kind], timing=timing, param=param)


PROFILE_SETTINGS = {
    "ci": dict(max_examples=40, derandomize=True, database=None),
    "dev": dict(max_examples=300),
    "deep": dict(max_examples=10_000),
}


def settings_profile(name: str) -> settings:
    """Hypothesis settings for the `ci`, `dev` or `deep` campaign. They rest on Hypothesis's
    `default` profile, not on the one loaded now: Hypothesis loads its own derandomized `ci`
    profile wherever a `CI` variable is set, which would make `dev` and `deep` draw the same
    examples on every run and every job there."""
    if name not in PROFILE_SETTINGS:
        raise ValueError(f"unknown hypothesis profile {name!r}; expected one of "
                         f"{sorted(PROFILE_SETTINGS)}")
    return settings(parent=settings.get_profile("default"), deadline=None,
                    suppress_health_check=list(HealthCheck), **PROFILE_SETTINGS[name])
