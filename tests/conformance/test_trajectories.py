"""The ci level reaches late steps: long runs, resumed counters, loss-scale growth after skips,
and long hypothesis trajectories."""
import itertools
import warnings

import pytest
from hypothesis import find, given, settings

import fast
import reference
from conformance import generators
from conformance.adapter import Driver
from conformance.cases import DTYPE_MODES, OPTIMIZERS, PROFILES, Case, ParamSpec, Resume


@pytest.fixture(scope="module")
def ci_cases():
    return generators.ci_suite("ci")


def skipped_steps(case):
    """The steps dynamic loss scaling skips: an injected inf/NaN in a non-empty parameter."""
    if case.loss_scaling.mode != "dynamic":
        return set()
    sized = {p.name for p in case.params if p.size}
    return {i.step for i in case.injections if i.kind != "none" and i.param in sized}


def longest_growth_after_skip(case):
    """The most consecutive normal steps that follow a skipped step."""
    skips = sorted(skipped_steps(case)) + [case.steps + 1]
    return max((b - a - 1 for a, b in zip(skips, skips[1:])), default=0)


def rule_updates(case):
    """How many updates the first parameter's rule makes when the reference runs the case."""
    driver = Driver(reference, case)
    for step in range(1, case.steps + 1):
        driver.step(step)
    return driver.params[case.params[0].name].update_rule.t


def test_every_optimizer_mode_and_profile_has_a_run_of_8_normal_steps(ci_cases):
    seen = {(c.optimizer, c.dtype_mode, c.profile) for c in ci_cases
            if c.steps - len(skipped_steps(c)) >= 8}
    assert seen == set(itertools.product(OPTIMIZERS, DTYPE_MODES, PROFILES))


def test_long_runs_really_update_8_times_or_more(ci_cases):
    """A raised error (an eps the dtype cannot hold) would end a run early on both sides."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        short = [(c.name, n) for c in ci_cases if c.name.startswith("long/")
                 for n in [rule_updates(c)] if n < 8]
    assert not short


def test_no_step_index_is_skipped_in_every_long_run(ci_cases):
    for opt, mode in itertools.product(OPTIMIZERS, DTYPE_MODES):
        runs = [c for c in ci_cases if c.name.startswith(f"long/{opt}/{mode}/")]
        always = set.intersection(*(skipped_steps(c) for c in runs))
        assert len(runs) == len(PROFILES) and not always, (opt, mode, always)


def test_loss_scale_grows_through_more_than_two_intervals_after_a_skip(ci_cases):
    for opt, mode in itertools.product(OPTIMIZERS, DTYPE_MODES):
        assert any(longest_growth_after_skip(c) > 2 * c.loss_scaling.interval
                   for c in ci_cases if c.name.startswith(f"long/{opt}/{mode}/")), (opt, mode)


def test_step_counted_optimizers_resume_at_every_large_counter(ci_cases):
    seen = {(c.optimizer, c.dtype_mode, c.profile, c.resume.rule_t[0])
            for c in ci_cases if c.resume is not None}
    expected = set(itertools.product(generators.STEP_COUNTED + ("SGD",), DTYPE_MODES,
                                     PROFILES, generators.RESUME_AT))
    assert seen == expected


@pytest.mark.parametrize("impl", [fast, reference], ids=["fast", "reference"])
@pytest.mark.parametrize("profile", PROFILES)
def test_a_resumed_case_starts_at_its_counters_with_state(impl, profile, ci_cases):
    case = next(c for c in ci_cases if c.name == f"resume/Adam/float16_master/{profile}/t=100000")
    driver = Driver(impl, case)
    rules = [driver.params[p.name].update_rule for p in case.params]
    assert driver.optimizer.t == 100_002
    assert [rule.t for rule in rules] == [100_000, 99_999]
    assert all(rule.state is not None and set(rule.state) == {"m", "v"} for rule in rules)


@pytest.mark.parametrize("profile, expected", [("fixed", 0.99 ** 1001), ("chainer", 0.99)])
def test_msvag_beta_power_is_resumed_only_where_the_profile_saves_it(profile, expected,
                                                                    ci_cases):
    """The chainer profile does not save beta_power: a resumed MSVAG restarts it at beta
    (its bias correction starts over), whatever t the checkpoint holds."""
    case = next(c for c in ci_cases if c.name == f"resume/MSVAG/float32/{profile}/t=1000")
    driver = Driver(reference, case)
    assert driver.params["p0"].update_rule.beta_power == pytest.approx(expected, rel=1e-12)
    assert driver.params["p0"].update_rule.t == 1000


def test_resume_rejects_inconsistent_counters():
    params = (ParamSpec("a", (3,)),)
    with pytest.raises(ValueError):
        Resume(5, (6,))
    with pytest.raises(ValueError):
        Resume(0, (0,))
    with pytest.raises(ValueError):
        Case(name="x", optimizer="Adam", params=params, resume=Resume(5, (5, 4)))


def test_hypothesis_draws_trajectories_up_to_30_steps():
    assert find(generators.trajectory_lengths(), lambda n: n >= 25) <= 30

    @settings(max_examples=200, derandomize=True, database=None)
    @given(generators.trajectory_lengths())
    def within_bounds(n):
        assert 1 <= n <= 30
    within_bounds()


def test_hypothesis_draws_resumed_cases_unless_checkpoints_are_off():
    resumed = find(generators.cases(), lambda c: c.resume is not None
                   and c.resume.rule_t[0] == 10**7)
    assert resumed.resume.t == 10**7 + 2

    @settings(max_examples=50, derandomize=True, database=None)
    @given(generators.cases(checkpoints=False))
    def never_resumed(case):
        assert case.resume is None and not case.checkpoints
    never_resumed()
