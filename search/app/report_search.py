"""The report's sections on what the search did: the space it searched, the learning curves,
Optuna's parallel-coordinate and slice plots, and fANOVA's parameter importances."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import matplotlib
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.importance import FanovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState

from search.app import report_html as page
from search.app import report_plots

TOP_CURVES = 5
IMPORTANCE_SEED = 0  # fANOVA fits a random forest: a fixed seed gives the same page twice
# Below this many completed trials (and 5 per parameter) importances are a hint, not a ranking.
FEW_FOR_IMPORTANCES = 20


def describe(distribution: BaseDistribution) -> str:
    """``float 0.0001 – 0.0005, log``, ``int 8 – 32, step 8``, ``one of: heatmap, wing``."""
    if isinstance(distribution, CategoricalDistribution):
        return "one of: " + ", ".join(page.fmt(c) for c in distribution.choices)
    if isinstance(distribution, FloatDistribution | IntDistribution):
        kind = "int" if isinstance(distribution, IntDistribution) else "float"
        text = f"{kind} {page.fmt(distribution.low)} – {page.fmt(distribution.high)}"
        if distribution.log:
            text += ", log"
        if distribution.step is not None and not (kind == "int" and distribution.step == 1):
            text += f", step {page.fmt(distribution.step)}"
        return text
    return repr(distribution)


def space(trials: Sequence[FrozenTrial], space_file: str | None) -> str:
    """Every parameter the trials sampled, with its range as Optuna searched it, and how many
    trials sampled it (a conditional parameter, fewer than all)."""
    sampled = [t for t in trials if t.distributions]
    if not sampled:
        return page.section("Searched space", "<p>No trial has sampled a parameter yet.</p>")
    ranges: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for trial in sampled:
        for name, distribution in trial.distributions.items():
            text = describe(distribution)
            if text not in ranges.setdefault(name, []):
                ranges[name].append(text)  # a case-dependent range: each one it took
            counts[name] = counts.get(name, 0) + 1
    rows = [
        (name, "; ".join(ranges[name]), f"{counts[name]} of {len(sampled)}")
        for name in sorted(ranges)
    ]
    source = f"<p>From {page.esc(space_file)}.</p>" if space_file else ""
    table = page.table(("parameter", "range", "sampled in"), rows)
    return page.section("Searched space", source + table)


def curves(ranked: Sequence[FrozenTrial], metric: str, unit: str, baseline: float | None) -> str:
    with_epochs = [t for t in ranked if t.intermediate_values]
    if not with_epochs:
        return page.section("Learning curves", "<p>No trial has reported an epoch yet.</p>")
    top = [t for t in with_epochs if t.value is not None][:TOP_CURVES]
    uri, axis = report_plots.learning_curves(with_epochs, top, metric, unit, baseline)
    body = (
        f"<p>{page.esc(metric)} per epoch: the {len(top)} best trials in colour, every trial "
        f"in grey ({page.esc(axis)}).</p>"
        f'<img src="{uri}" alt="learning curves">'
    )
    return page.section("Learning curves", body)


def optuna_plots(study: optuna.Study, trials: Sequence[FrozenTrial], metric: str) -> str:
    """Optuna's parallel-coordinate and slice plots of the completed trials."""
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if len(done) < 2 or not any(t.params for t in done):
        body = f"<p>They need at least 2 completed trials with parameters ({len(done)} so far).</p>"
        return page.section("Parameters against the metric", body)
    from optuna.visualization import matplotlib as plots

    positive = all(t.value is not None and t.value > 0 for t in done)
    # rc_context: they set pyplot's ggplot style for the whole process; it ends with them.
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # since 2.2
        lines = plots.plot_parallel_coordinate(study, target_name=metric)
        parallel = report_plots.optuna_chart(lines)
        sliced = report_plots.optuna_chart(plots.plot_slice(study, target_name=metric), positive)
    body = (
        f"<p>Optuna's plots of the {len(done)} completed trials (pruned trials are left out). "
        "Parallel coordinates: one line per trial through its parameter values, coloured by "
        f"{page.esc(metric)}.</p>"
        f'<img src="{parallel}" alt="parallel coordinates">'
        f"<p>Slices: {page.esc(metric)} against each parameter, one dot per trial, darker "
        "for later trials.</p>"
        f'<img src="{sliced}" alt="slice plot">'
    )
    return page.section("Parameters against the metric", body)


def importances(study: optuna.Study, trials: Sequence[FrozenTrial]) -> str:
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    if done < 2:
        body = f"<p>Not enough completed trials ({done}; fANOVA needs at least 2).</p>"
        return page.section("Parameter importances", body)
    evaluator = FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
    try:
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except ValueError as e:  # e.g. no parameter shared by all completed trials
        body = f"<p>Not enough completed trials to estimate importances ({page.esc(e)}).</p>"
        return page.section("Parameter importances", body)
    if not found:
        return page.section("Parameter importances", "<p>The study samples no parameters.</p>")
    enough = max(FEW_FOR_IMPORTANCES, 5 * len(found))
    caveat = ""
    if done < enough:
        caveat = (
            f'<p class="note"><b>Only {done} completed trials</b>: a forest fitted to so few '
            "points can rank parameters by chance. Read these as a hint, not a finding, "
            f"until there are about {enough}.</p>"
        )
    uri = report_plots.importance_bars(found)
    body = (
        f"<p>fANOVA over the {done} completed trials (pruned trials are left out).</p>"
        + caveat
        + f'<img src="{uri}" alt="parameter importances">'
        + page.table(("parameter", "importance"), ((k, f"{v:.2f}") for k, v in found.items()))
    )
    return page.section("Parameter importances", body)
