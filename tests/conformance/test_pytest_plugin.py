"""The pytest plugin: one item per case, the command line's diagnosis, and pytest's own
selection, stopping, rerunning, JUnit and xdist options; nothing without --conformance-impl."""
import re
import xml.etree.ElementTree as ET

from conformance import generators
from conformance_cli import conformance, planted_copy, pytest_run, run


def test_importing_the_plugin_imports_nothing_heavy(tmp_path):
    proc = run(["-c", "import sys, conformance.pytest_plugin; "
                      "print(sorted(m for m in ('numpy', 'hypothesis', 'fast', 'reference') "
                      "if m in sys.modules))"], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_without_the_option_nothing_is_collected(tmp_path):
    (tmp_path / "test_own.py").write_text("def test_own():\n    pass\n")
    proc = pytest_run("--collect-only", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 test collected" in proc.stdout and "conformance-" not in proc.stdout
    assert "--conformance-impl" in pytest_run("--help", cwd=tmp_path).stdout


def test_one_item_per_case_named_by_the_case_in_parallel_with_junit(tmp_path):
    """From an empty directory, with pytest-xdist: every selected case, by name."""
    proc = pytest_run("--conformance-impl=fast", "--conformance-level=smoke", "-k", "SGD",
                      "-n", "2", "--junitxml=out.xml", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [case.get("name") for case in ET.parse(tmp_path / "out.xml").iter("testcase")]
    expected = [c.name for c in generators.ci_suite("smoke") if "sgd" in c.name.lower()]
    assert sorted(names) == sorted(expected) and expected


def test_the_profile_option_selects_cases(tmp_path):
    proc = pytest_run("--conformance-impl=fast", "--conformance-level=smoke",
                      "--conformance-profile=fixed", "--collect-only", "-q", cwd=tmp_path)
    items = [line for line in proc.stdout.splitlines() if "::" in line]
    expected = [c for c in generators.ci_suite("smoke") if c.profile == "fixed"]
    assert len(items) == len(expected) and all(line.endswith("/fixed") for line in items)


def test_a_failing_item_shows_the_command_lines_diagnosis_and_x_and_lf_work(tmp_path):
    name = planted_copy(tmp_path)
    selection = ("--conformance-impl=" + name, "-k", "matrix/Adam/float")
    first = pytest_run(*selection, "-x", "-q", cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert re.search(r"\b1 failed\b", first.stdout) and "stopping after 1 failures" in first.stdout
    case = re.search(r"NON-CONFORMANCE in case (\S+)", first.stdout).group(1)
    gate = conformance("gate", "--impl", name, "--case", case, cwd=tmp_path)
    diagnosis = gate.stdout[gate.stdout.index("NON-CONFORMANCE"):]
    assert diagnosis.strip() in first.stdout, "the item must show the gate's diagnosis"
    again = pytest_run(*selection, "--lf", "-q", cwd=tmp_path)
    assert re.search(r"\b1 failed\b", again.stdout) and " passed" not in again.stdout, again.stdout


def test_cases_the_implementation_cannot_run_skip_or_fail_with_require_all(tmp_path):
    selection = ("--conformance-impl=examples.my_adam", "-k", "matrix/AdamW/float32/nohook/none",
                 "-q", "-rs")
    skipped = pytest_run(*selection, cwd=tmp_path)
    assert skipped.returncode == 0 and "2 skipped" in skipped.stdout, skipped.stdout
    assert "not applicable: the implementation has no optimizer AdamW" in skipped.stdout
    failed = pytest_run(*selection, "--conformance-require-all", cwd=tmp_path)
    assert failed.returncode == 1 and "2 failed" in failed.stdout, failed.stdout
    assert "NOT APPLICABLE: case matrix/AdamW/float32/nohook/none/chainer" in failed.stdout


def test_an_unusable_module_is_a_usage_error(tmp_path):
    proc = pytest_run("--conformance-impl=no_such_module_here", cwd=tmp_path)
    assert proc.returncode == 4 and "no_such_module_here" in proc.stdout + proc.stderr
