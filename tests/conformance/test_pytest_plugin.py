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
    selection = ("--conformance-impl=examples.my_adam", "-k", "matrix/Adam/float32/nohook/none",
                 "-q", "-rs")
    skipped = pytest_run(*selection, cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stdout
    assert "1 passed, 1 skipped" in skipped.stdout, skipped.stdout
    assert "not applicable: Adam takes no argument profile" in skipped.stdout
    # The summary says what ran and what did not.
    assert "ran 1 of 2 cases" in skipped.stdout and "Adam      1  float32 x chainer" in skipped.stdout
    assert "1 case: no argument profile (the cases of the 'fixed' profile): Adam" in skipped.stdout
    failed = pytest_run(*selection, "--conformance-require-all", cwd=tmp_path)
    assert failed.returncode == 1 and "1 failed, 1 passed" in failed.stdout, failed.stdout
    assert "NOT APPLICABLE: case matrix/Adam/float32/nohook/none/fixed" in failed.stdout


def test_a_session_in_which_no_case_ran_fails(tmp_path):
    proc = pytest_run("--conformance-impl=examples.my_adam", "-k",
                      "matrix/AdamW/float32/nohook/none", "-q", cwd=tmp_path)
    assert proc.returncode == 1 and "2 skipped" in proc.stdout, proc.stdout
    assert "FAIL: no case ran" in proc.stdout


def test_an_unusable_module_is_a_usage_error(tmp_path):
    proc = pytest_run("--conformance-impl=no_such_module_here", cwd=tmp_path)
    assert proc.returncode == 4 and "no_such_module_here" in proc.stdout + proc.stderr


def test_a_failed_node_id_passed_back_reruns_that_case(tmp_path):
    name = planted_copy(tmp_path)
    first = pytest_run("--conformance-impl=" + name, "-k", "matrix/Adam/float32", "-q", "-p",
                       "no:cacheprovider", cwd=tmp_path)
    node_ids = re.findall(r"^FAILED (\S+)", first.stdout, re.M)
    assert first.returncode == 1 and node_ids, first.stdout
    assert node_ids[0].startswith(f"conformance-{name}-cpu::matrix/Adam/float32/")
    # As pytest prints it, without --conformance-impl (the node id names the target).
    again = pytest_run(node_ids[0], "-q", "-p", "no:cacheprovider", cwd=tmp_path)
    assert again.returncode == 1, again.stdout + again.stderr
    assert re.findall(r"^FAILED (\S+)", again.stdout, re.M) == node_ids[:1]
    assert re.search(r"\b1 failed in\b", again.stdout), again.stdout
    # A real path beside it is collected as usual; -k still selects among the cases.
    (tmp_path / "test_own.py").write_text("def test_own():\n    pass\n")
    both = pytest_run("test_own.py", f"conformance-{name}-cpu", "-k", "own or " + node_ids[0].split("::")[1],
                      "-q", "-p", "no:cacheprovider", cwd=tmp_path)
    assert re.search(r"\b1 failed, 1 passed\b", both.stdout), both.stdout


def test_an_unusable_module_is_a_usage_error_under_xdist(tmp_path):
    proc = pytest_run("--conformance-impl=no_such_module_here", "-n", "2", cwd=tmp_path)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "--conformance-impl: --impl no_such_module_here: No module named" in proc.stderr


def test_the_implementations_exception_is_the_items_failure(tmp_path):
    from test_gate_for_users import RAISES
    name = planted_copy(tmp_path, "raising_adam", RAISES)
    proc = pytest_run("--conformance-impl=" + name, "-k", "matrix/Adam/float32/nohook/none/chainer",
                      "-q", "-p", "no:cacheprovider", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout
    assert "the implementation raised RuntimeError: moment buffers lost" in proc.stdout
    assert re.search(r'File ".*raising_adam\.py", line \d+, in _step', proc.stdout), proc.stdout


def test_conformance_optimizers_requires_their_cases(tmp_path):
    proc = pytest_run("--conformance-impl=examples.my_adam", "--conformance-optimizers=Adam",
                      "--conformance-level=smoke", "-q", "-p", "no:cacheprovider", cwd=tmp_path)
    expected = [c for c in generators.ci_suite("smoke") if c.optimizer == "Adam"]
    assert proc.returncode == 1, proc.stdout
    # my_adam has no hooks, loss scaling or master: every smoke case of Adam needs one.
    assert re.search(rf"\b{len(expected)} failed in\b", proc.stdout), proc.stdout
    assert "each a failure: --conformance-optimizers requires every selected case" in proc.stdout
