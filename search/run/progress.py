"""What a running study prints: one line per trial event, named by its Optuna number as the
summary, the report and the dashboard name it, and a status line.

Ray's own reporter (its config and result boxes, a table per trial, ``trainable_1ecae27a``) is
off unless ``start --verbose``. ``StudyProgress`` is a Ray Tune callback placed after the one
that records the trials (``searcher.RecordTrials``), so what it reads back from the study's
storage (a trial's number, its searched parameters, the state its end was given) is already
there. The status line (finished / running / of N, the best so far, elapsed, an ETA) keeps
itself current on a terminal and is printed every ``STATUS_EVERY_S`` seconds when piped.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from optuna.trial import FrozenTrial, TrialState
from ray.tune import Callback

from search.records import trials as records
from search.records.study_record import StudyRecord
from search.records.trials import interrupted
from search.studyfiles.study import StudySpec
from trainables.config import EPOCHS_AFTER_WARMUP

STATUS_EVERY_S = 30.0  # piped: a status line this often
REDRAW_EVERY_S = 1.0  # on a terminal: the status line redrawn this often
CLEAR = "\r\x1b[K"  # back to the start of the terminal's line, and clear it


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class StudyProgress(Callback):
    """One line per event of study ``spec``'s trials, and the status line (module docstring)."""

    def __init__(self, record: StudyRecord, spec: StudySpec, out: TextIO | None = None) -> None:
        self.record, self.metric = record, spec.metric
        self.num_samples, self.max_epochs = spec.num_samples, spec.max_epochs
        self.rungs = set(spec.asha.rungs(spec.max_epochs)) if spec.asha is not None else set()
        self.maximize = spec.mode == "max"
        self.out = out
        self.started = time.monotonic()
        self.shown = 0.0  # when the status line was last printed or drawn
        self.drawn = False  # a status line is on the terminal's last line

    def __getstate__(self) -> dict[str, Any]:  # Ray saves callbacks with its experiment
        return {**self.__dict__, "out": None}

    def __setstate__(self, state: dict[str, Any]) -> None:  # a resumed study's clock restarts
        self.__dict__.update(state, started=time.monotonic(), shown=0.0, drawn=False)

    @property
    def stream(self) -> TextIO:
        return self.out or sys.stdout

    def _trial(self, trial) -> FrozenTrial | None:
        return records.by_ray_id(self.record.study, trial.trial_id)

    def _say(self, trial, text: str) -> None:
        frozen = self._trial(trial)
        name = f"#{frozen.number}" if frozen is not None else trial.trial_id
        self._line(f"trial {name} {text}")

    def _line(self, text: str) -> None:
        self.stream.write(f"{CLEAR if self.drawn else ''}{text}\n")
        self.drawn = False
        self._status(force=self.stream.isatty())

    def on_trial_start(self, iteration: int, trials: list, trial, **info: Any) -> None:
        frozen = self._trial(trial)
        params = frozen.params if frozen is not None else {}
        shown = ", ".join(f"{k}={_value(v)}" for k, v in sorted(params.items()))
        self._say(trial, f"started: {shown or 'no searched parameters'}")

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any):
        rung = result.get(EPOCHS_AFTER_WARMUP)
        if rung in self.rungs and self.metric in result:
            self._say(
                trial, f"epoch {result.get('epoch')}: {self.metric} {result[self.metric]:.4g}"
            )

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        frozen, last = self._trial(trial), trial.last_result or {}
        value = last.get(self.metric)
        shown = f"{self.metric} {value:.4g}" if isinstance(value, (int, float)) else "no result"
        if frozen is not None and frozen.state == TrialState.PRUNED:
            self._say(trial, f"pruned at epoch {last.get('epoch')}: {shown}")
        elif frozen is not None and frozen.state == TrialState.FAIL:
            self._say(trial, f"failed: {frozen.user_attrs.get(records.FAIL_REASON, 'unknown')}")
        else:
            self._say(trial, f"completed: {shown} after {last.get('epoch')} epochs")

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        frozen = self._trial(trial)
        reason = None if frozen is None else frozen.user_attrs.get(records.FAIL_REASON)
        self._say(trial, f"failed: {reason or 'error (see its error.txt)'}")

    def on_step(self, iteration: int, trials: list, **info: Any) -> None:
        self._status()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._status(force=True, final=True)

    def _status(self, force: bool = False, final: bool = False) -> None:
        tty = self.stream.isatty()
        now = time.monotonic()
        if not force and now - self.shown < (REDRAW_EVERY_S if tty else STATUS_EVERY_S):
            return
        self.shown = now
        text = self.status_line(now - self.started)
        clear = CLEAR if self.drawn else ""
        if tty and not final:  # redrawn in place until the next event line
            self.stream.write(f"{CLEAR}{text}")
            self.drawn = True
        else:
            self.stream.write(f"{clear}{text}\n")
            self.drawn = False
        self.stream.flush()

    def status_line(self, elapsed: float) -> str:
        """``finished F, running R of N; best #i METRIC v; elapsed; ETA``. The ETA is from the
        epochs run so far and the most that are left (every trial still to come, and every
        running one, to ``max_epochs``): early stopping only makes it sooner."""
        # An interrupted trial was replaced by another: it is no part of the count.
        found = [t for t in self.record.study.get_trials(deepcopy=False) if not interrupted(t)]
        running = [t for t in found if t.state == TrialState.RUNNING]
        finished = [t for t in found if t.state in records.ENDED]
        done, left = records.epoch_budget(found, self.num_samples, self.max_epochs)
        complete = [t for t in found if t.state == TrialState.COMPLETE and t.value is not None]
        best = "best: none completed yet"
        if complete:
            top = (max if self.maximize else min)(complete, key=lambda t: t.value)
            best = f"best #{top.number} {self.metric} {top.value:.4g}"
        eta = "ETA unknown"
        if left == 0:
            eta = "no epochs left"
        elif done and elapsed > 0:
            eta = f"ETA at most {records.duration(left * elapsed / done)}"
        return (
            f"[{len(finished)} finished, {len(running)} running, of {self.num_samples}] {best}; "
            f"{records.duration(elapsed)} elapsed, {eta}"
        )
