"""The product-path arms of ``search_efficiency.py``: A (cephtune's study with its defaults) and B
(random search without early stopping), both a study YAML in a scratch project started with
``search.cli``; their histories read back from the Optuna RDB records. The benchmark's task
(``Mode``) and its searched space (``SPACE``) are defined here for all four arms.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from search_arms import History

# The searched space: parameters that matter on this task (the loss and the learning rate by an
# order of magnitude; sigma, batch size and warmup less). The cosine cycle is fitted to the epoch
# budget (t0_epochs = max_epochs) as a user would for a short search.
SPACE = """\
params:
  lr: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}
  loss: {{type: categorical, choices: [adaptive_wing, heatmap]}}
  sigma: {{type: float, low: 0.5, high: 3.0}}
  batch_size: {{type: categorical, choices: [4, 8]}}
  warmup_epochs: {{type: int, low: 0, high: {warmup_high}}}
fixed:
  model: hrnet
  backbone: hrnet_w18_small
  image_size: {image_size}
  t0_epochs: {max_epochs}
  checkpoint_every: 0
"""

STUDY = """\
name: {name}
dataset: {{format: synthetic, n: {n}, size: [193, 240], seed: 0}}
space: {space}
metric: mre_mm
mode: min
num_samples: {num_samples}
max_epochs: {max_epochs}
asha: {asha}
{sampler}resources: {{cpu: 2, gpu: 0}}
max_concurrent_trials: 1
seed: {seed}
"""


@dataclass(frozen=True)
class Mode:
    seeds: tuple[int, ...]
    random_trials: int  # arm B's trials; its budget is random_trials x max_epochs
    max_epochs: int
    grace: int
    factor: int
    n: int  # synthetic images (70/15/15 split)
    image_size: int
    warmup_high: int = 2  # the space's warmup_epochs range is 0..warmup_high

    @property
    def budget(self) -> int:
        return self.random_trials * self.max_epochs


# Arm A's trials: ASHA's rungs would average ~2.3 epochs a trial, but one trial at a time
# promotes the first arrivals at each rung, and TPE's better trials get promoted more often:
# measured 3.6-4.5 epochs a trial. More trials than that need; the cut ends A, not the count.
A_EPOCHS_PER_TRIAL = 3.0


def read_arm(project: Path, name: str, label: str, wall_s: float) -> History:
    """A product-path study's history from its Optuna records (trial number, then epoch)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{project}/studies/optuna.db")
    found = History(label, wall_s=wall_s)
    previous_end = None
    for t in sorted(study.trials, key=lambda t: t.number):
        found.trials += 1
        found.count(t.state.name)
        steps = sorted(t.intermediate_values)
        if steps != list(range(1, len(steps) + 1)):
            sys.exit(f"{name}: trial {t.number} reported epochs {steps}, expected 1..k")
        found.history += [(t.number, s, t.intermediate_values[s]) for s in steps]
        if previous_end is not None and t.datetime_start and t.datetime_start < previous_end:
            found.notes.append(f"trial {t.number} started before the previous one ended")
        previous_end = t.datetime_complete or previous_end
    return found


def write_study(project: Path, tag: str, mode: Mode, arm: str, seed: int) -> Path:
    if arm == "B":
        sampler, asha, num_samples = "sampler: random\n", "false", mode.random_trials
    else:  # the product defaults: no sampler line
        sampler = ""
        asha = f"{{grace_period: {mode.grace}, reduction_factor: {mode.factor}}}"
        num_samples = math.ceil(mode.budget / A_EPOCHS_PER_TRIAL) + 1
    name = f"se-{tag}-{arm}-s{seed}"
    study_file = project / f"{name}.yaml"
    study_file.write_text(
        STUDY.format(
            name=name,
            n=mode.n,
            space=f"space-{tag}.yaml",
            num_samples=num_samples,
            max_epochs=mode.max_epochs,
            asha=asha,
            sampler=sampler,
            seed=seed,
        )
    )
    return study_file
