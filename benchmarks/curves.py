"""The learning-curve table of the tabular search benchmark: its task, its grid, and lookups.

A tabular benchmark (as LCBench, HPOBench and NAS-Bench are) trains every configuration of a
grid once and keeps its metric after every epoch; a search then runs against the table, each
epoch looked up instead of trained, so hundreds of seeds take minutes and every arm sees exactly
the same learning curves. The table here is the grid ``GRIDS[task]`` of the benchmark space on
a synthetic task, trained by ``curves_build.py`` (the command that rebuilds it), with the valid
and the test MRE of every epoch. A searched value between grid points is snapped to the nearest
one (in log space for ``lr``): the arms search the space as a user writes it, the table answers
for the grid point nearest to what they ask.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TABLES = Path(__file__).resolve().parent / "tables"
# The benchmark space as a study's space file writes it (both search benchmarks search it):
# the continuous lr and sigma are snapped to the grid's points; the rest are the grid's choices.
SPACE_YAML = """\
params:
  lr: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}
  loss: {{type: categorical, choices: [adaptive_wing, heatmap]}}
  sigma: {{type: float, low: 1.0, high: 2.5}}
  batch_size: {{type: categorical, choices: [4, 8]}}
  warmup_epochs: {{type: categorical, choices: [0, 2]}}
fixed:
  model: hrnet
  backbone: {backbone}
  image_size: {image_size}
  t0_epochs: {max_epochs}
  checkpoint_every: 0
"""


@dataclass(frozen=True)
class Task:
    """A synthetic task: the data, the model and the schedule every configuration trains."""

    name: str
    n: int  # synthetic images (70/15/15 train/valid/test)
    width: int
    height: int
    image_size: int
    max_epochs: int
    backbone: str = "hrnet_w18_small"
    data_seed: int = 0
    train_seed: int = 0

    def space_yaml(self) -> str:
        return SPACE_YAML.format(
            backbone=self.backbone, image_size=self.image_size, max_epochs=self.max_epochs
        )

    def fixed(self) -> dict[str, Any]:
        """The trainable settings every configuration shares (the space's ``fixed``)."""
        return {
            "model": "hrnet",
            "backbone": self.backbone,
            "image_size": self.image_size,
            "t0_epochs": self.max_epochs,  # one cosine cycle over the schedule
            "checkpoint_every": 0,
        }


# ``bench``: the table the tabular benchmark searches (30 valid and 30 test images, 27 epochs:
# rungs at 1, 3, 9 and 27 epochs with a reduction factor of 3). ``small`` is the task of the
# end-to-end benchmark before issue 23 (9 valid images, 9 epochs) and ``quickstart`` the
# quickstart's; tables of a sample of them measure whether their early epochs rank
# configurations (``curves_build.py --task small --limit 24``).
TASKS = {
    "bench": Task("bench", n=200, width=193, height=240, image_size=64, max_epochs=27),
    "small": Task("small", n=60, width=193, height=240, image_size=64, max_epochs=9),
    "quickstart": Task("quickstart", n=160, width=386, height=480, image_size=128, max_epochs=10),
}
LR_GRID = tuple(round(1e-4 * 100 ** (i / 7), 7) for i in range(8))  # 1e-4 .. 1e-2, log-spaced
GRIDS: dict[str, dict[str, tuple]] = {
    "bench": {
        "lr": LR_GRID,
        "loss": ("adaptive_wing", "heatmap"),
        "sigma": (1.0, 1.75, 2.5),
        "batch_size": (4, 8),
        "warmup_epochs": (0, 2),
    },
    "small": {
        "lr": LR_GRID,
        "loss": ("adaptive_wing", "heatmap"),
        "sigma": (1.0, 1.75, 2.5),
        "batch_size": (4, 8),
        "warmup_epochs": (0, 2),
    },
    "quickstart": {  # spaces/quickstart.yaml's ranges
        "lr": tuple(round(5e-4 * 8 ** (i / 5), 7) for i in range(6)),
        "batch_size": (4, 8),
        "warmup_epochs": (0, 1, 2),
        "loss": ("adaptive_wing", "heatmap"),
    },
}
QUICKSTART_FIXED = {"sigma": 1.5, "checkpoint_every": 0}


def grid_configs(task: str) -> list[dict[str, Any]]:
    """Every configuration of the task's grid, in the grid's order."""
    grid = GRIDS[task]
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def config_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def table_path(task: str) -> Path:
    return TABLES / f"curves-{task}.json"


@dataclass
class Table:
    """The trained grid: per configuration, the valid and test MRE (mm) after each epoch."""

    task: Task
    grid: dict[str, tuple]
    rows: dict[str, dict[str, Any]]  # config_key -> {"params", "valid", "test"}

    @classmethod
    def load(cls, path: Path) -> Table:
        data = json.loads(Path(path).read_text())
        grid = {k: tuple(v) for k, v in data["grid"].items()}
        rows = {config_key(r["params"]): r for r in data["rows"]}
        return cls(Task(**data["task"]), grid, rows)

    def snap(self, params: dict[str, Any]) -> dict[str, Any]:
        """The grid point nearest to ``params`` (log distance for ``lr``)."""
        out = {}
        for name, choices in self.grid.items():
            value = params[name]
            if isinstance(choices[0], str):
                out[name] = value
                continue
            scale = math.log if name == "lr" else float
            out[name] = min(choices, key=lambda c: abs(scale(c) - scale(value)))
        return out

    def row(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.rows[config_key(self.snap(params))]

    def finals(self, split: str = "valid") -> list[float]:
        return [r[split][-1] for r in self.rows.values()]
