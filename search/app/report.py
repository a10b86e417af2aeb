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
from typing import Any

import optuna
from optuna.importance import FanovaImportanceEvaluator
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search.app import report_html as page
from search.app import report_plots
from search.layout import Layout, mask_url
from search.records import ranking
from search.records.storage import open_study
from search.records.trials import (
    FAIL_REASON,
    METRIC,
    MLFLOW_EXPERIMENT_ID,
    SPEC,
    STATE_TAGS,
    budget,
    interrupted,
)
from trainables.artifacts import FinalDir, TestMetrics
from trainables.eval.metrics import SDR_THRESHOLDS_MM, sdr_key

TOP_CURVES = 5
IMPORTANCE_SEED = 0  # fANOVA fits a random forest: a fixed seed gives the same page twice


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
    parts = [
        _header(study, storage_url, trials, spec, metric),
        _counts(trials, spec),
        _best(study, trials, metric),
        _compute(trials, spec),
        _test_results(final_dir),
        _curves(ranked, metric),
        _importances(study, trials),
        _trial_table(ranked),
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


def _best(study: optuna.Study, trials: Sequence[FrozenTrial], metric: str) -> str:
    if not any(t.state == TrialState.COMPLETE for t in trials):
        return page.section("Best trial", "<p>No finished trial yet.</p>")
    top = ranking.best(study)
    line = (
        f"<p>Best trial <b>#{top['trial']}</b>: {page.esc(metric)} = "
        f"<b>{page.esc(page.fmt(top['value']))}</b>. Its full configuration:</p>"
    )
    return page.section("Best trial", line + page.kv(sorted(top["config"].items())))


def _compute(trials: Sequence[FrozenTrial], spec: dict[str, Any]) -> str:
    """Epochs run against the budget of every sample running every epoch (no early stopping)."""
    run = sum(len(t.intermediate_values) for t in trials)
    samples, epochs = spec.get("num_samples"), spec.get("max_epochs")
    if not (isinstance(samples, int) and isinstance(epochs, int) and samples * epochs > 0):
        note = "the study records no num_samples and max_epochs to compare with"
        return page.section("Compute", f"<p>{run} epochs run; {note}.</p>")
    budget = samples * epochs
    saved = 1 - run / budget
    verdict = f"{saved:.0%} saved" if saved >= 0 else f"{-saved:.0%} over"
    body = (
        f"<p>Epochs run: <b>{run}</b> of <b>{budget}</b> without early stopping "
        f"({samples} samples × {epochs} epochs): <b>{verdict}</b>.</p>"
    )
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


def _test_results(final_dir: Path) -> str:
    final = FinalDir(final_dir)
    data = TestMetrics.read(final)
    if data is None:
        return page.section(
            "Test set", f"<p>No promoted model yet ({page.esc(final.test_metrics)} not found).</p>"
        )
    scores = data.scores
    rows = [
        ("model", data.model_uri),
        ("alias", data.alias),
        ("test images", data.images),
        ("MRE (mm)", scores.get("mre_mm")),
        ("MRE SD (mm)", scores.get("mre_sd_mm")),
        *((f"SDR@{t:g}mm", page.pct(scores.get(sdr_key(t)))) for t in SDR_THRESHOLDS_MM),
        ("test-time augmentation", data.tta),
        ("ensemble of trials", data.ensemble),
    ]
    body = page.kv(rows) + _selection(data.selection)
    landmarks = data.per_landmark or {}
    if isinstance(landmarks, dict) and landmarks:
        body += "<h3>Per landmark</h3>" + page.table(
            ("landmark", "MRE (mm)", "SD (mm)", "SDR@2mm", "n"),
            (
                (symbol, r.get("mre_mm"), r.get("sd_mm"), page.pct(r.get("sdr_2mm")), r.get("n"))
                for symbol, r in landmarks.items()
                if isinstance(r, dict)
            ),
        )
    overlays = sorted(final.overlays.glob("*.png"))
    if overlays:
        body += "<h3>Overlays</h3>" + "".join(
            f'<figure><img src="{report_plots.png_data_uri(p.read_bytes())}" '
            f'alt="{page.esc(p.name)}"><figcaption>{page.esc(p.stem)}</figcaption></figure>'
            for p in overlays
        )
    return page.section("Test set (promoted model)", body)


def _selection(selection: Any) -> str:
    """promote --trials/--seeds: each candidate's mean valid MRE ± 95 % interval, and the
    paired per-image test of the top two."""
    if not isinstance(selection, dict) or not selection.get("candidates"):
        return ""
    rows = [
        (f"#{c.get('trial')}", c.get("seeds"), c.get("mean_valid_mre_mm"), c.get("ci95_mm"))
        for c in selection["candidates"]
        if isinstance(c, dict)
    ]
    html = "<h3>Selection (valid)</h3>" + page.table(
        ("trial", "seeds", "mean valid MRE (mm)", "± 95 % (mm)"), rows
    )
    top = selection.get("top_two")
    if isinstance(top, dict):
        html += page.kv([(f"top two, {top.get('test')}", f"p = {page.fmt(top.get('p_value'))}")])
    return html


def _curves(ranked: Sequence[FrozenTrial], metric: str) -> str:
    with_epochs = [t for t in ranked if t.intermediate_values]
    if not with_epochs:
        return page.section("Learning curves", "<p>No trial has reported an epoch yet.</p>")
    top = [t for t in with_epochs if t.value is not None][:TOP_CURVES]
    uri = report_plots.learning_curves(with_epochs, top, metric)
    body = (
        f"<p>{page.esc(metric)} per epoch: the {len(top)} best trials in colour, every trial "
        f'in grey.</p><img src="{uri}" alt="learning curves">'
    )
    return page.section("Learning curves", body)


def _importances(study: optuna.Study, trials: Sequence[FrozenTrial]) -> str:
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    if done < 2:
        body = f"<p>Not enough completed trials ({done}; fANOVA needs at least 2).</p>"
        return page.section("Parameter importances", body)
    evaluator = FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
    try:
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except ValueError as e:  # e.g. no parameter shared by all completed trials
        body = f"<p>Not enough completed trials to estimate importances ({page.esc(e)}).</p>"
        return page.section("Parameter importances", body)
    if not importances:
        return page.section("Parameter importances", "<p>The study samples no parameters.</p>")
    uri = report_plots.importance_bars(importances)
    body = (
        f"<p>fANOVA over the {done} completed trials (pruned trials are left out).</p>"
        f'<img src="{uri}" alt="parameter importances">'
        + page.table(("parameter", "importance"), importances.items())
    )
    return page.section("Parameter importances", body)


def _trial_table(ranked: Sequence[FrozenTrial]) -> str:
    if not ranked:
        return page.section("All trials", "<p>No trials yet.</p>")
    rows = (
        (
            t.number,
            state_label(t),
            t.value,
            len(t.intermediate_values),
            ", ".join(f"{k}={page.fmt(v)}" for k, v in sorted(t.params.items())),
            t.user_attrs.get(FAIL_REASON, ""),
        )
        for t in ranked
    )
    head = ("trial", "state", "value", "epochs", "params", "fail reason")
    return page.section("All trials, best first", page.table(head, rows))
