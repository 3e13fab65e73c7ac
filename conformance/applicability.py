"""Which cases an implementation can run: what a case needs beyond the required API.

Required of every `--impl` module: `Parameter` and `optimizers` (load_impl checks them).
Optional, each found by looking at the module and its classes, never by running them:

- each optimizer class (`optimizers.Adam`, ...);
- each constructor argument a case sets (a hyperparameter, or `profile=` for the `fixed`
  profile; a constructor taking `**kwargs` accepts every one);
- `use_fp32_update` on the optimizer class (the float16_master dtype mode);
- `loss_scaling` on the optimizer class (static and dynamic loss scaling);
- `optimizer_hooks` and each hook class in it;
- `serializers.save_npz` and `serializers.load_npz` (checkpoint cases, and the cases that
  start at large counters through a loaded checkpoint);
- distributed cases (ranks > 1): `distributed.create_communicator` and
  `distributed.create_multi_node_optimizer` (an attribute or a subpackage), taking
  `allreduce_grad_dtype` (a case with an exchange dtype) and `zero` (a ZeRO case). Under
  zero=True a hook attached to a single rule is refused by design (ZeRO keeps one shard of
  each rule per rank), so such a case is not applicable there.

A case that needs something missing is *not applicable*: it is not run, and the reasons are
reported (`--require-all` turns it into a failure).
"""
from __future__ import annotations

import inspect
import re
from collections import defaultdict

from .cases import Case


def missing(impl, case: Case) -> list:
    """What `case` needs that `impl` lacks, as sentences; empty when the case can run."""
    cls = getattr(getattr(impl, "optimizers", None), case.optimizer, None)
    if cls is None:
        return [f"the implementation has no optimizer {case.optimizer}"]
    reasons = [f"{case.optimizer} takes no argument {name}" + _PROFILE_NOTE.get(name, "")
               for name in _arguments(case) if not _accepts(cls, name)]
    if case.uses_master and not hasattr(cls, "use_fp32_update"):
        reasons.append(f"{case.optimizer} has no use_fp32_update (fp32 master weights)")
    if case.loss_scaling.mode != "none" and not hasattr(cls, "loss_scaling"):
        reasons.append(f"{case.optimizer} has no loss_scaling")
    hooks = getattr(impl, "optimizer_hooks", None)
    for kind in sorted({spec.kind for spec in case.hooks}):
        if not hasattr(hooks, kind):
            reasons.append(f"the implementation has no optimizer hook {kind}")
    if (case.checkpoints or case.resume is not None) and not _has_serializers(impl):
        what = "resumed from a checkpoint" if case.resume is not None else "checkpoints"
        reasons.append(f"the implementation has no serializers (save_npz, load_npz): {what}")
    if case.ranks > 1:
        reasons += _missing_distributed(impl, case)
    return reasons


def _missing_distributed(impl, case: Case) -> list:
    from .ranks import distributed_module
    module = distributed_module(impl)
    wrap = getattr(module, "create_multi_node_optimizer", None)
    if wrap is None or not hasattr(module, "create_communicator"):
        return ["the implementation has no distributed.create_multi_node_optimizer and "
                "create_communicator (distributed cases)"]
    reasons = []
    if case.exchange_dtype is not None and not _accepts(wrap, "allreduce_grad_dtype"):
        reasons.append("create_multi_node_optimizer takes no argument allreduce_grad_dtype")
    if case.zero:
        if not _accepts(wrap, "zero"):
            reasons.append("create_multi_node_optimizer takes no argument zero (ZeRO sharding)")
        if any(spec.param is not None for spec in case.hooks):
            reasons.append("zero=True refuses hooks attached to a single rule")
    return reasons


_PROFILE_NOTE = {"profile": " (the cases of the 'fixed' profile)"}


def _arguments(case: Case) -> list:
    """The constructor arguments the case sets, in a stable order."""
    names = [name for name, _ in case.hyperparams]
    names += [hp for _, hp, _ in case.overrides if hp not in names]
    if case.profile != "chainer":
        names.append("profile")
    return names


def _accepts(cls, name: str) -> bool:
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # no signature to read: assume it accepts the argument
        return True
    return any((p.name == name and p.kind is not p.POSITIONAL_ONLY) or p.kind is p.VAR_KEYWORD
               for p in parameters)


def _has_serializers(impl) -> bool:
    serializers = getattr(impl, "serializers", None)
    return hasattr(serializers, "save_npz") and hasattr(serializers, "load_npz")


#: Reasons that differ only in what lacks a part (an optimizer, a hook), and the sentence the
#: summary groups them under: (the reason's pattern, the group's sentence).
_GROUPS = (
    (re.compile(r"the implementation has no optimizer hook (?P<owner>\w+)"),
     "the implementation has no optimizer hook {owners}"),
    (re.compile(r"the implementation has no optimizer (?P<owner>\w+)"),
     "the implementation has no optimizer {owners}"),
    (re.compile(r"(?P<owner>\w+) takes no argument (?P<rest>.+)"), "no argument {rest}: {owners}"),
    (re.compile(r"(?P<owner>\w+) has no (?P<rest>.+)"), "no {rest}: {owners}"),
)


def grouped_reasons(reason_lists) -> list:
    """(number of cases, sentence) for each group of reasons, most cases first: the reasons
    that differ only in what lacks the part make one sentence naming every one of them (a
    case counts once per group). `reason_lists`: each not-applicable case's reasons."""
    cases, owners = defaultdict(int), defaultdict(list)
    for reasons in reason_lists:
        seen = set()
        for reason in reasons:
            key, owner = _group_of(reason)
            if owner is not None and owner not in owners[key]:
                owners[key].append(owner)
            if key not in seen:
                seen.add(key)
                cases[key] += 1
    lines = []
    for key, n in cases.items():
        template, rest = key
        if template is None:
            lines.append((n, rest))
        else:
            names = sorted(owners[key])
            lines.append((n, template.format(owners=", ".join(names), rest=rest)))
    return sorted(lines, key=lambda x: (-x[0], x[1]))


def _group_of(reason: str) -> tuple:
    for pattern, template in _GROUPS:
        match = pattern.fullmatch(reason)
        if match:
            return (template, match.groupdict().get("rest")), match.group("owner")
    return (None, reason), None
