"""What a search arm did, in time order, and how an arm is scored: select on valid, score on test.

An arm's history is every epoch it trained, in the order it trained them: (trial, epoch, valid
MRE, test MRE or None). It is cut at the budget (random search's epochs). An arm's **selection**
is what ``promote`` would take: among the trials that ran their whole schedule inside the cut,
the one with the lowest valid MRE at its last epoch. Its **score** is that trial's test MRE at
its last epoch (the test split no arm saw while searching). "Reaching" a valid value means
having such a finished trial with a valid MRE at or below it, so a half-trained trial's early
value (or a lucky epoch of many trials on a small valid split) never counts.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Epoch:
    trial: int  # the arm's trial, in creation order
    epoch: int
    valid: float
    test: float | None = None  # None where the arm did not look (end to end: the selection only)


@dataclass
class History:
    """One arm's time-ordered epochs, and the counts it reports."""

    name: str
    max_epochs: int
    history: list[Epoch] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    trials: int = 0  # trials started
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    params: dict[int, dict] = field(default_factory=dict)  # each trial's searched values
    rungs: dict = field(default_factory=dict)  # cephtune's early-stopping decisions

    def add(self, trial: int, epoch: int, valid: float, test: float | None = None) -> None:
        self.history.append(Epoch(trial, epoch, float(valid), test))

    def count(self, state: str) -> None:
        self.states[state] = self.states.get(state, 0) + 1

    def cut(self, budget: int | None) -> list[Epoch]:
        return self.history if budget is None else self.history[:budget]

    def finished(self, budget: int | None = None) -> list[tuple[int, Epoch]]:
        """(epochs spent when it finished, last epoch) of every trial that ran its whole
        schedule inside the cut, in time order."""
        return [
            (i, e)
            for i, e in enumerate(self.cut(budget), 1)
            if e.epoch == self.max_epochs and math.isfinite(e.valid)
        ]

    def selected(self, budget: int | None = None) -> Epoch | None:
        """The finished trial with the lowest valid MRE at its last epoch (first on ties)."""
        done = [e for _, e in self.finished(budget)]
        return min(done, key=lambda e: e.valid, default=None)

    def best_valid(self, budget: int | None = None) -> float:
        found = self.selected(budget)
        return math.inf if found is None else found.valid

    def epochs_to_reach(self, target: float, budget: int | None = None) -> float:
        """Epochs spent until a finished trial's valid MRE was <= ``target``; inf if never."""
        return next((i for i, e in self.finished(budget) if e.valid <= target), math.inf)

    def trials_in(self, budget: int) -> int:
        return len({e.trial for e in self.cut(budget)})


def wilcoxon(a: list[float], b: list[float], alternative: str) -> tuple[float, int]:
    """Paired Wilcoxon signed-rank p-value of ``a`` against ``b`` (``alternative``: "less"
    when a should be lower) and the number of pairs that differ; ties are dropped (Wilcoxon's
    own rule), and with no pair that differs the p-value is 1."""
    from scipy.stats import wilcoxon as signed_rank

    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    if not pairs:
        return 1.0, 0
    xs, ys = zip(*pairs, strict=True)
    return float(signed_rank(xs, ys, alternative=alternative).pvalue), len(pairs)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def fmt(value: float, spec: str = ".3f") -> str:
    return "inf" if math.isinf(value) else format(value, spec)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``--seeds``: integers and ranges, ``11,12,13`` or ``100-199`` or ``0-4,9``."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, dash, high = part.partition("-")
        if dash and low:
            seeds += range(int(low), int(high) + 1)
        else:
            seeds.append(int(part))
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    return tuple(seeds)
