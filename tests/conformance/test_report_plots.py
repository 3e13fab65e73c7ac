"""The reports' plots a person can read (zeros and clipped values marked, a failing case drawn
as failing to its last step, whole-number steps), and the warning when they cannot be drawn."""
import math

import pytest

from conformance import report
from conformance.cli import main

RECORDS = [
    {"optimizer": "Adam", "dtype_mode": "float32", "status": "passed", "steps": 4,
     "step_errors": [0.0, 0.5, 1.0, 0.25]},
    {"optimizer": "Adam", "dtype_mode": "float16", "status": "failed", "steps": 6,
     "step_errors": [0.0, 0.0, "inf"]},
    {"optimizer": "Adam", "dtype_mode": "float16", "status": "passed", "steps": 6,
     "step_errors": [0.0, 0.1, 0.2, 0.0, 0.0, 0.1]},
]


def test_a_failing_case_counts_as_failing_up_to_its_last_step():
    series = report.plot_series(RECORDS)
    assert series["float16"] == {1: 0.0, 2: 0.1, 3: math.inf, 4: math.inf, 5: math.inf,
                                 6: math.inf}
    assert series["float32"] == {1: 0.0, 2: 0.5, 3: 1.0, 4: 0.25}
    assert report.first_failures(RECORDS) == {"float16": 3}


def test_zeros_and_clipped_values_are_marked_and_steps_are_whole_numbers():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    report.draw_optimizer(ax, "Adam", RECORDS)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "float16: fails from step 3" in labels and "float32" in labels
    assert any(label.startswith("0: equal bits") for label in labels)
    assert any("clipped" in label for label in labels)
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "0"
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 6]
    assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close(fig)


def test_report_warns_naming_the_plot_extra_without_matplotlib(tmp_path, monkeypatch, capsys):
    saved = tmp_path / "run.json"
    assert main(["run", "--impl", "examples.my_adam", "--filter", "matrix/Adam/float32/nohook/none",
                 "--profile", "chainer", "--jobs", "1", "--quiet", "--json", str(saved)]) == 0
    monkeypatch.setattr(report, "can_plot", lambda: False)
    capsys.readouterr()
    assert main(["report", "--results", str(saved), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "no plots written: matplotlib is not installed (the project's `plot` extra" in captured.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["conformance.json",
                                                                    "conformance.md"]
