"""The one table of named mappings from Chainer's optimizers and hooks to torch.optim and optax.

Each `Mapping` says how a Chainer optimizer or optimizer hook is ported to one library: the
counterpart, the code that builds it from Chainer's hyperparameters (shown verbatim in the
migration report, and the very code the adapters run), the code run before every step (the
per-step terms), and how the counterpart's state names translate to Chainer's. A mapping is
either the port to use (`kind` "mapping") or a naive port people write first (`kind`
"naive"), kept so that the report shows each fix and what it fixes.

Code is evaluated with these names bound:

- torch `build`: `torch`, `math`, `params` (the list of tensors) and the Chainer
  hyperparameters by name; it is an expression giving the torch.optim optimizer. The
  adapter builds one optimizer per parameter (so per-rule hyperparameters are a parameter's
  own), in torch's for-loop, foreach or fused implementation (`TORCH_PATHS`).
- torch `before_step`: statements with `opt`, `t` (the step about to be taken: 1, 2, ...),
  `torch`, `math` and the hyperparameters.
- torch hooks: statements acting on `params` (tensors whose `.grad` is set), with the hook's
  arguments by name and, for GradientNoise, `noise(p)`: the hook's noise as an array of p's
  shape and dtype.
- optax `build` and hooks: an expression giving an `optax.GradientTransformation`, with
  `optax`, `jax`, `jnp` and the hyperparameters (hook arguments); a schedule is a function of
  optax's step `count` (0 at the first step, so Chainer's `t` is `count + 1`).

`state` translates: (Chainer state name, counterpart state name, factor), Chainer's state
being `factor * counterpart's`, the factor an expression of the hyperparameters. A factor of
1 or -1 is exact; any other is rounded, and the adapters declare that rounding's bound
(`rule.state_bounds`, docs/conformance.md), so the comparison neither passes it silently nor
raises a false alarm.
"""
from __future__ import annotations

from dataclasses import dataclass

LIBRARIES = ("torch", "optax")
KINDS = ("mapping", "naive")
#: torch.optim's implementations of one step, each a variant of every torch mapping:
#: the constructor arguments that select it.
TORCH_PATHS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True},
               "fused": {"fused": True}}


@dataclass(frozen=True)
class Mapping:
    """One port of a Chainer optimizer or hook to a library (see the module docstring).

    `arguments`: the Chainer hyperparameters (hook arguments) the port expresses; a case
    that sets any other one is not applicable to it. `defaults`: (counterpart argument,
    Chainer hyperparameter) pairs whose defaults the report compares. `note`: for a mapping,
    why it is written so; for a naive port, what it gets wrong (what the mapping fixes).
    `none_grads`: "zeros" when the port hands a parameter whose gradient is None to the
    counterpart as zeros (Chainer's semantics), "skip" when the counterpart skips it.
    """
    name: str
    library: str
    chainer: str
    kind: str
    counterpart: str
    arguments: tuple
    build: str
    before_step: str = ""
    state: tuple = ()
    defaults: tuple = ()
    note: str = ""
    none_grads: str = "zeros"

    def __post_init__(self):
        if self.library not in LIBRARIES:
            raise ValueError(f"mapping {self.name}: library must be one of {LIBRARIES}")
        if self.kind not in KINDS:
            raise ValueError(f"mapping {self.name}: kind must be one of {KINDS}")
        if self.none_grads not in ("zeros", "skip"):
            raise ValueError(f"mapping {self.name}: none_grads must be 'zeros' or 'skip'")

    @property
    def is_hook(self) -> bool:
        return self.chainer in HOOKS

    @property
    def code(self) -> str:
        """The port as copyable code: the build, then what runs before every step."""
        if self.is_hook:
            return self.build
        lines = [f"opt = {self.build}"]
        if self.before_step:
            lines.append("# before every opt.step(), t = the step about to be taken (1, 2, ...):")
            lines.append(self.before_step)
        if self.none_grads == "zeros" and self.library == "torch":
            lines.append("# Chainer steps a parameter whose gradient is None as if it were zeros:")
            lines.append(ZERO_NONE_GRADS)
        return "\n".join(lines)


OPTIMIZERS = ("SGD", "MomentumSGD", "CorrectedMomentumSGD", "NesterovAG", "AdaGrad", "AdaDelta",
              "RMSprop", "RMSpropGraves", "Adam", "AdamW", "AMSGrad", "AdaBound", "AMSBound",
              "MSVAG", "SMORMS3")
HOOKS = ("WeightDecay", "Lasso", "GradientClipping", "GradientHardClipping", "GradientNoise",
         "GradientLARS")
ZERO_NONE_GRADS = ("for p in params:\n    if p.grad is None:\n"
                   "        p.grad = torch.zeros_like(p)")

_ADAM = ("alpha", "beta1", "beta2", "eps", "eta", "weight_decay_rate")
_ADAM_DEFAULTS = (("lr", "alpha"), ("betas", "beta1,beta2"), ("eps", "eps"),
                  ("weight_decay", "weight_decay_rate"))
_EPS_T = ('for group in opt.param_groups:\n'
          '    group["eps"] = eps / math.sqrt(1 - beta2 ** t)')
_EPS_NOTE = ("Chainer's eps is added to sqrt(v) before the bias correction of v (the "
             "'epsilon hat' of Kingma and Ba, section 2); torch adds it after. eps_t = eps / "
             "sqrt(1 - beta2**t), set before every step, puts it where Chainer does.")
_MOMENTUM_STATE = (("v", "momentum_buffer", "-lr"),)

TORCH = (
    Mapping("SGD", "torch", "SGD", "mapping", "torch.optim.SGD", ("lr",),
            "torch.optim.SGD(params, lr=lr)", defaults=(("lr", "lr"),)),
    Mapping("MomentumSGD", "torch", "MomentumSGD", "mapping", "torch.optim.SGD",
            ("lr", "momentum"), "torch.optim.SGD(params, lr=lr, momentum=momentum)",
            state=_MOMENTUM_STATE, defaults=(("lr", "lr"), ("momentum", "momentum")),
            note="Chainer's v is -lr times torch's momentum buffer: equal while lr is "
                 "constant; when lr changes, torch's buffer keeps the old steps at the new lr "
                 "(use CorrectedMomentumSGD's semantics, or rescale the buffer)."),
    Mapping("CorrectedMomentumSGD", "torch", "CorrectedMomentumSGD", "mapping",
            "torch.optim.SGD", ("lr", "momentum"),
            "torch.optim.SGD(params, lr=lr, momentum=momentum)",
            state=(("v", "momentum_buffer", "-1"),),
            defaults=(("lr", "lr"), ("momentum", "momentum")),
            note="torch's SGD with momentum is Chainer's CorrectedMomentumSGD: v is minus "
                 "the momentum buffer, under any lr schedule."),
    Mapping("NesterovAG/nesterov=True", "torch", "NesterovAG", "naive", "torch.optim.SGD",
            ("lr", "momentum"),
            "torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True)",
            state=_MOMENTUM_STATE, defaults=(("lr", "lr"), ("momentum", "momentum")),
            note="torch steps p -= lr (g + m b) with b = m b + g; Chainer p += m^2 v - (1 + m) "
                 "lr g with v = m v - lr g: (1 + m + m^2) lr g against (1 + m) lr g at the "
                 "first step, the same steady state. No torch optimizer computes Chainer's."),
    Mapping("AdaGrad", "torch", "AdaGrad", "mapping", "torch.optim.Adagrad", ("lr", "eps"),
            "torch.optim.Adagrad(params, lr=lr, eps=eps)", state=(("h", "sum", "1"),),
            defaults=(("lr", "lr"), ("eps", "eps"))),
    Mapping("AdaGrad/default-eps", "torch", "AdaGrad", "naive", "torch.optim.Adagrad",
            ("lr",), "torch.optim.Adagrad(params, lr=lr)", state=(("h", "sum", "1"),),
            defaults=(("lr", "lr"), ("eps", "eps")),
            note="torch's default eps is 1e-10, Chainer's 1e-8: pass eps."),
    Mapping("AdaDelta", "torch", "AdaDelta", "mapping", "torch.optim.Adadelta", ("rho", "eps"),
            "torch.optim.Adadelta(params, lr=1.0, rho=rho, eps=eps)",
            state=(("msg", "square_avg", "1"), ("msdx", "acc_delta", "1")),
            defaults=(("rho", "rho"), ("eps", "eps"))),
    Mapping("RMSprop", "torch", "RMSprop", "mapping", "torch.optim.RMSprop",
            ("lr", "alpha", "eps"), "torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps)",
            state=(("ms", "square_avg", "1"),),
            defaults=(("lr", "lr"), ("alpha", "alpha"), ("eps", "eps")),
            note="torch has no eps inside the square root (Chainer's eps_inside_sqrt=True)."),
    Mapping("RMSpropGraves/centered", "torch", "RMSpropGraves", "naive", "torch.optim.RMSprop",
            ("lr", "alpha", "momentum", "eps"),
            "torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, momentum=momentum, "
            "centered=True)",
            state=(("n", "square_avg", "1"), ("g", "grad_avg", "1"),
                   ("delta", "momentum_buffer", "-lr")),
            defaults=(("lr", "lr"), ("alpha", "alpha"), ("momentum", "momentum"), ("eps", "eps")),
            note="torch adds eps outside the square root, sqrt(n - g^2) + eps; Chainer inside, "
                 "sqrt(n - g^2 + eps). No torch optimizer computes Chainer's."),
    Mapping("Adam", "torch", "Adam", "mapping", "torch.optim.Adam", _ADAM + ("amsgrad",),
            "torch.optim.Adam(params, lr=eta * alpha, betas=(beta1, beta2), eps=eps, "
            "weight_decay=weight_decay_rate / alpha, amsgrad=amsgrad, "
            "decoupled_weight_decay=True)",
            before_step=_EPS_T,
            state=(("m", "exp_avg", "1"), ("v", "exp_avg_sq", "1"),
                   ("vhat", "max_exp_avg_sq", "1")),
            defaults=_ADAM_DEFAULTS,
            note=_EPS_NOTE + " Chainer's weight_decay_rate is decoupled and scaled by eta, "
                 "not by alpha: weight_decay = weight_decay_rate / alpha."),
    Mapping("Adam/plain-eps", "torch", "Adam", "naive", "torch.optim.Adam",
            ("alpha", "beta1", "beta2", "eps"),
            "torch.optim.Adam(params, lr=alpha, betas=(beta1, beta2), eps=eps)",
            state=(("m", "exp_avg", "1"), ("v", "exp_avg_sq", "1")), defaults=_ADAM_DEFAULTS,
            note="eps added after the bias correction of v: the step differs wherever sqrt(v) "
                 "is not much larger than eps (gradients near 1e-6 and below), most at the "
                 "first steps. " + _EPS_NOTE),
    Mapping("Adam/none-grads-skipped", "torch", "Adam", "naive", "torch.optim.Adam",
            _ADAM + ("amsgrad",),
            "torch.optim.Adam(params, lr=eta * alpha, betas=(beta1, beta2), eps=eps, "
            "weight_decay=weight_decay_rate / alpha, amsgrad=amsgrad, "
            "decoupled_weight_decay=True)",
            before_step=_EPS_T,
            state=(("m", "exp_avg", "1"), ("v", "exp_avg_sq", "1"),
                   ("vhat", "max_exp_avg_sq", "1")),
            defaults=_ADAM_DEFAULTS, none_grads="skip",
            note="torch skips a parameter whose gradient is None: its m and v do not decay "
                 "and its step count does not advance; Chainer steps it with zeros."),
    Mapping("AdamW", "torch", "AdamW", "mapping", "torch.optim.AdamW", _ADAM,
            "torch.optim.AdamW(params, lr=eta * alpha, betas=(beta1, beta2), eps=eps, "
            "weight_decay=weight_decay_rate / alpha)",
            before_step=_EPS_T, state=(("m", "exp_avg", "1"), ("v", "exp_avg_sq", "1")),
            defaults=_ADAM_DEFAULTS,
            note="Chainer decays p by eta * weight_decay_rate, torch by lr * weight_decay: "
                 "weight_decay = weight_decay_rate / alpha. " + _EPS_NOTE),
    Mapping("AdamW/weight_decay=wd", "torch", "AdamW", "naive", "torch.optim.AdamW", _ADAM,
            "torch.optim.AdamW(params, lr=eta * alpha, betas=(beta1, beta2), eps=eps, "
            "weight_decay=weight_decay_rate)",
            before_step=_EPS_T, state=(("m", "exp_avg", "1"), ("v", "exp_avg_sq", "1")),
            defaults=_ADAM_DEFAULTS,
            note="torch multiplies weight_decay by lr: passing Chainer's rate decays alpha "
                 "times less (1000x less at alpha = 1e-3)."),
    Mapping("AMSGrad", "torch", "AMSGrad", "mapping", "torch.optim.Adam",
            ("alpha", "beta1", "beta2", "eps", "eta"),
            "torch.optim.Adam(params, lr=eta * alpha, betas=(beta1, beta2), eps=eps, "
            "amsgrad=True)",
            before_step=_EPS_T,
            state=(("m", "exp_avg", "1"), ("v", "exp_avg_sq", "1"),
                   ("vhat", "max_exp_avg_sq", "1")),
            defaults=(("lr", "alpha"), ("betas", "beta1,beta2"), ("eps", "eps")),
            note=_EPS_NOTE),
    Mapping("AMSGrad/plain-eps", "torch", "AMSGrad", "naive", "torch.optim.Adam",
            ("alpha", "beta1", "beta2", "eps"),
            "torch.optim.Adam(params, lr=alpha, betas=(beta1, beta2), eps=eps, amsgrad=True)",
            state=(("m", "exp_avg", "1"), ("v", "exp_avg_sq", "1"),
                   ("vhat", "max_exp_avg_sq", "1")),
            defaults=(("lr", "alpha"), ("betas", "beta1,beta2"), ("eps", "eps")),
            note="eps added after the bias correction of vhat. " + _EPS_NOTE),
    # Hooks: statements on `params`, run where Chainer runs the hook.
    Mapping("WeightDecay", "torch", "WeightDecay", "mapping", "p.grad.add_", ("rate",),
            "for p in params:\n    p.grad.add_(p, alpha=rate)"),
    Mapping("Lasso", "torch", "Lasso", "mapping", "p.grad.add_", ("rate",),
            "for p in params:\n    p.grad.add_(torch.sign(p), alpha=rate)"),
    Mapping("GradientClipping", "torch", "GradientClipping", "mapping", "(a recipe)",
            ("threshold",),
            "norm = torch.linalg.vector_norm(torch.stack(\n"
            "    [torch.linalg.vector_norm(p.grad, dtype=torch.float64) for p in params]))\n"
            "rate = threshold / norm\n"
            "if rate < 1:\n"
            "    for p in params:\n"
            "        p.grad.mul_(rate)",
            note="torch.nn.utils.clip_grad_norm_ divides by norm + 1e-6; Chainer by the norm."),
    Mapping("GradientClipping/clip_grad_norm_", "torch", "GradientClipping", "naive",
            "torch.nn.utils.clip_grad_norm_", ("threshold",),
            "torch.nn.utils.clip_grad_norm_(params, threshold)",
            note="clip_grad_norm_ scales by threshold / (norm + 1e-6) and scales every "
                 "gradient (by at most 1) even below the threshold."),
    Mapping("GradientHardClipping", "torch", "GradientHardClipping", "mapping",
            "torch.Tensor.clamp_", ("lower_bound", "upper_bound"),
            "for p in params:\n    p.grad.clamp_(lower_bound, upper_bound)"),
    Mapping("GradientNoise", "torch", "GradientNoise", "mapping", "(a recipe)",
            ("eta", "noise_func"),
            "for p in params:\n    p.grad.add_(torch.from_numpy(noise(p)))",
            note="torch has no gradient-noise hook: add your noise function's draws (Chainer's "
                 "noise_func(xp, shape, dtype, hook, rule), rule.t before this step's "
                 "increment)."),
    Mapping("GradientLARS", "torch", "GradientLARS", "mapping", "(a recipe)",
            ("threshold", "weight_decay", "eps"),
            "for p in params:\n"
            "    p_norm = torch.linalg.vector_norm(p)\n"
            "    g_norm = torch.linalg.vector_norm(p.grad)\n"
            "    rate = p_norm / (eps + g_norm + weight_decay * p_norm) "
            "if p_norm > threshold else 1.0\n"
            "    p.grad.add_(p, alpha=weight_decay).mul_(rate)",
            note="torch has no LARS hook."),
)

_OPTAX_EPS_T = "lambda count: eps / jnp.sqrt(1 - beta2 ** (count + 1))"
_OPTAX_ADAM_DEFAULTS = (("learning_rate", "alpha"), ("b1", "beta1"), ("b2", "beta2"),
                        ("eps", "eps"), ("weight_decay", "weight_decay_rate"))
_OPTAX_ADAM = ("optax.inject_hyperparams(optax.adamw)(learning_rate=eta * alpha, b1=beta1, "
               "b2=beta2, eps=" + _OPTAX_EPS_T + ", weight_decay=weight_decay_rate / alpha)")
_OPTAX_ADAM_NOTE = ("Chainer's eps is added to sqrt(v) before the bias correction of v; optax "
                    "adds it after: eps_t = eps / sqrt(1 - beta2**t) as a schedule of optax's "
                    "count puts it where Chainer does. Chainer's Adam decays weights decoupled, "
                    "by eta * weight_decay_rate; optax.adamw by learning_rate * weight_decay: "
                    "weight_decay = weight_decay_rate / alpha.")

OPTAX = (
    Mapping("SGD", "optax", "SGD", "mapping", "optax.sgd", ("lr",),
            "optax.sgd(learning_rate=lr)", defaults=(("learning_rate", "lr"),)),
    Mapping("MomentumSGD", "optax", "MomentumSGD", "mapping", "optax.sgd", ("lr", "momentum"),
            "optax.sgd(learning_rate=lr, momentum=momentum)", state=(("v", "trace", "-lr"),),
            defaults=(("learning_rate", "lr"), ("momentum", "momentum")),
            note="Chainer's v is -lr times optax's trace: equal while lr is constant."),
    Mapping("CorrectedMomentumSGD", "optax", "CorrectedMomentumSGD", "mapping", "optax.sgd",
            ("lr", "momentum"), "optax.sgd(learning_rate=lr, momentum=momentum)",
            state=(("v", "trace", "-1"),),
            defaults=(("learning_rate", "lr"), ("momentum", "momentum")),
            note="optax.sgd with momentum is Chainer's CorrectedMomentumSGD: v is minus the "
                 "trace, under any lr schedule."),
    Mapping("NesterovAG/nesterov=True", "optax", "NesterovAG", "naive", "optax.sgd",
            ("lr", "momentum"),
            "optax.sgd(learning_rate=lr, momentum=momentum, nesterov=True)",
            state=(("v", "trace", "-lr"),),
            defaults=(("learning_rate", "lr"), ("momentum", "momentum")),
            note="optax steps p -= lr (g + m b) with b = m b + g; Chainer p += m^2 v - (1 + m) "
                 "lr g with v = m v - lr g. No optax transformation computes Chainer's."),
    Mapping("AdaGrad/optax.adagrad", "optax", "AdaGrad", "naive", "optax.adagrad",
            ("lr", "eps"), "optax.adagrad(learning_rate=lr, eps=eps)",
            state=(("h", "sum_of_squares", "1"),),
            defaults=(("learning_rate", "lr"), ("eps", "eps")),
            note="optax.adagrad's accumulator starts at 0.1 (initial_accumulator_value) and "
                 "its eps is inside the square root: g / sqrt(h + eps); Chainer's starts at 0 "
                 "and divides by sqrt(h) + eps. No optax transformation computes Chainer's."),
    Mapping("AdaDelta", "optax", "AdaDelta", "mapping", "optax.adadelta", ("rho", "eps"),
            "optax.adadelta(learning_rate=1.0, rho=rho, eps=eps)",
            state=(("msg", "e_g", "1"), ("msdx", "e_x", "1")),
            defaults=(("rho", "rho"), ("eps", "eps"))),
    Mapping("RMSprop", "optax", "RMSprop", "mapping", "optax.rmsprop",
            ("lr", "alpha", "eps", "eps_inside_sqrt"),
            "optax.rmsprop(learning_rate=lr, decay=alpha, eps=eps, eps_in_sqrt=eps_inside_sqrt)",
            state=(("ms", "nu", "1"),),
            defaults=(("learning_rate", "lr"), ("decay", "alpha"), ("eps", "eps"),
                      ("eps_in_sqrt", "eps_inside_sqrt"))),
    Mapping("RMSprop/default-eps_in_sqrt", "optax", "RMSprop", "naive", "optax.rmsprop",
            ("lr", "alpha", "eps"), "optax.rmsprop(learning_rate=lr, decay=alpha, eps=eps)",
            state=(("ms", "nu", "1"),),
            defaults=(("learning_rate", "lr"), ("decay", "alpha"), ("eps", "eps"),
                      ("eps_in_sqrt", "eps_inside_sqrt")),
            note="optax.rmsprop puts eps inside the square root by default (eps_in_sqrt=True); "
                 "Chainer's default is outside: pass eps_in_sqrt=eps_inside_sqrt."),
    Mapping("RMSpropGraves", "optax", "RMSpropGraves", "mapping", "optax.rmsprop",
            ("lr", "alpha", "momentum", "eps"),
            "optax.rmsprop(learning_rate=lr, decay=alpha, eps=eps, eps_in_sqrt=True, "
            "centered=True, momentum=momentum)",
            state=(("n", "nu", "1"), ("g", "mu", "1"), ("delta", "trace", "1")),
            defaults=(("learning_rate", "lr"), ("decay", "alpha"), ("eps", "eps"),
                      ("momentum", "momentum"))),
    Mapping("Adam", "optax", "Adam", "mapping", "optax.adamw", _ADAM, _OPTAX_ADAM,
            state=(("m", "mu", "1"), ("v", "nu", "1")), defaults=_OPTAX_ADAM_DEFAULTS,
            note=_OPTAX_ADAM_NOTE + " optax.adam has no amsgrad flag: use the AMSGrad mapping."),
    Mapping("Adam/plain-eps", "optax", "Adam", "naive", "optax.adam",
            ("alpha", "beta1", "beta2", "eps"),
            "optax.adam(learning_rate=alpha, b1=beta1, b2=beta2, eps=eps)",
            state=(("m", "mu", "1"), ("v", "nu", "1")), defaults=_OPTAX_ADAM_DEFAULTS[:4],
            note="eps added after the bias correction of v: the step differs wherever sqrt(v) "
                 "is not much larger than eps (optax issue #571)."),
    Mapping("AdamW", "optax", "AdamW", "mapping", "optax.adamw", _ADAM, _OPTAX_ADAM,
            state=(("m", "mu", "1"), ("v", "nu", "1")), defaults=_OPTAX_ADAM_DEFAULTS,
            note=_OPTAX_ADAM_NOTE),
    Mapping("AdamW/weight_decay=wd", "optax", "AdamW", "naive", "optax.adamw", _ADAM,
            "optax.inject_hyperparams(optax.adamw)(learning_rate=eta * alpha, b1=beta1, "
            "b2=beta2, eps=" + _OPTAX_EPS_T + ", weight_decay=weight_decay_rate)",
            state=(("m", "mu", "1"), ("v", "nu", "1")), defaults=_OPTAX_ADAM_DEFAULTS,
            note="optax multiplies weight_decay by the learning rate: passing Chainer's rate "
                 "decays alpha times less."),
    Mapping("AMSGrad", "optax", "AMSGrad", "mapping", "optax.amsgrad",
            ("alpha", "beta1", "beta2", "eps", "eta"),
            "optax.inject_hyperparams(optax.amsgrad, static_args=('bias_correction_nu',))("
            "learning_rate=lambda count: eta * alpha * jnp.sqrt(1 - beta2 ** (count + 1)), "
            "b1=beta1, b2=beta2, eps=eps, bias_correction_nu=False)",
            state=(("m", "mu", "1"), ("v", "nu", "1"), ("vhat", "nu_max", "1")),
            defaults=_OPTAX_ADAM_DEFAULTS[:4],
            note="Chainer takes the running maximum of the raw v and folds sqrt(1 - "
                 "beta2**t) into the step size; with bias_correction_nu=False optax keeps the "
                 "maximum of the raw v too, and the factor goes into the learning rate."),
    Mapping("AMSGrad/optax.amsgrad", "optax", "AMSGrad", "naive", "optax.amsgrad",
            ("alpha", "beta1", "beta2", "eps"),
            "optax.amsgrad(learning_rate=alpha, b1=beta1, b2=beta2, eps=eps)",
            state=(("m", "mu", "1"), ("v", "nu", "1"), ("vhat", "nu_max", "1")),
            defaults=_OPTAX_ADAM_DEFAULTS[:4],
            note="optax.amsgrad takes the maximum over the bias-corrected v, Chainer over the "
                 "raw v, and adds eps after the bias correction."),
    Mapping("WeightDecay", "optax", "WeightDecay", "mapping", "optax.add_decayed_weights",
            ("rate",), "optax.add_decayed_weights(rate)"),
    Mapping("Lasso", "optax", "Lasso", "mapping", "optax.stateless", ("rate",),
            "optax.stateless(lambda updates, params: jax.tree.map(\n"
            "    lambda g, p: g + rate * jnp.sign(p), updates, params))",
            note="optax has no L1 transformation."),
    Mapping("GradientClipping", "optax", "GradientClipping", "mapping",
            "optax.clip_by_global_norm", ("threshold",), "optax.clip_by_global_norm(threshold)"),
    Mapping("GradientHardClipping", "optax", "GradientHardClipping", "mapping",
            "optax.stateless", ("lower_bound", "upper_bound"),
            "optax.stateless(lambda updates, params: jax.tree.map(\n"
            "    lambda g: jnp.clip(g, lower_bound, upper_bound), updates))",
            note="optax.clip(max_delta) clips to a symmetric interval only."),
    Mapping("GradientNoise", "optax", "GradientNoise", "mapping", "optax.stateless",
            ("eta", "noise_func"),
            "optax.stateless(lambda updates, params: jax.tree.map(\n"
            "    lambda g, p: g + noise(p), updates, params))",
            note="optax.add_noise(eta, 0.55, seed) has Chainer's law with its own random "
                 "draws; to compare values, add your noise function's draws."),
    Mapping("GradientLARS", "optax", "GradientLARS", "mapping", "optax.stateless",
            ("threshold", "weight_decay", "eps"),
            "optax.stateless(lambda updates, params: jax.tree.map(lambda g, p: (g + weight_decay"
            " * p) * jnp.where(\n"
            "    jnp.linalg.norm(p) > threshold, jnp.linalg.norm(p) / (eps + jnp.linalg.norm(g)"
            " + weight_decay * jnp.linalg.norm(p)), 1.0), updates, params))",
            note="optax.lars is an optimizer, not a gradient transformation of Chainer's "
                 "kind."),
)

MAPPINGS = TORCH + OPTAX

#: What each library lacks that Chainer has, beyond one optimizer or hook (checked by the
#: cases the report names, or stated where no case can reach it).
LACKS = {
    "torch": (
        "loss scaling with Chainer's schedule: torch.amp.GradScaler starts at 2**16, doubles "
        "after 2,000 finite steps and has no clamp (Chainer: x0.5 on a non-finite step, x2 "
        "before the first one, then x2**(1/interval), clamped to [1, 65504]), and unscales "
        "before the hooks (the `fixed` profile's order): loss-scaling cases are not "
        "applicable, the adapter does not reproduce Chainer's schedule",
        "fp32 master weights (Chainer's use_fp32_update): the float16_master cases are not "
        "applicable",
        "a check that eps does not underflow the dtype (Chainer raises ValueError)",
        "a step counter beyond 2**24 (16,777,216): torch keeps `step` as a float32 tensor "
        "(the resumed cases reach 10**7, where it is still exact)",
    ),
    "optax": (
        "loss scaling (Chainer's dynamic schedule): the loss-scaling cases are not applicable",
        "fp32 master weights: the float16_master cases are not applicable",
        "a check that eps does not underflow the dtype (Chainer raises ValueError)",
        "a None gradient: a JAX gradient is always an array, and Chainer's semantics (a "
        "None gradient steps as zeros) is what optax computes on zeros",
        "float64 without jax_enable_x64: JAX computes float64 arrays in float32 by default "
        "(the adapter enables x64 for float64 parameters only)",
        "subnormal numbers: XLA on the CPU flushes float32 and float64 subnormals to zero "
        "(NumPy, so Chainer, keeps them): a port whose state holds subnormals differs on the "
        "subnormal gradient stream (the momentum and Adam families)",
    ),
}
#: Chainer optimizers that neither library has.
NO_COUNTERPART = {
    "AdaBound": "no AdaBound in torch.optim or optax (Luo et al.'s clipped Adam step)",
    "AMSBound": "no AMSBound in torch.optim or optax",
    "MSVAG": "no M-SVAG in torch.optim or optax",
    "SMORMS3": "no SMORMS3 in torch.optim or optax",
}


def mappings(library: str, kind: str | None = None) -> tuple:
    """The table's mappings for `library`, optionally of one `kind`."""
    if library not in LIBRARIES:
        raise ValueError(f"unknown library {library!r}; expected one of {LIBRARIES}")
    return tuple(m for m in MAPPINGS if m.library == library and kind in (None, m.kind))


def find(library: str, name: str) -> Mapping:
    """The mapping called `name` for `library`."""
    for mapping in mappings(library):
        if mapping.name == name:
            return mapping
    raise KeyError(f"no {library} mapping named {name!r}; known: "
                   f"{', '.join(m.name for m in mappings(library))}")


def default_selection(library: str) -> dict:
    """Chainer name -> the mapping to use, for every Chainer optimizer and hook that has one."""
    return {m.chainer: m for m in mappings(library, "mapping")}
