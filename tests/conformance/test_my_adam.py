"""examples/my_adam.py, a user's own NumPy Adam, gated both ways (command line, pytest plugin);
a bug planted in a copy of it fails the gate, and the printed reproduce line reproduces it."""
import ast
import json
import os
import re

from conformance import generators
from conformance_cli import ROOT, conformance, planted_copy, pytest_run, reproduce, reproduce_lines

MY_ADAM = os.path.join(ROOT, "examples", "my_adam.py")


def test_my_adam_is_independent_of_the_project():
    tree = ast.parse(open(MY_ADAM).read())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert imported == {"math", "types", "numpy"}


def test_the_gate_passes_my_adam_on_the_adam_cases_it_can_run(tmp_path):
    summary = tmp_path / "my_adam.json"
    proc = conformance("gate", "--impl", "examples.my_adam", "--filter", "Adam",
                       "--json", str(summary))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(summary.read_text())
    ran = [r for r in result["results"] if r["not_applicable"] is None]
    assert result["failed"] == 0 and len(ran) >= 30
    assert {r["optimizer"] for r in ran} == {"Adam"}
    assert {r["dtype_mode"] for r in ran} == {"float64", "float32", "float16"}
    # Everything it does not offer is reported, grouped by reason, never run or failed.
    assert re.search(r"\n  \d+ cases: the implementation has no optimizer AdamW\n", proc.stdout)
    assert re.search(r"\n  \d+ cases: no use_fp32_update \(fp32 master weights\): Adam\n",
                     proc.stdout)
    assert re.search(r"\n  \d+ cases: the implementation has no serializers", proc.stdout)
    assert f"ran {len(ran)} of {result['cases']} cases" in proc.stdout
    assert re.search(r"\n  Adam +\d+  float64, float32, float16 x chainer\n", proc.stdout)


def test_the_pytest_plugin_passes_my_adam(tmp_path):
    proc = pytest_run("--conformance-impl=examples.my_adam", "-k", "Adam and float32",
                      "-q", "-rs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    passed, skipped = map(int, re.search(r"(\d+) passed, (\d+) skipped", proc.stdout).groups())
    assert passed >= 8 and "not applicable: the implementation has no optimizer AdamW" in proc.stdout
    # -k sees the case names, not the module's name (my_adam would match every case).
    selected = [c for c in generators.ci_suite("ci")
                if "adam" in c.name.lower() and "float32" in c.name.lower()]
    assert passed + skipped == len(selected)


def test_a_bug_planted_in_a_copy_fails_the_gate_and_the_reproduce_line_reproduces_it(tmp_path):
    name = planted_copy(tmp_path)
    outputs = []
    for jobs in ("1", "2"):
        proc = conformance("gate", "--impl", name, "--filter", "Adam/", "--jobs", jobs,
                           "--json", str(tmp_path / f"jobs{jobs}.json"), cwd=tmp_path)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1], "the verdict and summary must not depend on --jobs"
    assert (tmp_path / "jobs1.json").read_bytes() == (tmp_path / "jobs2.json").read_bytes()
    failing = re.search(r"NON-CONFORMANCE in case (\S+)", outputs[0]).group(1)
    [line] = reproduce_lines(outputs[0])
    again = reproduce(line, cwd=tmp_path)
    assert again.returncode == 1, again.stdout + again.stderr
    assert f"NON-CONFORMANCE in case {failing}" in again.stdout
    assert "1 case, 1 failed" in again.stdout


def test_the_worked_example_in_the_docs_is_what_the_gate_prints():
    with open(os.path.join(ROOT, "docs", "conformance.md")) as f:
        docs = f.read()
    command = "$ python -m conformance gate --impl examples.my_adam --optimizers Adam --quiet\n"
    shown = docs[docs.index(command) + len(command):docs.index("$ echo $?\n1\n")]
    proc = conformance("gate", "--impl", "examples.my_adam", "--optimizers", "Adam", "--quiet")
    assert proc.returncode == 1 and proc.stdout == shown
