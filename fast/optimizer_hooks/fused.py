"""What makes a hook one of ``fast``'s own: it plans itself into the fused pass.

The six hooks of Chainer that ``fast`` provides subclass ``FusedHook``: instead of being
called on the gradients, each appends elementwise ops (fast.hook_ops) that the update kernel
applies as it loads each gradient (``plan(ctx)``). The optimizer recognises them by type
(``is_fused``); any other callable added with ``opt.add_hook`` is called as Chainer calls a
hook, including a subclass of one of the six that overrides ``__call__`` or ``plan``.
"""


class FusedHook(object):
    """Base class of fast's optimizer hooks."""

    name = None
    timing = "pre"
    call_for_each_param = False
    #: planning changes nothing but ctx.ops (the optimizer may plan it before it settles
    #: dynamic loss scaling's non-finite check: fast.optimizer)
    plan_is_pure = True
    #: planning reads the gradients (ctx.sums_of_squares), a pass the non-finite check joins
    plan_reads_gradients = False

    def plan(self, ctx):
        """Append this hook's ops to ``ctx.ops`` (fast.hook_ops.PlanContext)."""
        raise NotImplementedError


def is_fused(hook, fused_classes):
    """Whether ``hook`` is planned into the fused pass: an instance of one of
    ``fused_classes`` (fast's six) or of a subclass that keeps its ``__call__`` and
    ``plan``."""
    cls = type(hook)
    base = next((c for c in cls.__mro__ if c in fused_classes), None)
    return base is not None and cls.__call__ is base.__call__ and cls.plan is base.plan
