"""The command line: gate exit codes, the failure report and its reproduce command."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CASE = "matrix/Adam/float32/nohook/none/chainer"


def conformance(*args, env=None):
    environment = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    return subprocess.run([sys.executable, "-W", "ignore", "-m", "conformance", *args],
                          capture_output=True, text=True, cwd=ROOT, env=environment, timeout=300)


def test_gate_passes_the_reference_against_itself():
    proc = conformance("gate", "--impl", "reference", "--filter", "matrix/Adam/")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failed" in proc.stdout


def test_gate_reports_a_planted_bug_with_a_reproduce_command():
    env = {"CONFORMANCE_MUTANT": "adam-bias-correction-off-by-one"}
    proc = conformance("gate", "--impl", "conformance.mutants.planted", "--case", CASE, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "NON-CONFORMANCE in case " + CASE in proc.stdout
    assert "normalized" in proc.stdout and "bound" in proc.stdout
    reproduce = [line for line in proc.stdout.splitlines() if "reproduce:" in line]
    assert reproduce and f"--case {CASE}" in reproduce[0]


def test_gate_runs_fast_through_its_emulated_gpu_path():
    """--device gpu-emulated: fast's CUDA backend and device driver, executed on the host."""
    proc = conformance("gate", "--impl", "fast", "--device", "gpu-emulated", "--filter", "long/Adam")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failed" in proc.stdout


@pytest.mark.parametrize("args", [
    ("gate", "--impl", "reference", "--device", "gpu-emulated"),
    ("gate", "--impl", "no_such_module"),
    ("gate", "--impl", "reference", "--case", "no/such/case"),
    ("gate", "--level", "enormous"),
    ("gate", "--impl", "reference", "--filter", "zzz-matches-nothing"),
])
def test_usage_errors_exit_2(args):
    proc = conformance(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr


def test_case_repr_round_trips(tmp_path):
    from conformance import generators
    from conformance.runner import case_from_repr
    case = generators.ci_suite("smoke")[3]
    assert case_from_repr(repr(case)) == case
    with pytest.raises(Exception):
        case_from_repr("__import__('os')")


#: the arguments a subcommand cannot run without
REQUIRED = {"migrate": ["--to", "torch"]}


def test_help_shows_every_default_and_each_subcommands_exit_status(capsys):
    from conformance import cli
    for name in cli.EXIT_CODES:
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args([name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        defaults = vars(cli.build_parser().parse_args([name] + REQUIRED.get(name, [])))
        for dest, value in defaults.items():
            if dest != "command" and value not in (None, False) and [name, dest] != ["migrate", "to"]:
                assert f"(default: {value})" in text, (name, dest)
        for code, meaning in cli.EXIT_CODES[name]:
            assert f"{code} {' '.join(meaning.split())}" in text, (name, code)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["gate", "--help"])
    gate = " ".join(capsys.readouterr().out.split())
    assert "--optimizers NAMES only these optimizers" in gate and "(default: ci)" in gate


def test_the_docs_list_every_subcommands_exit_status():
    from conformance.cli import exit_codes_markdown
    with open(os.path.join(ROOT, "docs", "conformance.md")) as f:
        assert exit_codes_markdown() in f.read()
