"""The report's section on the promoted model: ``studies/NAME/final/`` as ``promote`` left it
(the one test, the per-landmark table, the overlays, and the selection among candidates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search.app import report_html as page
from search.app import report_plots
from trainables.artifacts import BEST_CHECKPOINT, FinalDir, TestMetrics
from trainables.eval.metrics import SDR_THRESHOLDS_MM, sdr_key


def promoted(final_dir: Path) -> str:
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
        ("epochs trained", data.epochs),
        ("tested from", _tested_from(data)),
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


def _tested_from(data: TestMetrics) -> str | None:
    """``best.pt (epoch 87, best on valid)``, ``last.pt (epoch 100)``, or the bare file."""
    if data.checkpoint is None or data.tested_epoch is None:
        return data.checkpoint
    why = ", best on valid" if data.checkpoint == BEST_CHECKPOINT else ""
    return f"{data.checkpoint} (epoch {data.tested_epoch}{why})"


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
