"""Semantics profiles and the list of Chainer quirks the reference models.

``chainer`` (the default) reproduces Chainer 7.8.1, quirks included. ``fixed`` repairs the
quirks that silently damage training (marked ``fixed`` below); everything else is the same
in both profiles. Each entry names where it is implemented.
"""

CHAINER = "chainer"
FIXED = "fixed"
PROFILES = (CHAINER, FIXED)


def check_profile(profile):
    """Returns ``profile`` if it is 'chainer' or 'fixed'; raises ValueError otherwise."""
    if profile not in PROFILES:
        raise ValueError("profile must be 'chainer' or 'fixed', not {!r}".format(profile))
    return profile


#: (quirk, where it is implemented, what ``fixed`` does)
QUIRKS = (
    ("Optimizer hooks run on still-scaled gradients; WeightDecay multiplies its rate by the "
     "loss scale to compensate, the other hooks do not",
     "reference/optimizer.py GradientMethod._update_chainer; "
     "reference/optimizer_hooks/weight_decay.py",
     "fixed: hooks see gradients unscaled once, before the hooks; WeightDecay uses its rate"),
    ("With fp32 update, optimizer hooks act on the fp16 gradients (not the fp32 copy)",
     "reference/optimizer.py GradientMethod.hook_params",
     "fixed: hooks act on the fp32 master and an fp32 copy of the gradient"),
    ("GradientClipping: per-parameter g.dot(g) is a scalar of the gradient's dtype (an fp16 "
     "dot above 65504 is inf); Python's sum starts from the int 0 and NumPy 1.x makes "
     "0 + dot a float64, so the sum over parameters, the sqrt and rate = threshold / norm "
     "are float64; one parameter's fp16 dot above 65504 makes the norm inf, the rate 0, and "
     "every gradient is zeroed",
     "reference/optimizer_hooks/gradient_clipping.py squared_norm; "
     "reference/optimizer_hooks/_norms.py reduction_dtype",
     "fixed: each dot, the sum and the norm are float64"),
    ("GradientClipping with a zero norm: rate = threshold/0 (inf, >= 1: no-op) or 0/0 = NaN "
     "when threshold is 0, which turns every gradient into NaN",
     "reference/optimizer_hooks/gradient_clipping.py GradientClipping.__call__",
     "fixed: a zero norm leaves the gradients unchanged"),
    ("GradientLARS: numpy.linalg.norm of fp16 arrays is computed as an fp16 dot and an fp16 "
     "sqrt (overflows above 65504)",
     "reference/optimizer_hooks/gradient_lars.py",
     "fixed: the norms are float64"),
    ("The hooks' NumPy statements on the gradient round every operation to its dtype "
     "(NumPy 1.x value-based casting: a scalar meeting an array takes the array's dtype "
     "unless numpy.min_scalar_type needs wider, e.g. float32 for 1e5 with fp16): "
     "WeightDecay g += rate * p and Lasso g += rate * sign(p) round the product before the "
     "add; GradientLARS g += weight_decay * p likewise, then g *= rate converts the float64 "
     "rate to the gradient's dtype; GradientClipping grad *= rate likewise. Same code at "
     "optimizer and rule level (the fp32 master's gradient with a master at rule level)",
     "reference/optimizer_hooks/_numpy_ops.py; weight_decay.py, lasso.py, gradient_lars.py, "
     "gradient_clipping.py in reference/optimizer_hooks/", "same"),
    ("GradientNoise: noise_func receives the update rule as `opt`, so opt.t is the rule's t "
     "(before this step's increment)",
     "reference/optimizer_hooks/gradient_noise.py", "same"),
    ("optimizer.t advances on a skipped (non-finite) step; rule.t does not",
     "reference/optimizer.py GradientMethod.update", "same"),
    ("The rule divides the gradient by the loss scale in place, storing the quotient in the "
     "gradient's dtype; without a master the parameter's own grad is "
     "left unscaled after the step (optimizer 'post' hooks see it unscaled), with a master "
     "the fp16 grad stays scaled",
     "reference/update_rule.py divide_grad_by_loss_scale", "same (done once, before hooks)"),
    ("Loss scale update: x0.5 on a non-finite step, x2 before the first non-finite step ever, "
     "x2**(1/interval) after it, clamped to [1, 65504]; loss_scaling(scale=s) after dynamic "
     "scaling keeps the dynamic schedule",
     "reference/loss_scaling.py LossScaling", "same"),
    ("Adam checks eps against the intermediate dtype (float32 for fp16 params); RMSprop "
     "checks it against the gradient's dtype (fp32 copy with a master). The check is part "
     "of update_core: never raised on a step skipped by dynamic loss scaling, for a "
     "disabled rule or without a gradient; raised midway through the step, after opt.t, "
     "the rules before the rejected one and its own t, state and master have changed (a "
     "missing gradient has become zeros, so it is checked too)",
     "reference/optimizers/adam.py AdamRule.check_update_core; "
     "reference/optimizers/rmsprop.py RMSpropRule.check_update_core; "
     "reference/update_rule.py UpdateRule._update", "same"),
    ("MSVAG: beta_power starts at the beta seen when the rule is built; rho is clamped to "
     "0.9999; NaN factors become 0 (CPU path)",
     "reference/optimizers/msvag.py", "same"),
    ("AdaBound/AMSBound: initial_alpha is the alpha seen when the rule is built; bounds "
     "scale final_lr by alpha / initial_alpha",
     "reference/optimizers/adam.py AdamRule.bounds", "same"),
    ("Checkpoints drop the fp32 master, MSVAG's beta_power, AdaBound's initial_alpha and the "
     "loss-scaling state: a resumed run recreates the master from the fp16 values, restarts "
     "beta_power at beta, keeps the new optimizer's initial_alpha and restarts loss scaling "
     "as configured on the new optimizer",
     "reference/update_rule.py UpdateRule.serialize; reference/optimizer.py "
     "Optimizer.serialize",
     "fixed: keys <name>/fp32_param, <name>/beta_power, <name>/initial_alpha, "
     "loss_scaling/{scale,dynamic,multiplier,isnan_ever} (always written; a file without "
     "them keeps the optimizer's loss scaling)"),
    ("Loading into a rule whose state is None takes the state keys from init_state on a "
     "dummy float32 (1,) parameter and keeps the file's dtypes; a missing key leaves the "
     "state None for a disabled rule and raises KeyError for an enabled one",
     "reference/update_rule.py UpdateRule._deserialize_state", "same"),
    ("A rule hook whose own timing attribute is not 'pre' is registered as 'post'",
     "reference/hookable.py Hookable.add_hook", "same"),
)
