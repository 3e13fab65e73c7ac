"""pytest configuration of the benchmark suite (`make bench`, or `pytest benchmarks`).

Options: `--device cpu|gpu` (default cpu), `--threads N` (default: the cores this process
may use; given to torch and to `fast` via OMP_NUM_THREADS; OMP_WAIT_POLICY defaults to
PASSIVE, see pytest_configure), `--bench-report DIR` (where
`<machine>.json` and `<machine>.md` go, default reports/benchmarks; `none` writes
nothing), `--bench-machine NAME` (the report's file name; default derived from the
hardware), `--bench-size full|quick` (the whole plan, or plan.quick's subset). The
report is written at the end of the session from pytest-benchmark's own results, so
`make bench` needs no extra options.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import plan
from .devices import cpu_core_count, make_device
from .machine import describe, load_average, machine_slug, memory_available_bytes

REPO_ROOT = Path(__file__).resolve().parent.parent
MEASUREMENTS = pytest.StashKey[list]()
DESELECTED = pytest.StashKey[int]()
LOAD_AT_START = pytest.StashKey[list]()
# Refuse a case whose arrays would take more than this share of the available memory.
MEMORY_SHARE = 0.6


def pytest_addoption(parser):
    group = parser.getgroup("optimizer benchmarks")
    group.addoption("--device", choices=("cpu", "gpu"), default="cpu",
                    help="device to benchmark on (default: cpu)")
    group.addoption("--threads", type=int, default=None,
                    help="CPU threads for every implementation (default: usable cores)")
    group.addoption("--bench-report", default=str(REPO_ROOT / "reports" / "benchmarks"),
                    help="directory for <machine>.json and .md; 'none' to write nothing")
    group.addoption("--bench-machine", default=None,
                    help="machine name used for the report files (default: from hardware)")
    group.addoption("--bench-size", choices=("full", "quick"), default="full",
                    help="the whole plan (default) or its quick subset (plan.quick)")


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark reads its options
def pytest_configure(config):
    if not config.getoption("benchmark_columns"):
        config.option.benchmark_columns = ["min", "median", "rounds"]
    threads = config.getoption("--threads") or cpu_core_count()
    if threads < 1:
        raise pytest.UsageError(f"--threads must be at least 1, got {threads}")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    # fast (the system libgomp) and torch (its own libgomp) each keep an OpenMP thread
    # pool; with the default wait policy, idle threads of one spin on the cores the other
    # needs. Measured on the 2-core machine: torch fused AdamW on ResNet-50 shapes 96 ms
    # per step right after a fast step, 22 ms with PASSIVE. Set before either loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    config.stash[MEASUREMENTS] = []
    config.stash[LOAD_AT_START] = load_average()
    config.stash[DESELECTED] = 0
    config.addinivalue_line(
        "markers", "plan(name): parametrize `case` with plan.CASES[name] for --device")
    config.addinivalue_line("markers", "at_session_end: run after every other test")


def pytest_generate_tests(metafunc):
    """Parametrize `case` from the test's `plan` marker and the chosen device."""
    marker = metafunc.definition.get_closest_marker("plan")
    if marker is not None and "case" in metafunc.fixturenames:
        cases = plan.CASES[marker.args[0]](metafunc.config.getoption("--device"))
        if metafunc.config.getoption("--bench-size") == "quick":
            cases = plan.quick(cases)
        metafunc.parametrize("case", cases, ids=[case.id for case in cases])


@pytest.fixture(scope="session")
def device(pytestconfig):
    threads = pytestconfig.getoption("--threads") or cpu_core_count()
    try:
        return make_device(pytestconfig.getoption("--device"), threads)
    except RuntimeError as error:
        raise pytest.UsageError(str(error)) from error


@pytest.fixture
def require_memory(device):
    """Skip the test when `n_bytes` would not fit in the memory the device has free."""

    def check(n_bytes: int, what: str) -> None:
        if device.is_gpu:
            free, _total = device.xp.cuda.runtime.memGetInfo()
        else:
            free = memory_available_bytes()
        if free is not None and n_bytes > MEMORY_SHARE * free:
            pytest.skip(f"{what} needs {n_bytes / 2**30:.1f} GiB; "
                        f"{free / 2**30:.1f} GiB free")

    return check


@pytest.fixture
def record_measurement(pytestconfig, request):
    """Store a non-timing measurement (memory, synchronisation evidence) for the report."""

    def record(**values) -> None:
        pytestconfig.stash[MEASUREMENTS].append({"test": request.node.nodeid, **values})

    return record


def pytest_collection_modifyitems(config, items):
    """Move tests marked `at_session_end` (the second copy-bandwidth sample) last."""
    items.sort(key=lambda item: item.get_closest_marker("at_session_end") is not None)


def pytest_deselected(items):
    if items:
        config = items[0].config
        config.stash[DESELECTED] = config.stash.get(DESELECTED, 0) + len(items)


def pytest_sessionfinish(session, exitstatus):
    """Write reports/benchmarks/<machine>.json and .md from this session's results."""
    config = session.config
    target = config.getoption("--bench-report")
    benchmark_session = getattr(config, "_benchmarksession", None)
    measured = benchmark_session is not None and (
        benchmark_session.benchmarks or config.stash[MEASUREMENTS])
    if target == "none" or not measured:
        return
    from .report import write_report

    device_kind = config.getoption("--device")
    threads = config.getoption("--threads") or cpu_core_count()
    machine = describe(make_device(device_kind, threads), REPO_ROOT)
    machine["load_average_start"] = config.stash[LOAD_AT_START]
    machine["tests_run"] = session.testscollected - config.stash[DESELECTED]
    machine["tests_deselected"] = config.stash[DESELECTED]
    name = config.getoption("--bench-machine") or machine_slug(machine)
    write_report(Path(target), name, config, benchmark_session, machine,
                 config.stash[MEASUREMENTS])
