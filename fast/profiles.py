"""The two semantics profiles, as the named decisions ``fast``'s code makes on them.

``chainer`` (the default) reproduces Chainer 7.8.1, quirks included; ``fixed`` repairs the
quirks that silently damage training, and nothing else (docs/fast.md, "Profiles"). Code asks
a profile the one question it needs answered, never compares its name.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile(object):
    """What a profile decides."""
    name: str
    #: optimizer-level hooks see gradients divided by their loss scale once, before the hooks
    #: (chainer: they see them still scaled, and the rule divides after)
    hooks_see_unscaled: bool
    #: an fp16 parameter with an fp32 master is seen by the hooks as its master, with an fp32
    #: gradient (chainer: as the fp16 parameter and its fp16 gradient)
    hooks_see_masters: bool
    #: WeightDecay multiplies its rate by the loss scale the gradient carries, to make up for
    #: the hooks seeing it scaled; and a rule's own hooks see that scale on the parameter
    weight_decay_scales_rate: bool
    #: GradientClipping's and GradientLARS's norms are summed and taken in float64 (chainer:
    #: each parameter's sum of squares is rounded to its gradient's dtype first)
    norms_in_float64: bool
    #: GradientClipping leaves the gradients alone when their norm is zero (chainer: 0/0 may
    #: turn them into NaN)
    zero_norm_leaves_gradients: bool
    #: checkpoints also keep the fp32 masters, the family's per-rule scalars and the
    #: loss-scaling state, which Chainer's drop
    checkpoints_keep_all: bool


CHAINER = Profile("chainer", hooks_see_unscaled=False, hooks_see_masters=False,
                  weight_decay_scales_rate=True, norms_in_float64=False,
                  zero_norm_leaves_gradients=False, checkpoints_keep_all=False)
FIXED = Profile("fixed", hooks_see_unscaled=True, hooks_see_masters=True,
                weight_decay_scales_rate=False, norms_in_float64=True,
                zero_norm_leaves_gradients=True, checkpoints_keep_all=True)
PROFILES = {p.name: p for p in (CHAINER, FIXED)}


def named(name):
    """The profile called ``name``; ValueError for another name."""
    if name not in PROFILES:
        raise ValueError("profile must be 'chainer' or 'fixed', got {!r}".format(name))
    return PROFILES[name]
