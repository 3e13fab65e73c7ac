"""Ordered, named pre/post hook registries (shared by rules and optimizers)."""
import collections
import warnings

from fast import hyperparameter

TIMINGS = ("pre", "post")


class Hookable(object):
    """Hooks by name, in registration order, split by timing."""

    def __init__(self, invalid_timing_fallback=False):
        self.hooks = {"pre": collections.OrderedDict(), "post": collections.OrderedDict()}
        self._invalid_timing_fallback = invalid_timing_fallback

    def add(self, hook, name, timing):
        if not callable(hook):
            raise TypeError("hook function must be callable")
        if timing not in ("pre", "post", "auto"):
            raise ValueError("timing must be one of ('pre', 'post', 'auto')")
        if timing == "auto":
            timing = getattr(hook, "timing", "pre")
            if timing not in TIMINGS and self._invalid_timing_fallback:
                warnings.warn("Hook timing attribute not in ('pre', 'post'), defaulting timing to 'pre'.")
                timing = "pre"
        if name is None:
            name = getattr(hook, "name", getattr(hook, "__name__", None))
            if name is None:
                raise ValueError("the name of the hook function is not specified")
        if name in self.hooks["pre"] or name in self.hooks["post"]:
            raise KeyError('hook "{}" already exists'.format(name))
        if timing not in TIMINGS:
            raise ValueError("timing must be either 'pre' or 'post', got {!r}".format(timing))
        self.hooks[timing][name] = hook
        hyperparameter.bump()  # the engine re-reads which rules have hooks

    def remove(self, name):
        for timing in TIMINGS:
            if name in self.hooks[timing]:
                del self.hooks[timing][name]
                hyperparameter.bump()
                return
        raise KeyError(name)

    def get(self, timing):
        if timing not in TIMINGS:
            raise ValueError("timing must be either 'pre' or 'post'")
        return list(self.hooks[timing].values())

    def __bool__(self):
        return bool(self.hooks["pre"] or self.hooks["post"])
