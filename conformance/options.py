"""The options of the suite commands (run, gate, report) and of the pytest plugin, defined once.

Each `Option` is one setting of a run: the command line gets it as `--<name>`, the pytest
plugin (where `pytest` is set) as `--conformance-<name>`, and both hand the rest of the code
the same namespace (`args.<name>`), so an option added here reaches the command line, the
plugin, the case selection and (where `reproduce` is set) every reproduce line at once.

Importing this module is cheap (no NumPy, no hypothesis, no implementation): the pytest
plugin imports it at start-up.
"""
from __future__ import annotations

import argparse
import difflib
from dataclasses import dataclass

from .cases import OPTIMIZERS
from .params import MODES as PARAMETER_MODES
from .target import DEVICES, FP16_COMPUTE, LEVEL_NAMES, UsageError

_SAME = object()


@dataclass(frozen=True)
class Option:
    """One setting of a run.

    `default` may be a callable, evaluated when a parser is built; `pytest_default` is the
    plugin's default where it differs; `reproduce`: a value other than the default changes a
    case's verdict, so the reproduce line carries it.
    """
    name: str
    help: str
    default: object = None
    choices: tuple | None = None
    type: object = None
    flag: bool = False
    metavar: str | None = None
    pytest: bool = False
    pytest_default: object = _SAME
    reproduce: bool = False

    @property
    def cli_flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def pytest_flag(self) -> str:
        return "--conformance-" + self.name.replace("_", "-")

    @property
    def pytest_dest(self) -> str:
        return "conformance_" + self.name

    def default_value(self):
        return self.default() if callable(self.default) else self.default

    def argparse_kwargs(self, default) -> dict:
        if self.flag:
            return {"action": "store_true", "help": self.help}
        kwargs = {"default": default, "help": self.help}
        for key in ("choices", "type", "metavar"):
            if getattr(self, key) is not None:
                kwargs[key] = getattr(self, key)
        return kwargs


def optimizer_names(text: str) -> tuple:
    """`--optimizers`: comma-separated optimizer names, each one of Chainer's (in any case:
    `adamw` is AdamW), in Chainer's spelling."""
    by_lower = {name.lower(): name for name in OPTIMIZERS}
    names = []
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        if word.lower() not in by_lower:
            close = difflib.get_close_matches(word, OPTIMIZERS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise argparse.ArgumentTypeError(
                f"unknown optimizer {word!r}{hint}; the optimizers are {', '.join(OPTIMIZERS)}")
        names.append(by_lower[word.lower()])
    if not names:
        raise argparse.ArgumentTypeError("name at least one optimizer")
    return tuple(dict.fromkeys(names))


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _usable_cores() -> int:
    from .parallel import usable_cores
    return usable_cores()


IMPL = Option("impl", "importable module exposing the public API ('chainer' for real "
              "Chainer); the current directory comes first on the import path",
              default="fast", metavar="MODULE", pytest=True, pytest_default=None)
DEVICE = Option("device", "where the case's arrays live (gpu-emulated: the implementation's "
                "GPU code path run on the host)", default="cpu", choices=DEVICES, pytest=True)
LEVEL = Option("level", "suite level: smoke (every 17th matrix case), ci (4,454 cases), full "
               "(the ci cases with more steps and larger shapes)", default="ci",
               choices=LEVEL_NAMES, pytest=True)
FILTER = Option("filter", "only cases whose name contains this text", metavar="TEXT")
PROFILE = Option("profile", "only cases of this semantics profile (default: both)",
                 choices=("chainer", "fixed"), pytest=True)
OPTIMIZERS_OPTION = Option(
    "optimizers", "only these optimizers (comma-separated, e.g. SGD,MomentumSGD,Adam), and "
    "every one of their selected cases must run: a case the implementation cannot run is a "
    "failure, with its reason (default: every optimizer; cases that cannot run are reported "
    "as not applicable)", type=optimizer_names, metavar="NAMES", pytest=True, reproduce=True)
CASE = Option("case", "exactly one case of the suite, by name", metavar="NAME")
CASE_REPR = Option("case_repr", "one case given by its repr (as a reproduce line prints it)",
                   metavar="REPR")
FAIL_FAST = Option("fail_fast", "stop at the first failure, in case order", flag=True)
FP16_COMPUTE_OPTION = Option(
    "fp16_compute", "the dtype the implementation computes in for float16 storage without a "
    "master (float32: fast; float16: Chainer's NumPy float16 arithmetic)", default="float32",
    choices=FP16_COMPUTE, pytest=True, reproduce=True)
PARAMS = Option(
    "params", "how each case's parameters are made and handed their gradients: impl, the "
    "implementation's own Parameter; chainer, chainer.Parameters of a chainer.Link (every other "
    "one given its array after setup, as a lazy link's are) handed their gradients by "
    "backward(loss_scale=...) (conformance.params; needs Chainer 7.8.1)", default="impl",
    choices=PARAMETER_MODES, pytest=True, reproduce=True)
JOBS = Option("jobs", "worker processes, by default one per usable core (here: the default "
              "below); the results are the same for every N", default=_usable_cores,
              type=positive_int, metavar="N")
REQUIRE_ALL = Option("require_all", "every selected case must run: a case the implementation "
                     "cannot run (not applicable) is a failure", flag=True, pytest=True,
                     reproduce=True)
RANKS = Option("ranks", "the distributed slice on N ranks: run under `mpiexec -n N` (each rank "
               "runs every case; rank 0 prints and writes the reports); 1: the one-process "
               "suite", default=1, type=positive_int, metavar="N")
QUIET = Option("quiet", "no progress bar and no per-optimizer table: the counts, what ran, "
               "what did not and the first failure (the progress bar is drawn only when "
               "stderr is a terminal anyway)", flag=True)

#: The options of run, gate and report, in the order `--help` lists them.
SUITE = (IMPL, DEVICE, LEVEL, FILTER, PROFILE, OPTIMIZERS_OPTION, CASE, CASE_REPR, FAIL_FAST,
         FP16_COMPUTE_OPTION, PARAMS, JOBS, REQUIRE_ALL, RANKS, QUIET)


def add_arguments(parser, options=SUITE) -> None:
    """Add `options` to an argparse parser (as `--name`)."""
    for option in options:
        parser.add_argument(option.cli_flag, **option.argparse_kwargs(option.default_value()))


def add_pytest_options(group) -> None:
    """Add the options marked `pytest` to the plugin's option group (as `--conformance-name`)."""
    for option in SUITE:
        if option.pytest:
            default = option.default if option.pytest_default is _SAME else option.pytest_default
            kwargs = option.argparse_kwargs(default)
            if default not in (None, False):
                kwargs["help"] += f" (default: {default})"
            group.addoption(option.pytest_flag, dest=option.pytest_dest, **kwargs)


def from_pytest(config) -> argparse.Namespace:
    """The plugin's settings as the namespace the command line would give: its options'
    values, and the defaults of the options the plugin does not have (pytest's own -k, -x,
    -n, -q stand in for --filter, --fail-fast, --jobs, --quiet)."""
    values = {}
    for option in SUITE:
        if option.pytest:
            values[option.name] = config.getoption(option.pytest_dest)
        else:
            values[option.name] = None if callable(option.default) else option.default
    return argparse.Namespace(**values)


def required_by(args) -> str | None:
    """The option that makes every selected case required to run (a case that is not
    applicable then fails), or None."""
    if getattr(args, "require_all", False):
        return "--require-all"
    if getattr(args, "optimizers", None):
        return "--optimizers"
    return None


def reproduce_flags(args) -> list:
    """The `--name value` words of the options that change a verdict and differ from their
    default (the target's `--impl` and `--device` are always written by the caller)."""
    words = []
    for option in SUITE:
        if not option.reproduce:
            continue
        value = getattr(args, option.name, option.default)
        if value is None or value is False or value == option.default:
            continue
        if option.flag:
            words.append(option.cli_flag)
        else:
            words += [option.cli_flag, ",".join(value) if isinstance(value, tuple) else str(value)]
    return words


def select_cases(args) -> list:
    """The cases `args` selects: one case by --case-repr, else the level's cases (of --ranks
    ranks), narrowed by --case, --filter, --profile and --optimizers. UsageError when none
    matches."""
    from . import generators
    ranks = getattr(args, "ranks", 1) or 1
    if getattr(args, "case_repr", None):
        from .runner import case_from_repr
        case = case_from_repr(args.case_repr)
        if case.ranks != ranks:
            raise UsageError(f"--case-repr: the case runs on {case.ranks} rank(s): "
                             f"{'mpiexec -n %d ... ' % case.ranks if case.ranks > 1 else ''}"
                             f"--ranks {case.ranks}")
        return [case]
    cases = generators.ci_suite(args.level, ranks=ranks)
    if getattr(args, "case", None):
        cases = [c for c in cases if c.name == args.case]
        if not cases:
            raise UsageError(f"no case named {args.case!r} at level {args.level!r}")
    if getattr(args, "filter", None):
        cases = [c for c in cases if args.filter in c.name]
    if args.profile:
        cases = [c for c in cases if c.profile == args.profile]
    if args.optimizers:
        cases = [c for c in cases if c.optimizer in args.optimizers]
    if not cases:
        raise UsageError("no case matches the selection (--case, --filter, --profile, "
                         "--optimizers)")
    return cases
