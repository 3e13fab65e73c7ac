"""How a case's parameters are made and handed their gradients: the `--params` modes.

`impl` (the default): the implementation's own `Parameter(array, name)`, set up from a
mapping, gradients assigned to `p.grad` already multiplied by the loss scale: the contract
of docs/conformance.md, which any implementation can meet.

`chainer`: what real Chainer code hands an optimizer. The parameters are
`chainer.Parameter`s registered on a `chainer.Link`, which is the setup target; every
other parameter (the 2nd, 4th, ...) is created without an array, as a lazily initialized
link's are, and gets its array only after the optimizer is set up; each step's gradients
arrive as Chainer's `backward` leaves them: the link's gradients are cleared, and
`loss.backward(loss_scale=opt.loss_scale)` runs through a function node whose backward hands
each parameter exactly the case's gradient, so Chainer stores it in `grad_var` and records
the loss scale on the parameter. A static loss scale reaches the implementation the way
Chainer code without `opt.loss_scaling()` gives it: the gradients are multiplied by it and
`backward(loss_scale=S)` records it, and the optimizer's own loss scaling is configured only
for dynamic cases (the loss scale the driver reports is the case's). An implementation that
reads a gradient where Chainer does not keep it, ignores the loss scale `backward`
recorded, or never updates a parameter that got its array after setup fails here and not in
`impl` mode.
"""
from __future__ import annotations

MODES = ("impl", "chainer")


class ImplParameters:
    """The `impl` mode."""

    name = "impl"

    def __init__(self, impl):
        self.impl = impl

    def constructor(self):
        """``make(array, name, lazy)``: a parameter holding ``array`` (the implementation's
        ``Parameter``; looking it up is a part of the contract)."""
        cls = self.impl.Parameter
        return lambda array, name, lazy=False: cls(array, name=name)

    def target(self, params: dict):
        return params

    def after_setup(self, params: dict) -> None:
        """Nothing happens to the parameters between setup and the first step."""

    @staticmethod
    def static_scale_by_backward(scale) -> bool:
        """False: a static loss scale is the optimizer's (``opt.loss_scaling(scale=...)``)."""
        return False

    @staticmethod
    def loss_scale(optimizer):
        """The loss scale the gradients are multiplied by (None: off)."""
        return optimizer.loss_scale

    @staticmethod
    def hand_gradients(params: dict, grads: dict, optimizer, contract) -> None:
        for name, grad in grads.items():
            with contract(f"/{name}: p.grad = an array or None"):
                params[name].grad = grad


class ChainerParameters:
    """The `chainer` mode (see the module doc)."""

    name = "chainer"

    def __init__(self, impl):
        import chainer
        self.chainer = chainer
        self.link, self.count = None, 0
        self.pending = {}  # name -> initial array of a parameter created without one
        self.static_scale = None

    def constructor(self):
        return self.make

    def make(self, array, name, lazy=False):
        """A parameter of the link being built, holding ``array``; with ``lazy`` every other
        one (the 2nd, 4th, ...) has no array until ``after_setup``."""
        chainer = self.chainer
        if self.link is None:
            self.link, self.count = chainer.Link(), 0
        if lazy and self.count % 2 == 1:
            param = chainer.Parameter(chainer.initializers.Constant(0, dtype=array.dtype), name=name)
            self.pending[name] = array
        else:
            param = chainer.Parameter(array, name=name)
        self.count += 1
        with self.link.init_scope():
            setattr(self.link, name, param)
        return param

    def target(self, params: dict):
        """The link the parameters were made on (the next ``make`` starts a new one)."""
        link, self.link = self.link, None
        return link

    def after_setup(self, params: dict) -> None:
        """Give the parameters created without arrays theirs (a lazy link's first forward)."""
        for name, array in self.pending.items():
            param = params[name]
            param.initialize(array.shape)
            param.array[...] = array
        self.pending = {}

    def static_scale_by_backward(self, scale) -> bool:
        """True: left to backward (see the module doc); the optimizer's loss scaling stays off."""
        self.static_scale = scale
        return True

    def loss_scale(self, optimizer):
        return self.static_scale if self.static_scale is not None else optimizer.loss_scale

    def hand_gradients(self, params: dict, grads: dict, optimizer, contract) -> None:
        for param in params.values():
            param.cleargrad()
        reached = [(params[name], grad) for name, grad in grads.items() if grad is not None]
        if not reached:
            return
        loss = _exact_gradients(self.chainer, [g for _, g in reached]).apply([p for p, _ in reached])[0]
        loss.backward(loss_scale=self.loss_scale(optimizer))


def _exact_gradients(chainer, grads):
    """A function node of the parameters whose backward returns ``grads`` as they are,
    whatever the upstream gradient (backward's loss scale included)."""

    class ExactGradients(chainer.FunctionNode):
        def forward(self, inputs):
            xp = chainer.backend.get_array_module(*inputs)
            return xp.zeros((), dtype=inputs[0].dtype),

        def backward(self, indexes, grad_outputs):
            return tuple(chainer.Variable(grads[i]) for i in indexes)

    return ExactGradients()


def parameter_mode(name: str, impl):
    """The parameter mode `name` for implementation module `impl`."""
    if name == "impl":
        return ImplParameters(impl)
    if name == "chainer":
        return ChainerParameters(impl)
    raise ValueError(f"unknown --params mode {name!r}; expected one of {MODES}")
