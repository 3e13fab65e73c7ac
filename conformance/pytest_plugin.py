"""The conformance suite as pytest items (entry point `pytest11`: conformance).

    pytest --conformance-impl=fast [--conformance-level smoke|ci|full]
           [--conformance-device cpu|gpu|gpu-emulated] [--conformance-profile chainer|fixed]

collects one item per case of the level, named by the case, under the node `conformance`
(id `conformance-<impl>-<device>`), beside whatever else pytest collects where it runs. A failing
item shows the diagnosis and the reproduce line of `python -m conformance gate`; a case the
implementation cannot run is skipped with the reason (a failure with
--conformance-require-all). -k, -x, --lf, --junitxml and pytest-xdist's -n work as for any
test. The implementation is imported as `python -m conformance` would import it: the current
directory comes first on sys.path.

Without --conformance-impl the plugin adds nothing; at start-up it imports only pytest and
conformance.target (no NumPy, no implementation).
"""
from __future__ import annotations

import os
import sys

import pytest

from .target import DEVICES, FP16_COMPUTE, LEVEL_NAMES, Target, UsageError


def pytest_addoption(parser) -> None:
    group = parser.getgroup("conformance", "optimizer conformance against the reference")
    group.addoption("--conformance-impl", default=None, metavar="MODULE",
                    help="run the conformance suite against this implementation module")
    group.addoption("--conformance-level", default="ci", choices=LEVEL_NAMES,
                    help="suite level (default: ci)")
    group.addoption("--conformance-device", default="cpu", choices=DEVICES,
                    help="where the case's arrays live (default: cpu)")
    group.addoption("--conformance-profile", default=None, choices=("chainer", "fixed"),
                    help="only the cases of this semantics profile")
    group.addoption("--conformance-fp16-compute", default="float32", choices=FP16_COMPUTE,
                    help="the dtype the implementation computes in for float16 storage "
                         "without a master (default: float32)")
    group.addoption("--conformance-params", default="impl", choices=("impl", "chainer"),
                    help="how each case's parameters are made and given their gradients "
                         "(conformance.params; default: impl)")
    group.addoption("--conformance-require-all", action="store_true",
                    help="a case the implementation cannot run fails instead of skipping")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items) -> None:
    """Append the suite's items before -k, --lf and the other selections look at them."""
    impl = config.getoption("conformance_impl")
    if not impl:
        return
    if os.getcwd() not in sys.path:  # import the module as `python -m conformance` would
        sys.path.insert(0, os.getcwd())
    target = Target(impl, config.getoption("conformance_device"),
                    config.getoption("conformance_fp16_compute"), config.getoption("conformance_params"))
    # The node's name is what -k sees besides the case name: "conformance" alone, so that
    # -k Adam does not select every case of a module named my_adam. Its id names the
    # implementation and the device, so --lf never mixes the failures of two targets.
    suite = Suite.from_parent(session, name="conformance",
                              nodeid=f"conformance-{impl}-{target.device}", target=target,
                              level=config.getoption("conformance_level"),
                              profile=config.getoption("conformance_profile"),
                              require_all=config.getoption("conformance_require_all"))
    items.extend(suite.collect())


class Suite(pytest.Collector):
    """The cases of one level against one target; loads the target once per process."""

    def __init__(self, *, target: Target, level: str, profile, require_all: bool, **kwargs):
        super().__init__(**kwargs)
        self.target, self.level, self.require_all = target, level, require_all
        self.profile = profile
        self._loaded = None
        self.load()  # a module that cannot be used is a usage error, before any item runs

    def load(self) -> tuple:
        if self._loaded is None:
            try:
                self._loaded = self.target.load()
            except UsageError as exc:
                raise pytest.UsageError(f"--conformance-impl: {exc}") from exc
        return self._loaded

    def collect(self) -> list:
        from .generators import ci_suite
        cases = [c for c in ci_suite(self.level) if self.profile in (None, c.profile)]
        return [CaseItem.from_parent(self, name=case.name, case=case) for case in cases]

    def run(self, case):
        from .runner import run_case
        impl, xp = self.load()
        return run_case(impl, case, xp, self.target.fp16_compute, params=self.target.params)


class CaseFailure(Exception):
    """A case that did not conform; its text is the command line's diagnosis."""


class CaseItem(pytest.Item):
    """One conformance case."""

    def __init__(self, *, case, **kwargs):
        super().__init__(**kwargs)
        self.case = case

    def runtest(self) -> None:
        from .diagnosis import failure_text, reproduce_command
        suite = self.parent
        result = suite.run(self.case)
        if result.failed(suite.require_all):
            command = reproduce_command(suite.target, suite.level, self.case)
            raise CaseFailure(failure_text(result, command))
        if result.not_applicable is not None:
            pytest.skip(f"not applicable: {result.not_applicable}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CaseFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"conformance case {self.name}"
