"""The search's ASHA stops weak trials at a rung, but never a trial at its last epoch (it must save its model)."""

from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from tune.search import _asha


def test_asha_stops_below_the_rung_but_lets_the_last_epoch_finish() -> None:
    sched = _asha(max_t=2, grace_period=1, reduction_factor=2)  # rungs at epochs 1 and 2
    sched.set_search_properties("val_uar", "max")
    good, weak = SimpleNamespace(trial_id="good"), SimpleNamespace(trial_id="weak")
    for trial in (good, weak):
        sched.on_trial_add(None, trial)
    assert sched.on_trial_result(None, good, {"training_iteration": 1, "val_uar": 0.5}) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, weak, {"training_iteration": 1, "val_uar": 0.1}) == TrialScheduler.STOP
    # Plain ASHA says STOP here (max_t reached): that killed the trial's driver before it saved its model.
    assert sched.on_trial_result(None, good, {"training_iteration": 2, "val_uar": 0.5}) == TrialScheduler.CONTINUE


def test_a_trial_that_only_ties_the_rung_is_not_promoted() -> None:
    sched = _asha(max_t=3, grace_period=1, reduction_factor=4)
    sched.set_search_properties("val_uar", "max")
    first, tie, better = (SimpleNamespace(trial_id=t) for t in ("first", "tie", "better"))
    for trial in (first, tie, better):
        sched.on_trial_add(None, trial)
    assert sched.on_trial_result(None, first, {"training_iteration": 1, "val_uar": 1 / 3}) == TrialScheduler.CONTINUE
    # Plain ASHA continues on a tie (only strictly below the cutoff stops): on small validation splits every
    # trial tied and nothing was ever stopped.
    assert sched.on_trial_result(None, tie, {"training_iteration": 1, "val_uar": 1 / 3}) == TrialScheduler.STOP
    assert sched.on_trial_result(None, better, {"training_iteration": 1, "val_uar": 0.5}) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, better, {"training_iteration": 2, "val_uar": 0.5}) == TrialScheduler.CONTINUE
