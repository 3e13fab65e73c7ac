"""The conformance suite as pytest items (entry point `pytest11`: conformance).

    pytest --conformance-impl=fast [--conformance-level smoke|ci|full]
           [--conformance-device cpu|gpu|gpu-emulated] [--conformance-profile chainer|fixed]
           [--conformance-optimizers NAMES] [--conformance-require-all]

collects one item per case of the level, named by the case, under the node `conformance`
(id `conformance-<impl>-<device>`), beside whatever else pytest collects where it runs. The
options are the command line's (conformance.options, spelt --conformance-<name>). A failing
item shows the diagnosis and the reproduce line of `python -m conformance gate`; a case the
implementation cannot run is skipped with the reason (a failure with
--conformance-optimizers, for those optimizers' cases, and with --conformance-require-all).
The summary says what ran and groups what did not; a session in which no case ran exits 1.

A node id that pytest prints (`conformance-myopt-cpu::matrix/SGD/float32/nohook/none/chainer`)
runs that case again when passed back (`pytest 'conformance-myopt-cpu::matrix/...'`): the
plugin takes such arguments out of pytest's paths, takes the implementation and the device
from them, and collects only the cases they name. -k, -x, --lf, --junitxml and
pytest-xdist's -n work as for any test. The implementation is imported as `python -m
conformance` would import it (the current directory first on sys.path), when pytest is
configured: a module that cannot be imported is a usage error (exit 4), with or without -n.

Without --conformance-impl (or a conformance node id) the plugin adds nothing; at start-up it
imports only pytest, conformance.options and conformance.target (no NumPy, no implementation).
"""
from __future__ import annotations

import os
import re
import sys

import pytest

from . import options
from .target import Target, UsageError

#: A node id of this plugin's items: conformance-<impl>-<device>[::<case>].
NODE_ID = re.compile(r"conformance-(?P<impl>[A-Za-z_][\w.]*)-(?P<device>cpu|gpu|gpu-emulated)"
                     r"(?:::(?P<case>.+))?")
#: The user property holding each item's outcome (for the summary, and in JUnit XML).
STATUS = "conformance_status"


def pytest_addoption(parser) -> None:
    group = parser.getgroup("conformance", "optimizer conformance against the reference")
    options.add_pytest_options(group)


def pytest_configure(config) -> None:
    """Take conformance node ids out of pytest's paths, then import the implementation (a
    module that cannot be used is a usage error here, in the controller of an xdist run too)."""
    config.conformance_cases = _take_node_ids(config)
    if not config.getoption("conformance_impl"):
        return
    config.pluginmanager.register(SessionSummary(config), "conformance-summary")
    if os.getcwd() not in sys.path:  # import the module as `python -m conformance` would
        sys.path.insert(0, os.getcwd())
    try:
        _target(config).load()
    except UsageError as exc:
        raise pytest.UsageError(f"--conformance-impl: {exc}") from exc


def _take_node_ids(config):
    """The case names of the conformance node ids among pytest's arguments (None: no such
    argument; an empty set: a bare suite id, every case), removed from the arguments; the
    implementation and device they name become the plugin's."""
    found = [NODE_ID.fullmatch(arg) for arg in config.args]
    ours = [m for m in found if m]
    if not ours:
        return None
    targets = {(m["impl"], m["device"]) for m in ours}
    if len(targets) > 1:
        raise pytest.UsageError("conformance node ids of several implementations or devices: "
                                + ", ".join(f"conformance-{i}-{d}" for i, d in sorted(targets)))
    impl, device = targets.pop()
    given = config.getoption("conformance_impl")
    if given and given != impl:
        raise pytest.UsageError(f"--conformance-impl={given}, but the node ids name "
                                f"conformance-{impl}-{device}")
    config.option.conformance_impl = impl
    config.option.conformance_device = device
    config.args[:] = [arg for arg, m in zip(config.args, found) if not m]
    if any(m["case"] is None for m in ours):
        return set()
    return {m["case"] for m in ours}


def _target(config) -> Target:
    return Target(config.getoption("conformance_impl"), config.getoption("conformance_device"),
                  config.getoption("conformance_fp16_compute"), config.getoption("conformance_params"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items) -> None:
    """Append the suite's items before -k, --lf and the other selections look at them."""
    if not config.getoption("conformance_impl"):
        return
    target = _target(config)
    # The node's name is what -k sees besides the case name: "conformance" alone, so that
    # -k Adam does not select every case of a module named my_adam. Its id names the
    # implementation and the device, so --lf never mixes the failures of two targets.
    suite = Suite.from_parent(session, name="conformance",
                              nodeid=f"conformance-{target.impl}-{target.device}", target=target,
                              args=options.from_pytest(config), only=config.conformance_cases)
    items.extend(suite.collect())


class Suite(pytest.Collector):
    """The selected cases against one target; loads the target once per process."""

    def __init__(self, *, target: Target, args, only=None, **kwargs):
        super().__init__(**kwargs)
        self.target, self.args, self.only = target, args, only
        self.required = options.required_by(args) is not None
        self._loaded = None

    def load(self) -> tuple:
        if self._loaded is None:
            try:
                self._loaded = self.target.load()
            except UsageError as exc:
                raise pytest.UsageError(f"--conformance-impl: {exc}") from exc
        return self._loaded

    def collect(self) -> list:
        try:
            cases = options.select_cases(self.args)
        except UsageError as exc:
            raise pytest.UsageError(f"conformance: {exc}") from exc
        if self.only:
            names = {c.name for c in cases}
            unknown = sorted(self.only - names)
            if unknown:
                raise pytest.UsageError(f"conformance: no case named {unknown[0]!r} among the "
                                        f"selected cases of level {self.args.level!r}")
            cases = [c for c in cases if c.name in self.only]
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
        from .diagnosis import failure_text, headline, reproduce_command
        suite = self.parent
        result = suite.run(self.case)
        self.user_properties += [
            (STATUS, result.status), ("conformance_optimizer", self.case.optimizer),
            ("conformance_dtype_mode", self.case.dtype_mode),
            ("conformance_profile", self.case.profile)]
        if result.not_applicable is not None:
            self.user_properties.append(("conformance_not_applicable",
                                         "; ".join(result.not_applicable)))
        if result.failed(suite.required):
            raise CaseFailure(failure_text(result, reproduce_command(suite.args, self.case)))
        if result.not_applicable is not None:
            pytest.skip(headline(result))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CaseFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"conformance case {self.name}"


# -- the summary: what ran, what did not; a session that ran no case fails -----------------------
class SessionSummary:
    """Registered as a plugin while the suite runs: collects each case's outcome from its
    report (in the controller of an xdist run too: the user properties travel with the
    reports), prints what ran and what did not, and fails a session in which no case ran."""

    def __init__(self, config):
        self.config = config
        self.outcomes = []

    def pytest_runtest_logreport(self, report) -> None:
        properties = dict(report.user_properties)
        if report.when != "call" or STATUS not in properties:
            return
        reasons = properties.get("conformance_not_applicable")
        self.outcomes.append({"optimizer": properties["conformance_optimizer"],
                              "dtype_mode": properties["conformance_dtype_mode"],
                              "profile": properties["conformance_profile"],
                              "status": properties[STATUS],
                              "not_applicable": None if reasons is None else reasons.split("; ")})

    def nothing_ran(self) -> bool:
        from . import report
        return bool(self.outcomes) and report.nothing_ran(self.outcomes)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session) -> None:
        if self.nothing_ran() and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        from . import report
        if not self.outcomes:
            return
        required = options.required_by(options.from_pytest(self.config))
        required = None if required is None else "--conformance-" + required[2:]
        terminalreporter.section("conformance")
        lines = report.ran_lines(self.outcomes) + report.not_run_lines(
            self.outcomes, required, option_prefix="--conformance-")
        if self.nothing_ran():
            lines.append("FAIL: no case ran: every selected case needs what the implementation "
                         "lacks (exit status 1)")
        for line in lines:
            terminalreporter.write_line(line)
