"""`python -m conformance deep`: the examples split over jobs, what `--write` records, and the
first failure in one job stopping the others."""
import json
import os
import subprocess
import sys

from conformance.campaign import job_grids, shares

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def deep(*args, cwd, env=None):
    environment = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-W", "ignore", "-m", "conformance", "deep", *args],
                          capture_output=True, text=True, cwd=cwd, env=environment, timeout=600)


def test_the_examples_are_split_over_the_jobs_as_evenly_as_possible():
    assert shares(10, 3) == [4, 3, 3]
    assert shares(100_000, 2) == [50_000, 50_000]
    assert shares(2, 3) == [1, 1, 0]


def test_the_jobs_split_the_grid_of_modes_and_profiles():
    """Each cell of dtype modes x profiles gets whole jobs where the jobs allow it, so the
    search's steering cannot starve a mode or a profile."""
    modes, profiles = ("float64", "float32", "float16_master", "float16"), ("chainer", "fixed")
    cells = {(m[0], p[0]) for m, p in job_grids(modes, profiles, 8)}
    assert cells == {(m, p) for m in modes for p in profiles}
    assert [len(m) * len(p) for m, p in job_grids(modes, profiles, 16)] == [1] * 16
    assert [g for g in job_grids(modes, profiles, 4)] == [((m,), profiles) for m in modes]
    assert job_grids(modes, profiles, 3) == [(modes, profiles)] * 3


def test_eight_jobs_give_every_mode_and_profile_its_share(tmp_path):
    proc = deep("--profile", "dev", "--examples", "16", "--jobs", "8", "--write", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((tmp_path / "reports" / "deep-dev-fast.json").read_text())
    assert record["examples_by_mode"] == {m: 4 for m in record["modes"]}
    assert record["examples_by_profile"] == {"chainer": 8, "fixed": 8}


def test_jobs_refuse_a_derandomized_profile(tmp_path):
    proc = deep("--profile", "ci", "--jobs", "2", cwd=tmp_path)
    assert proc.returncode == 2
    assert "derandomized, so every job would draw the same examples" in proc.stderr


def test_two_jobs_run_the_examples_asked_for_and_write_what_they_ran(tmp_path):
    proc = deep("--profile", "dev", "--examples", "24", "--jobs", "2", "--write", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "24 examples" in proc.stdout and "zero alarms" in proc.stdout
    record = json.loads((tmp_path / "reports" / "deep-dev-fast.json").read_text())
    assert record["examples"] == 24 and record["jobs"] == 2 and record["failure"] is None
    for counts in ("examples_by_mode", "examples_by_profile", "examples_by_optimizer"):
        assert sum(record[counts].values()) == 24, counts
    assert set(record["examples_by_mode"]) <= set(record["modes"])
    assert record["hypothesis"]["derandomize"] is False
    assert record["hypothesis"]["seed"].startswith("unseeded")
    assert record["hypothesis"]["max_examples"] == 24
    assert record["seconds_per_example"] > 0 and record["cpu_seconds_per_example"] > 0
    page = (tmp_path / "reports" / "deep-dev-fast.md").read_text()
    assert "24 examples, **zero alarms**" in page


def test_the_first_failure_stops_the_other_jobs():
    """A job that fails sets the shared event; a job that sees it set ends at once (here in
    this process: an implementation whose optimizers cannot be built fails every example)."""
    import threading
    import types

    import numpy
    import fast
    from conformance.campaign import campaign
    from conformance.cases import OPTIMIZERS

    class Refused:
        def __init__(self, **hyperparameters):
            raise ValueError("this implementation builds no optimizer")

    stop = threading.Event()
    broken = types.SimpleNamespace(Parameter=fast.Parameter, optimizers=types.SimpleNamespace(
        **{name: Refused for name in OPTIMIZERS}))
    failed = campaign(broken, "dev", numpy, examples=30, stop=stop)
    assert failed.failure is not None and stop.is_set()
    assert "building the parameters and the optimizer" in failed.failure[1].describe()
    stopped = campaign(fast, "dev", numpy, examples=30, stop=stop)
    assert stopped.examples == 0 and stopped.failure is None


def test_merged_statistics_add_the_counts_and_keep_the_worst_and_the_first_failure():
    from conformance.campaign import CampaignStats
    first, second = CampaignStats(), CampaignStats()
    first.examples, first.worst, first.worst_case, first.cpu_seconds = 3, 0.5, "a", 1.0
    second.examples, second.worst, second.worst_case, second.cpu_seconds = 4, 0.75, "b", 2.0
    first.by_mode.update({"float16": 2, "float64": 1})
    second.by_mode.update({"float16": 4})
    second.failure = ("case", "divergence")
    first.merge(second)
    assert (first.examples, first.worst, first.worst_case, first.cpu_seconds) == (7, 0.75, "b", 3.0)
    assert first.by_mode == {"float16": 6, "float64": 1} and first.failure == ("case", "divergence")


def test_no_example_starts_after_the_deadline():
    import time

    import numpy
    import fast
    from conformance.campaign import campaign

    late = campaign(fast, "dev", numpy, examples=1000, deadline=time.time())
    assert late.examples == 0 and late.out_of_time
    on_time = campaign(fast, "dev", numpy, examples=3, deadline=time.time() + 3600)
    assert on_time.examples == 3 and not on_time.out_of_time


def test_the_profiles_ignore_the_profile_hypothesis_loads_under_ci():
    """Hypothesis loads a derandomized profile of its own wherever `CI` is set; `dev` and
    `deep` must stay unseeded there, `ci` derandomized everywhere."""
    code = ("from conformance.generators import settings_profile as s; "
            "print(s('dev').derandomize, s('deep').derandomize, s('ci').derandomize)")
    for env in ({"CI": "true"}, {}):
        environment = {k: v for k, v in os.environ.items() if k != "CI"}
        environment.update(env, PYTHONPATH=ROOT)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=environment, check=True).stdout.split()
        assert out == ["False", "False", "True"], (env, out)


def test_optimizers_narrow_the_draw_and_name_the_report(tmp_path):
    proc = deep("--profile", "dev", "--examples", "12", "--jobs", "2", "--optimizers", "smorms3,MSVAG",
                "--write", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((tmp_path / "reports" / "deep-dev-fast-SMORMS3-MSVAG.json").read_text())
    assert record["optimizers"] == ["SMORMS3", "MSVAG"]
    assert set(record["examples_by_optimizer"]) <= {"SMORMS3", "MSVAG"}
    assert sum(record["examples_by_optimizer"].values()) == 12
    assert not (tmp_path / "reports" / "deep-dev-fast.json").exists()
    assert "of the 2 asked for" in (tmp_path / "reports" / "deep-dev-fast-SMORMS3-MSVAG.md").read_text()


def test_an_unknown_optimizer_is_refused_by_name(tmp_path):
    proc = deep("--profile", "dev", "--optimizers", "Adamm", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown optimizer 'Adamm' (did you mean Adam?)" in proc.stderr
