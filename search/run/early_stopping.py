"""A study's early stopping: ASHA with rungs after warmup, whose lowest rungs must keep showing
that they rank trials the way the next rung does, or stop stopping trials.

Ray's ``ASHAScheduler`` trusts every rung. On a short schedule or a small valid split the first
epochs can rank the good configurations no better than chance (``benchmarks/search_tabular.py``
measures it: on the old 9-image task the first epoch's rank correlation with the final MRE was
about 0 among the best quarter of the grid), and then every trial the first rung stops is a coin
flip that costs the study a configuration. Here, with ``asha.adapt`` (the default), every
``PROBE_EVERY``-th trial is a *probe*: where the lowest rung that still stops trials would stop
it, it goes on to the next rung instead, and there it shows whether the stop would have been a
mistake (the next rung would have promoted it). Once a rung has made ``MIN_MISTAKES`` such
mistakes, at least ``MISTAKE_RATE`` of its probes, it is *widened*: it records values but stops
no trial from then on, and the next rung is the first that stops. A rung that ranks well costs
the probes' extra epochs and nothing else.

The decisions (which rungs are widened, the probes' outcomes) are kept on the Optuna study as
the user attribute ``early_stopping`` (written by this scheduler only), which the summary and
the report read.
"""

from __future__ import annotations

import json
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from search.studyfiles.asha import Asha

# Every PROBE_EVERY-th trial probes the lowest rung that stops trials.
PROBE_EVERY = 4
# A rung is widened once its probes show at least MIN_MISTAKES mistakes, and at least
# MISTAKE_RATE of them were mistakes. A rung that ranks no better than chance makes about
# 1 / reduction_factor (a third at 3); one that ranks well, close to none.
MIN_MISTAKES = 2
MISTAKE_RATE = 0.2
RECORD_KEY = "early_stopping"  # the study's user attribute


class StudyNote:
    """Writes the scheduler's decisions to the study's ``early_stopping`` attribute (picklable:
    Ray saves the scheduler with the experiment)."""

    def __init__(self, storage_url: str, study_name: str) -> None:
        self.storage_url, self.study_name = storage_url, study_name

    def __call__(self, value: dict[str, Any]) -> None:
        import optuna

        from search.records.storage import open_storage

        study = optuna.load_study(
            study_name=self.study_name, storage=open_storage(self.storage_url)
        )
        study.set_user_attr(RECORD_KEY, json.loads(json.dumps(value)))


class AdaptiveAsha(AsyncHyperBandScheduler):
    """ASHA (one bracket or several) whose lowest rungs are checked by probes (module doc)."""

    def __init__(self, *, adapt: bool, note: StudyNote | None = None, **asha: Any) -> None:
        super().__init__(**asha)
        self._adapt = adapt
        self._note = note
        self._added = 0
        self._probes: set[str] = set()
        self._pending: dict[str, tuple[float, float]] = {}  # probe -> (its rung, the next)
        self.evidence: dict[float, list[bool]] = {}  # rung -> was each probe's stop a mistake
        self.widened: list[float] = []

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        if self._adapt and self._added % PROBE_EVERY == PROBE_EVERY - 1:
            self._probes.add(trial.trial_id)
        self._added += 1

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        t, value = result.get(self._time_attr), result.get(self._metric)
        if t is None or value is None or t >= self._max_t:
            return super().on_trial_result(tune_controller, trial, result)
        bracket = self._trial_info[trial.trial_id]
        rung = _deciding(bracket, trial.trial_id, t)
        cutoff = None if rung is None else bracket.cutoff(rung[1])  # before this value counts
        action = super().on_trial_result(tune_controller, trial, result)
        if rung is None:
            return action
        milestone = rung[0]
        pending = self._pending.get(trial.trial_id)
        if pending is not None and pending[1] == milestone:
            del self._pending[trial.trial_id]
            if cutoff is not None:  # promoted here: the lower rung's stop was a mistake
                self._learn(pending[0], not self._metric_op * value < cutoff)
        if action != TrialScheduler.STOP:
            return action
        if milestone in self.widened:
            return TrialScheduler.CONTINUE
        following = _next(bracket, milestone)
        if (
            trial.trial_id in self._probes
            and milestone == self._lowest_stopping(bracket)
            and following is not None
            and following < self._max_t
        ):
            self._pending[trial.trial_id] = (milestone, following)
            return TrialScheduler.CONTINUE
        return action

    def _lowest_stopping(self, bracket) -> float | None:
        return next((m for m, _ in reversed(bracket._rungs) if m not in self.widened), None)

    def _learn(self, milestone: float, mistake: bool) -> None:
        seen = self.evidence.setdefault(milestone, [])
        seen.append(mistake)
        mistakes = sum(seen)
        if (
            milestone not in self.widened
            and mistakes >= MIN_MISTAKES
            and mistakes >= MISTAKE_RATE * len(seen)
        ):
            self.widened.append(milestone)
        if self._note is not None:
            self._note(self.state())

    def state(self) -> dict[str, Any]:
        """What the summary reports: each probed rung's probes and mistakes, the widened ones."""
        return {
            "widened": [int(m) for m in self.widened],
            "probes": {
                str(int(m)): {"probes": len(v), "mistakes": sum(v)}
                for m, v in sorted(self.evidence.items())
            },
        }


def _deciding(bracket, trial_id: str, t: float) -> tuple[float, dict] | None:
    """The rung at which ``bracket`` decides a result at time ``t``, as Ray's ``_Bracket``
    finds it (its rungs are listed highest first); None when no rung decides. Ray 2.60 keeps
    the rungs in ``_rungs`` with no public accessor."""
    for milestone, recorded in bracket._rungs:
        if t < milestone or trial_id in recorded:
            continue
        return milestone, recorded
    return None


def _next(bracket, milestone: float) -> float | None:
    higher = [m for m, _ in bracket._rungs if m > milestone]
    return min(higher) if higher else None


def scheduler(asha: Asha, max_t: int, time_attr: str, note: StudyNote | None = None):
    """The study's ASHA on ``time_attr`` (the metric and mode come from Ray's TuneConfig)."""
    return AdaptiveAsha(
        adapt=asha.adapt,
        note=note,
        time_attr=time_attr,
        max_t=max_t,
        grace_period=asha.grace_period,
        reduction_factor=asha.reduction_factor,
        brackets=asha.brackets,
    )
