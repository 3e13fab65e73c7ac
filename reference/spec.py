"""The specification as a document (docs/spec.md), generated from the reference.

    python -m reference.spec            # print it
    python -m reference.spec --write    # write docs/spec.md
    python -m reference.spec --check    # exit 1 when docs/spec.md differs from it

The document is assembled from what the reference itself says: the constructors' signatures
and defaults, the docstrings of the optimizers, their update rules (each ``x <- ...`` line
one store), the hooks, loss scaling and the control flow of an update, and the table of
Chainer quirks (:data:`reference.profiles.QUIRKS`). `store_targets` reads the stores an
update rule's code makes, so a test can hold every rule's ``<-`` lines to its code.
"""

import ast
import inspect
import os
import re
import sys
import textwrap

import reference
from reference import loss_scaling, optimizer, optimizer_hooks, optimizers, profiles, update_rule

OPTIMIZERS = ("SGD", "MomentumSGD", "CorrectedMomentumSGD", "NesterovAG", "AdaGrad",
              "AdaDelta", "RMSprop", "RMSpropGraves", "Adam", "AdamW", "AMSGrad", "AdaBound",
              "AMSBound", "MSVAG", "SMORMS3")
HOOKS = ("WeightDecay", "Lasso", "GradientClipping", "GradientHardClipping", "GradientNoise",
         "GradientLARS")
#: The committed document, relative to the repository root.
PATH = os.path.join("docs", "spec.md")

_HEADER = """\
# The specification: Chainer 7.8.1's optimizers, hooks and loss scaling

Generated from `reference` by `python -m reference.spec --write`: its constructors'
signatures, its docstrings and its table of quirks. Do not edit by hand:
`tests/reference/test_spec_doc.py` keeps this file equal to what the reference generates,
and every update rule's `<-` lines equal to the stores its code makes.

## How to read the equations

- `p` is the parameter, `g` its gradient as the rule receives it (after the optimizer's
  hooks and after the division by the loss scale), hyperparameters go by Chainer's names,
  and `t` is the rule's step count, already incremented for this step.
- `x <- expression` is a **store**: the expression is evaluated in the compute dtype and
  rounded once to the storage dtype of `x` (the parameter's, or the state's). `x = expression`
  is an intermediate value, kept in the compute dtype and never rounded to storage.
- **The store rule.** Chainer writes every update as in-place NumPy statements on arrays
  (`v *= momentum`, `v -= lr * grad`, `param.data += v`), and each statement rounds its
  result to the array's dtype once. Each `<-` line below is one such statement, so an
  implementation must round at exactly these points: computing two lines as one expression
  (one rounding instead of two), or one line in two, changes float16 results. The
  conformance gate holds every stored value within the reference's error bound, which after
  a store is the set of storage values the exact result's interval can round to; where that
  set is a single value (a bound of 0) it demands equal bits, and one float16 ulp off there
  is a failure.

## Dtype modes

| mode | parameter and gradient | state | fp32 master | arithmetic (compute dtype) |
| --- | --- | --- | --- | --- |
| `float64` | float64 | float64 | none | float64 |
| `float32` | float32 | float32 | none | float32 |
| `float16_master` (`opt.use_fp32_update()`) | float16 | float32 | float32 | float32: the rule updates the master with an fp32 copy of the gradient, then the float16 parameter is written from the master (one rounding) |
| `float16` | float16 | float16 | none | float32, as `fast` computes and the gate assumes by default (Chainer's own NumPy code computes most rules in float16 there: `--fp16-compute float16` declares that) |

A state array is stored in the dtype of the array the rule works on: the master's (float32)
when there is one, else the parameter's.
"""


def render() -> str:
    """The whole document."""
    parts = [_HEADER]
    parts += ["## The order of one update", "",
              _docstring(optimizer.GradientMethod), "", _docstring(update_rule.UpdateRule), "",
              "### The division by the loss scale", "",
              _docstring(update_rule.divide_grad_by_loss_scale), ""]
    parts += ["## Loss scaling", "",
              f"`opt.loss_scaling(interval=1000, scale=None)`: "
              f"{_docstring(optimizer.Optimizer.loss_scaling)}", "",
              _docstring(loss_scaling.LossScaling), "",
              _docstring(loss_scaling.LossScaling.configure), "",
              f"`opt.check_nan_in_grads()`: {_docstring(optimizer.GradientMethod.check_nan_in_grads)}",
              ""]
    parts += ["## The 15 optimizers", ""]
    for name in OPTIMIZERS:
        parts += _optimizer_section(name)
    parts += ["## The 6 hooks", "", _docstring(optimizer_hooks), ""]
    for name in HOOKS:
        parts += _hook_section(name)
    parts += ["## Profiles and the Chainer quirks", "", _docstring(profiles), "",
              "| quirk (`chainer` profile) | where | `fixed` profile |", "| --- | --- | --- |"]
    parts += [f"| {quirk} | `{where}` | {fixed} |" for quirk, where, fixed in profiles.QUIRKS]
    return "\n".join(parts).rstrip("\n") + "\n"


def rule_class(name: str):
    """The update rule class of optimizer `name` (what its create_update_rule builds)."""
    return type(getattr(optimizers, name)().create_update_rule())


def _optimizer_section(name: str) -> list:
    cls = getattr(optimizers, name)
    rule = rule_class(name)
    lines = [f"### {name}", "", f"`{name}{_signature(cls)}`", "", _docstring(cls), ""]
    owner = next(n for n in OPTIMIZERS if rule_class(n) is rule)
    if owner != name:
        lines += [f"Its update rule is {owner}'s (`{rule.__name__}`), with the switches above.", ""]
        return lines
    lines += [f"Update rule (`{rule.__name__}`): {_docstring(rule)}", ""]
    return lines


def _hook_section(name: str) -> list:
    cls = getattr(optimizer_hooks, name)
    each = ("`hook(rule, param)` for each parameter" if cls.call_for_each_param
            else "`hook(opt)` once per update")
    return [f"### {name}", "", f"`{name}{_signature(cls)}`: timing `{cls.timing}`, {each}.", "",
            _docstring(cls), ""]


class _Name:
    """A default shown by its name (a function's repr holds its address)."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


def _signature(cls) -> str:
    """The constructor's signature without the reference-only keyword-only arguments."""
    parameters = [p.replace(default=_Name(p.default.__name__)) if inspect.isfunction(p.default) else p
                  for p in inspect.signature(cls).parameters.values()
                  if p.kind is not p.KEYWORD_ONLY]
    return str(inspect.Signature(parameters))


_ROLE = re.compile(r":(?:meth|class|mod|func|attr|data):`~?([^`]+)`")


def _docstring(obj) -> str:
    """The object's docstring as Markdown: a paragraph ending in `::` is followed by a code
    block (the next paragraph), Sphinx roles become code."""
    text = _ROLE.sub(r"``\1``", inspect.getdoc(obj) or "")
    paragraphs = text.split("\n\n")
    out, code_next = [], False
    for paragraph in paragraphs:
        if code_next:
            out.append("```\n" + textwrap.dedent(paragraph) + "\n```")
            code_next = False
            continue
        if paragraph.rstrip().endswith("::"):
            paragraph = paragraph.rstrip()[:-1]
            code_next = True
        out.append(paragraph)
    return "\n\n".join(out)


# -- the stores an update rule makes ------------------------------------------------------------
_STORE_LINE = re.compile(r"^\s*(\w+)\s*<-", re.M)


def documented_stores(rule) -> list:
    """The targets of the rule docstring's `<-` lines, in order (`p` for the parameter)."""
    return _STORE_LINE.findall(inspect.getdoc(rule) or "")


def store_targets(rule) -> list:
    """The stores `rule.update_core`'s code makes, in source order: the state name of each
    ``self.store_state(name, ...)`` and `p` for each ``param.store(...)``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(rule.update_core)))
    calls = sorted((node for node in ast.walk(tree) if isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)),
                   key=lambda node: (node.lineno, node.col_offset))
    targets = []
    for call in calls:
        if call.func.attr == "store_state" and call.args and isinstance(call.args[0], ast.Constant):
            targets.append(call.args[0].value)
        elif call.func.attr == "store" and getattr(call.func.value, "id", None) == "param":
            targets.append("p")
    return targets


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = os.path.dirname(os.path.dirname(os.path.abspath(reference.__file__)))
    path = os.path.join(root, PATH)
    text = render()
    if "--write" in args:
        with open(path, "w") as f:
            f.write(text)
        print("wrote", path)
        return 0
    if "--check" in args:
        with open(path) as f:
            same = f.read() == text
        print(f"{path} is {'up to date' if same else 'out of date: python -m reference.spec --write'}")
        return 0 if same else 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
