"""Named pre/post hook registries shared by optimizers and update rules."""

import collections
import warnings

__all__ = ["Hookable"]

TIMINGS = ("pre", "post")


class Hookable:
    """Two ordered registries of named hooks, one run before and one after an update.

    ``invalid_timing_fallback`` reproduces Chainer's optimizer-level behaviour: a hook whose
    own ``timing`` attribute is not 'pre'/'post' is registered as 'pre' with a warning.
    Update rules use the other variant, where (as in Chainer) any hook ``timing`` attribute
    other than 'pre' registers the hook as 'post'.
    """

    def __init__(self, invalid_timing_fallback=False):
        self._hooks = {"pre": collections.OrderedDict(), "post": collections.OrderedDict()}
        self._invalid_timing_fallback = invalid_timing_fallback

    def add_hook(self, hook, name=None, timing="auto"):
        """Registers ``hook``; raises TypeError, ValueError or KeyError before changing anything."""
        if not callable(hook):
            raise TypeError("hook function must be callable, got {!r}".format(hook))
        if timing not in ("pre", "post", "auto"):
            raise ValueError("timing must be one of ('pre', 'post', 'auto'), got {!r}"
                             .format(timing))
        if timing == "auto":
            timing = getattr(hook, "timing", "pre")
            if timing not in TIMINGS and self._invalid_timing_fallback:
                warnings.warn("Hook timing attribute not in ('pre', 'post'), "
                              "defaulting timing to 'pre'.")
                timing = "pre"
        if timing != "pre":
            timing = "post"  # Chainer quirk: a rule hook's unknown timing attribute means 'post'
        if name is None:
            name = getattr(hook, "name", getattr(hook, "__name__", None))
            if name is None:
                raise ValueError("the name of the hook function is not specified")
        if name in self._hooks["pre"] or name in self._hooks["post"]:
            raise KeyError('hook "{}" already exists'.format(name))
        self._hooks[timing][name] = hook

    def remove_hook(self, name):
        """Removes the hook called ``name`` (KeyError when there is none)."""
        for hooks in self._hooks.values():
            if name in hooks:
                del hooks[name]
                return
        raise KeyError('hook "{}" does not exist'.format(name))

    def hooks(self, timing):
        """The hooks registered for ``timing`` ('pre' or 'post'), in registration order."""
        if timing not in TIMINGS:
            raise ValueError("timing must be either 'pre' or 'post', got {!r}".format(timing))
        return list(self._hooks[timing].values())
