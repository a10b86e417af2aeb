"""``search.py report NAME``: one self-contained HTML page about a study.

Everything comes from the Optuna storage (trial states, per-epoch intermediate values, the
study's resolved spec) and, once the study has been promoted, from ``studies/NAME/final/`` (the
test tables and overlays). The CSS is inline and the charts and overlays are base64 PNGs, so the
page is one file that opens anywhere, offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search.app import report_final, report_search
from search.app import report_html as page
from search.layout import Layout, mask_url
from search.records import ranking
from search.records.storage import open_study
from search.records.trials import (
    BASELINE,
    FAIL_REASON,
    METRIC,
    MLFLOW_EXPERIMENT_ID,
    SPEC,
    STATE_TAGS,
    against_baseline,
    budget,
    duration,
    interrupted,
    unit,
)


def write_report(
    layout: Layout,
    name: str,
    storage_url: str,
    out_dir: Path | None = None,
    final_dir: Path | None = None,
) -> Path:
    """Write ``report.html`` into ``out_dir`` (default ``studies/NAME/report/``), return its path.

    ``final_dir`` (default ``studies/NAME/final/``) is where ``promote`` left the test results.
    """
    url = layout.url(storage_url)
    study = open_study(name, url)
    page = render(study, url, final_dir if final_dir is not None else layout.final_dir(name))
    target = (out_dir if out_dir is not None else layout.report_dir(name)) / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


def render(study: optuna.Study, storage_url: str, final_dir: Path) -> str:
    """The report page of ``study`` as one HTML string."""
    trials = study.get_trials(deepcopy=False)
    spec = {**(study.user_attrs.get(SPEC) or {}), "num_samples": budget(study)}
    metric = study.user_attrs.get(METRIC) or spec.get("metric") or "value"
    ranked = ranking.valued_first(study, trials)
    baseline = study.user_attrs.get(BASELINE)
    parts = [
        _header(study, storage_url, trials, spec, metric),
        _counts(trials, spec),
        _best(study, trials, metric, baseline),
        _compute(trials, spec),
        report_final.promoted(final_dir),
        report_search.curves(ranked, metric, unit(metric), baseline),
        report_search.optuna_plots(study, trials, metric),
        report_search.importances(study, trials),
        report_search.space(trials, (spec.get("space") or {}).get("path")),
        _trial_table(ranked, metric),
    ]
    title = page.esc(f"cephtune report: {study.study_name}")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{page.CSS}</style></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


def state_label(trial: FrozenTrial) -> str:
    """The MLflow state tag (completed | pruned | failed), interrupted for a trial a stopped
    driver ended, else Optuna's state (running | waiting)."""
    if interrupted(trial):
        return "interrupted"
    return STATE_TAGS.get(trial.state, trial.state.name.lower())


def _header(
    study: optuna.Study, storage_url: str, trials: Sequence[FrozenTrial], spec: dict, metric: str
) -> str:
    mode = spec.get("mode") or ("max" if study.direction == StudyDirection.MAXIMIZE else "min")
    started = [t.datetime_start for t in trials if t.datetime_start is not None]
    ended = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    rows = [
        ("metric", f"{metric} ({mode})"),
        ("storage", mask_url(storage_url)),
        ("num_samples", spec.get("num_samples")),
        ("max_epochs", spec.get("max_epochs")),
        ("first trial started", page.when(min(started)) if started else None),
        ("last trial ended", page.when(max(ended)) if ended else None),
        ("MLflow experiment", study.user_attrs.get(MLFLOW_EXPERIMENT_ID)),
        ("report written", page.when(datetime.now())),
    ]
    return f"<h1>Study {page.esc(study.study_name)}</h1>\n{page.kv(rows)}"


def _counts(trials: Sequence[FrozenTrial], spec: dict[str, Any]) -> str:
    if not trials:
        return page.section("Trials", "<p>No trials yet.</p>")
    labels = [state_label(t) for t in trials]
    shown = ["completed", "pruned", "failed", "interrupted"]
    shown += sorted(set(labels) - set(shown))  # running/waiting only when there are any
    rows = [(label, labels.count(label)) for label in shown]
    replaced = "; interrupted trials were replaced" if "interrupted" in labels else ""
    samples = page.esc(page.fmt(spec.get("num_samples")))
    body = f"<p>{len(trials)} trials in the storage for num_samples = {samples}{replaced}.</p>"
    reasons: dict[str, list[int]] = {}
    for trial, label in zip(trials, labels, strict=True):
        if label == "failed":
            reason = trial.user_attrs.get(FAIL_REASON) or "(no reason recorded)"
            reasons.setdefault(str(reason), []).append(trial.number)
    items = "".join(
        f"<li>{page.esc(reason)} (trial {', '.join(f'#{n}' for n in numbers)})</li>"
        for reason, numbers in reasons.items()
    )
    failures = f"<p>Why trials failed:</p><ul>{items}</ul>" if items else ""
    return page.section("Trials", body + page.kv(rows) + failures)


def _best(
    study: optuna.Study, trials: Sequence[FrozenTrial], metric: str, baseline: float | None
) -> str:
    shown = f" {unit(metric)}" if unit(metric) else ""
    against = ""
    if baseline is not None:
        against = (
            f"<p>Mean-shape baseline (every landmark at its train-set mean position, on the "
            f"valid split): <b>{page.fmt(baseline)} mm</b>; a model has to beat it.</p>"
        )
    if not any(t.state == TrialState.COMPLETE for t in trials):
        return page.section("Best trial", "<p>No finished trial yet.</p>" + against)
    top = ranking.best(study)
    ratio = ""
    if baseline is not None and metric == "mre_mm":
        ratio = f" ({against_baseline(top['value'], baseline)}; the mean-shape baseline below)"
    line = (
        f"<p>Best trial <b>#{top['trial']}</b>: {page.esc(metric)} = "
        f"<b>{page.esc(page.fmt(top['value']))}{shown}</b>{ratio}. Its full configuration:</p>"
    )
    return page.section("Best trial", line + page.kv(sorted(top["config"].items())) + against)


def _compute(trials: Sequence[FrozenTrial], spec: dict[str, Any]) -> str:
    """Epochs run against the budget of every sample running every epoch (no early stopping)."""
    run = sum(len(t.intermediate_values) for t in trials)
    samples, epochs = spec.get("num_samples"), spec.get("max_epochs")
    if not (isinstance(samples, int) and isinstance(epochs, int) and samples * epochs > 0):
        note = "the study records no num_samples and max_epochs to compare with"
        return page.section("Compute", f"<p>{run} epochs run; {note}.</p>" + _durations(trials))
    budget = samples * epochs
    saved = 1 - run / budget
    verdict = f"{saved:.0%} saved" if saved >= 0 else f"{-saved:.0%} over"
    body = (
        f"<p>Epochs run: <b>{run}</b> of <b>{budget}</b> without early stopping "
        f"({samples} samples × {epochs} epochs): <b>{verdict}</b>.</p>"
    )
    body += _durations(trials)
    lost = sum(len(t.intermediate_values) for t in trials if state_label(t) == "interrupted")
    if lost:
        body += f'<p class="note">{lost} of these epochs belong to interrupted trials.</p>'
    ended = sum(state_label(t) in ("completed", "pruned", "failed") for t in trials)
    if ended < samples:
        body += (
            f'<p class="note">Only {ended} of {samples} trials have finished, so the saving is '
            "not final.</p>"
        )
    return page.section("Compute", body)


def _seconds(trial: FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def _durations(trials: Sequence[FrozenTrial]) -> str:
    """Trial time in all, and the median trial of each end state (a pruned trial is cheaper)."""
    timed = [(state_label(t), s) for t in trials if (s := _seconds(t)) is not None]
    if not timed:
        return ""
    rows = [("trial time in all", duration(sum(s for _, s in timed)))]
    for label in ("completed", "pruned", "failed", "interrupted"):
        these = sorted(s for state, s in timed if state == label)
        if these:
            rows.append((f"median {label} trial ({len(these)})", duration(median(these))))
    return "<h3>Trial durations</h3>" + page.kv(rows)


def _trial_table(ranked: Sequence[FrozenTrial], metric: str) -> str:
    if not ranked:
        return page.section("All trials", "<p>No trials yet.</p>")
    rows = (
        (
            t.number,
            state_label(t),
            t.value,
            len(t.intermediate_values),
            duration(s) if (s := _seconds(t)) is not None else None,
            ", ".join(f"{k}={page.fmt(v)}" for k, v in sorted(t.params.items())),
            t.user_attrs.get(FAIL_REASON, ""),
        )
        for t in ranked
    )
    value = f"{metric} ({unit(metric)})" if unit(metric) else metric
    head = ("trial", "state", value, "epochs", "duration", "params", "fail reason")
    note = (
        f"<p class=\"note\">{page.esc(value)}: the last epoch's value (a pruned trial's is where "
        "it was stopped).</p>"
    )
    return page.section("All trials, best first", note + page.table(head, rows))
