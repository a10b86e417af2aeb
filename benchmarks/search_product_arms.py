"""The product-path arms of ``search_efficiency.py``: A (cephtune's study with its defaults) and B
(random search without early stopping), each a study file in a scratch project started with
``search.cli``, the history read back from the Optuna RDB records.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from curves import Task
from histories import History

# The product's defaults for A: no sampler and no early-stopping line.
STUDY = """\
name: {name}
dataset: {{format: synthetic, n: {n}, size: [{width}, {height}], seed: 0}}
space: {space}
metric: mre_mm
mode: min
num_samples: {num_samples}
max_epochs: {max_epochs}
{arm}resources: {{cpu: 1, gpu: 0}}
max_concurrent_trials: 1
seed: {seed}
"""
RANDOM = "sampler: random\nasha: false\n"

# Arm A's trials: more than it starts within the budget, so that the budget cut ends A, not the
# count. Trials run one at a time and each follows from the ones before, so a larger count changes
# nothing inside the budget, only the time spent past it. Measured on held-out seeds 20 and 21 of
# the full mode: 10.4 and 12.9 epochs a trial inside the budget (10.5 over all 135 trials);
# 6 leaves a margin, and a history short of the budget is reported as a note.
A_EPOCHS_PER_TRIAL = 6.0


def read_arm(project: Path, name: str, label: str, max_epochs: int, wall_s: float) -> History:
    """A product-path study's history from its Optuna records (trial number, then epoch)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{project}/studies/optuna.db")
    found = History(label, max_epochs, wall_s=wall_s)
    previous_end = None
    for t in sorted(study.trials, key=lambda t: t.number):
        found.trials += 1
        found.count(t.state.name)
        found.params[t.number] = dict(t.params)
        steps = sorted(t.intermediate_values)
        if steps != list(range(1, len(steps) + 1)):
            sys.exit(f"{name}: trial {t.number} reported epochs {steps}, expected 1..k")
        for s in steps:
            found.add(t.number, s, t.intermediate_values[s])
        if previous_end is not None and t.datetime_start and t.datetime_start < previous_end:
            found.notes.append(f"trial {t.number} started before the previous one ended")
        previous_end = t.datetime_complete or previous_end
    return found


def write_study(project: Path, tag: str, task: Task, trials: int, arm: str, seed: int) -> Path:
    """A's or B's study file (B: ``trials`` random trials to the end; A: the defaults)."""
    budget = trials * task.max_epochs
    # At least three times B's count: a tiny budget (smoke mode: 6 epochs) is spent in fewer
    # epochs a trial than a real one.
    a_trials = max(math.ceil(budget / A_EPOCHS_PER_TRIAL), 3 * trials)
    num_samples = trials if arm == "B" else a_trials
    name = f"se-{tag}-{arm}-s{seed}"
    study_file = project / f"{name}.yaml"
    study_file.write_text(
        STUDY.format(
            name=name,
            n=task.n,
            width=task.width,
            height=task.height,
            space=f"space-{tag}.yaml",
            num_samples=num_samples,
            max_epochs=task.max_epochs,
            arm=RANDOM if arm == "B" else "",
            seed=seed,
        )
    )
    return study_file
