"""The report's arithmetic on synthetic results: throughput, limits, speed-ups, targets."""

import pytest

from .derive import Limits, compare, copy_bandwidth_gbps, mix_limits_gbps, step_figures
from .targets import evaluate


def _step(impl, seconds, *, variant="", loss_scaling=False, param_set="resnet50",
          steps_per_round=1, peer_check=""):
    return {"extra_info": {"kind": "step", "impl": impl, "variant": variant,
                           "optimizer": "AdamW", "mode": "fp32", "param_set": param_set,
                           "loss_scaling": loss_scaling, "n_params": 10**6, "n_arrays": 3,
                           "bytes_per_param": 28, "steps_per_round": steps_per_round,
                           "peer_check": peer_check},
            "stats": {"min": seconds * steps_per_round, "median": 2 * seconds * steps_per_round,
                      "rounds": 5}}


COPY = {"extra_info": {"kind": "copy", "variant": "numpy", "bytes_moved": 56 * 10**6},
        "stats": {"min": 2e-3, "median": 3e-3, "rounds": 5}}  # 28 GB/s
# AdamW fp32 on 1M parameters: 28 MB in 1 ms at best (the end sample), 28 GB/s.
LIMIT = [{"extra_info": {"kind": "limit", "mode": "fp32", "n_state": 2, "n_params": 10**6,
                         "bytes_moved": 28 * 10**6},
          "stats": {"min": seconds, "median": seconds, "rounds": 5}} for seconds in (2e-3, 1e-3)]
LIMITS = Limits(mix_limits_gbps(LIMIT), None)


def test_throughput_and_limit_fraction():
    assert copy_bandwidth_gbps([COPY]) == {"numpy": pytest.approx(28.0)}
    assert LIMITS.gbps("AdamW", "fp32", 10**6) == pytest.approx(28.0)  # the best sample
    assert LIMITS.gbps("AdamW", "fp16", 10**6) is None  # another mix: not measured
    (fast,) = step_figures([_step("fast", 2e-3, steps_per_round=4)], LIMITS)
    assert fast.step_s == pytest.approx(2e-3)
    assert fast.params_per_s == pytest.approx(5e8)
    assert fast.gb_per_s == pytest.approx(14.0)
    assert fast.limit_fraction == pytest.approx(0.5) and not fast.over_limit


def test_a_step_above_its_limit_is_flagged():
    (fast,) = step_figures([_step("fast", 0.5e-3)], LIMITS)
    assert fast.over_limit
    (outcome,) = [o for o in evaluate("cpu", compare([fast]), [fast], [], LIMITS)
                  if o.target.metric == "max_limit_fraction"]
    assert outcome.measured == pytest.approx(2.0) and outcome.status == "MISSED"


def test_the_limit_sampled_in_the_steps_rounds_counts():
    bench = _step("fast", 0.5e-3)
    bench["extra_info"]["limit_gbps_in_rounds"] = 70.0  # the session samples saw 28
    (fast,) = step_figures([bench], LIMITS)
    assert fast.limit_gbps == pytest.approx(70.0) and fast.limit_fraction == pytest.approx(0.8)


def test_the_gpu_falls_back_to_the_copy_bandwidth():
    (fast,) = step_figures([_step("fast", 2e-3)], Limits({}, 28.0))
    assert fast.limit_gbps == pytest.approx(28.0) and fast.limit_fraction == pytest.approx(0.5)


def test_speedups_and_loss_scaling_overhead():
    benches = [_step("fast", 2e-3), _step("torch", 3e-3, variant="fused", peer_check="ok"),
               _step("per-array", 20e-3), _step("fast", 2.2e-3, loss_scaling=True),
               _step("torch", 1e-3, variant="fused", param_set="flat-16M")]
    (comparison,) = compare(step_figures(benches, LIMITS))
    assert comparison.speedup == {"torch-fused": pytest.approx(1.5),
                                  "per-array": pytest.approx(10.0)}
    assert comparison.loss_scaling_overhead == pytest.approx(0.1)


def test_a_peer_that_failed_its_check_is_no_peer():
    benches = [_step("fast", 2e-3), _step("torch", 3e-3, variant="fused",
                                          peer_check="outside bound")]
    (comparison,) = compare(step_figures(benches, LIMITS))
    assert comparison.speedup == {}


def test_targets_met_missed_retired_and_not_measured():
    figures = step_figures([_step("fast", 2e-3), _step("torch", 1.8e-3, variant="fused"),
                            _step("per-array", 30e-3)], LIMITS)
    outcomes = {o.target.text: o for o in evaluate("cpu", compare(figures), figures, [], LIMITS)}
    resnet_torch = outcomes["AdamW fp32, ResNet-50 shapes: fast >= 1.0x torch fused AdamW"]
    assert resnet_torch.measured == pytest.approx(0.9) and resnet_torch.status == "MISSED"
    # At 28 GB/s a 28 B/param step on 1M parameters takes 1 ms: 1.8x torch at most.
    assert resnet_torch.bandwidth_bound == pytest.approx(1.8)
    per_array = outcomes["AdamW fp32, ResNet-50 shapes: fast >= 10x the per-array NumPy baseline"]
    assert per_array.measured == pytest.approx(15.0)
    assert per_array.bandwidth_bound == pytest.approx(30.0)
    assert per_array.status.startswith("retired")
    flat = outcomes["AdamW fp32, flat 16M: fast >= 1.0x torch fused AdamW"]
    assert flat.measured is None and flat.status == "not measured"
    assert outcomes["no step, of fast or of a peer, above 100% of its limit"].status == "met"


def test_interleaved_measurement_takes_precedence():
    figures = step_figures([_step("fast", 2e-3), _step("torch", 1.8e-3, variant="fused")],
                           LIMITS)
    interleaved = [{"kind": "interleaved", "optimizer": "AdamW", "mode": "fp32",
                    "param_set": "resnet50", "n_params": 10**6, "bytes_per_param": 28,
                    "best_s": {"fast": 1.25e-3, "torch-fused": 2e-3},
                    "speedup": {"torch-fused": 2.0}}]
    outcomes = {o.target.text: o
                for o in evaluate("cpu", compare(figures), figures, interleaved, LIMITS)}
    target = outcomes["AdamW fp32, ResNet-50 shapes: fast >= 1.0x torch fused AdamW"]
    assert target.measured == pytest.approx(2.0) and target.status == "met"
    # the interleaved steps count against the limit too: torch's 2 ms is half of it
    assert outcomes["no step, of fast or of a peer, above 100% of its limit"].measured == \
        pytest.approx(0.8)


def test_the_fp16_share_of_the_limit_has_the_f16c_floor_beside_it():
    from .report import _bound, _interleaved_lines
    # AdamW fp16 on 1M parameters moves 14 B/param: 14 MB; the limit pass took 0.5 ms in the
    # rounds, the F16C floor 0.625 ms (80% of the limit), fast 1 ms (50%)
    interleaved = [{"kind": "interleaved", "optimizer": "AdamW", "mode": "fp16",
                    "param_set": "flat-16M", "n_params": 10**6, "bytes_per_param": 14,
                    "rounds": 40, "best_s": {"fast": 1e-3, "torch-fused": 1.1e-3},
                    "median_s": {"fast": 1e-3, "torch-fused": 1.1e-3},
                    "speedup": {"torch-fused": 1.1}, "limit_s_in_rounds": 0.5e-3,
                    "f16c_floor_s": 0.625e-3}]
    outcomes = {o.target.text: o for o in evaluate("cpu", [], [], interleaved, LIMITS)}
    share = outcomes["AdamW fp16, flat 16M: >= 85% of the limit"]
    assert share.measured == pytest.approx(0.5) and share.status == "MISSED"
    assert share.f16c_floor == pytest.approx(0.8)
    assert _bound(share) == "F16C floor 80.0%"
    speedup = outcomes["AdamW fp16, flat 16M: fast >= 1.0x torch fused AdamW fp16"]
    assert speedup.f16c_floor is None and speedup.status == "met"
    table = "\n".join(_interleaved_lines(interleaved, LIMITS))
    assert "| 0.6 (80.0%) |" in table
    interleaved[0]["f16c_floor_s"] = None  # not measured (the GPU): no bound is claimed
    outcomes = {o.target.text: o for o in evaluate("cpu", [], [], interleaved, LIMITS)}
    assert outcomes["AdamW fp16, flat 16M: >= 85% of the limit"].f16c_floor is None


def test_loss_scaling_is_measured_against_its_floor():
    scaling = [{"kind": "interleaved-loss-scaling", "optimizer": "AdamW", "mode": "fp32",
                "param_set": "flat-16M", "overhead": 0.16, "floor": 4 / 28}]
    outcomes = {o.target.text: o for o in evaluate("cpu", [], [], scaling, LIMITS)}
    target = outcomes["AdamW fp32, flat 16M: dynamic loss scaling within 3 points of one "
                      "extra gradient read"]
    assert target.measured == pytest.approx(0.16 - 4 / 28) and target.status == "met"


def test_the_loss_scaling_table_sets_the_overhead_against_the_read_pass_too():
    from .report import _points_over
    assert _points_over(0.226, 0.25) == "-2.4 points"
    assert _points_over(0.226, None) == "—"


def test_paired_speedup_is_the_median_of_ratios_within_rounds():
    from .test_interleaved import paired_speedup
    # round 2 is a slow spell for both: the ratio within it still counts as 2
    assert paired_speedup([2.0, 20.0, 3.0], [1.0, 10.0, 2.0]) == pytest.approx(2.0)
    # best-of would say 2.0 / 1.0 = 2; the rounds say fast was never more than 1.5x ahead
    assert paired_speedup([2.0, 3.0, 3.0], [2.0, 2.0, 1.0]) == pytest.approx(1.5)


def test_the_peer_check_tells_work_from_none():
    torch = pytest.importorskip("torch")
    import numpy as np

    from .torch_peers import check_one_step
    rng = np.random.default_rng(0)
    before = [(0.02 * rng.standard_normal(512)).astype(np.float32)]
    grads = [(0.01 * rng.standard_normal(512)).astype(np.float32)]
    kwargs = {"lr": 1e-2}
    assert check_one_step(torch, "SGD", kwargs, "fp32", before, grads, before).outcome == "no work"
    stepped = [(before[0] - np.float32(1e-2) * grads[0]).astype(np.float32)]
    assert check_one_step(torch, "SGD", kwargs, "fp32", before, grads, stepped).outcome == "ok"
    half_step = [(before[0] - np.float32(0.5e-2) * grads[0]).astype(np.float32)]
    assert check_one_step(torch, "SGD", kwargs, "fp32", before, grads,
                          half_step).outcome == "outside bound"


def test_the_distributed_section_states_units_load_and_spread():
    from .report import _distributed_lines
    from .targets import Target, _measure
    memory = {"kind": "distributed-state-bytes", "optimizer": "AdamW", "mode": "fp16+master",
              "param_set": "resnet50", "n_params": 10, "one_process_bytes": 120, "bytes_per_param": 12,
              "rows": [{"ranks": 3, "replicated": [120] * 3, "zero": [48, 48, 24],
                        "block_bytes": 48}]}
    spread = {"median": 1.25, "min": 1.2, "max": 2.0}
    floor = {"kind": "distributed-floor", "optimizer": "AdamW", "mode": "fp16+master", "param_set": "resnet50",
             "ranks": 2, "n_params": 10, "rounds": 7, "warmup": 1, "threads": [1, 1],
             "load_average": [[3.0, 2.0, 1.0], [4.0, 2.5, 1.5]], "wall_s": 123.4,
             "medians_ms": {"collectives": 20.0, "whole_step": 50.0, "shard_step": 25.0, "pack": 7.0,
                            "agreement": 2.0},
             "steps": {"replicated": {"over_floor": spread, "step_ms": 87.5, "floor_ms": 70.0},
                       "zero": {"over_floor": spread, "step_ms": 56.25, "floor_ms": 45.0}}}
    exchange = {"kind": "distributed-float16-exchange", "optimizer": "AdamW", "mode": "fp16+master",
                "param_set": "resnet50", "ranks": 2, "f16_over_f32": {"median": 0.3, "min": 0.25, "max": 0.5},
                "mpich_sum_over_ours": spread,
                "medians_ms": {"collectives": 24.0, "exchange_f32": 80.0, "f16_sum": 20.0, "mpich_f16_sum": 350.0}}
    save = {"kind": "distributed-save-memory", "optimizer": "AdamW", "mode": "fp16+master", "param_set": "resnet50",
            "ranks": 2, "peak_bytes": [10 * 2**20, 2**18], "shard_bytes": [150 * 2**20] * 2,
            "largest_array_bytes": 9 * 2**20, "file_bytes": 200 * 2**20, "save_s": [0.5, 0.6]}
    text = "\n".join(_distributed_lines([memory, floor, exchange, save]))
    assert "| 3 | 0.0 | 0.0 / 0.0 / 0.0 | 0.0 | 0.4000 |" in text
    assert "| fp16+master | 2 | replicated | 87.5 | 70.0 | 1.25x (1.20-2.00) | 20.0 | 50.0 | 7.0 | 2.0 | +8.5 |" in text
    assert "| fp16+master | 2 | zero | 56.2 | 45.0 | 1.25x (1.20-2.00) | 20.0 | 25.0 | 7.0 | 2.0 | +2.2 |" in text
    assert "| 2 | 0.30x (0.25-0.50) | 24.0 | 80.0 | 20.0 | 350.0 |" in text
    assert "| 2 | 10.00 / 0.25 | 150.0 / 150.0 | 9.00 | 200.0 | 0.60 |" in text
    assert "before the launches 3.00, 2.00, 1.00, after 4.00, 2.50, 1.50" in text
    assert "fp16+master 2: 123 s" in text
    target = Target("cpu", "t", "distributed_over_floor:zero:2", 1.10, False, "AdamW", "fp16+master", "resnet50")
    assert _measure(target, [], [], [memory, floor, exchange], None) == 1.25
    target = Target("cpu", "t", "float16_exchange_over_float32:2", 1.0, False, "AdamW", "fp16+master", "resnet50")
    assert _measure(target, [], [], [{"kind": "memory"}, floor, exchange], None) == 0.3
    target = Target("cpu", "t", "distributed_over_floor:zero:3", 1.10, False, "AdamW", "fp16+master", "resnet50")
    assert _measure(target, [], [], [floor], None) is None
    assert _distributed_lines([{"kind": "memory"}]) == []
