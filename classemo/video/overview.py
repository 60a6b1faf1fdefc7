"""The cross-lesson summary of a batch analysis: lessons.parquet (a row per lesson and segment) and overview.html.

overview.html is one self-contained page, like each lesson's report.html: a table of the lessons (click a heading to
sort), per-lesson sparklines of classroom activity and teaching effectiveness over the lesson, a link to each
lesson's report, and the videos that gave no report. The sparklines are inline SVG, so the page needs no plotting
library and stays small with hundreds of lessons.
"""

from __future__ import annotations

import html
import math
import time

import pandas as pd

SEGMENT_MEASURES = ("teacher_activity", "student_positive", "student_negative", "classroom_activity", "effectiveness",
                    "rating", "teacher_evaluation", "student_evaluation", "classroom_evaluation")
SPARK_W, SPARK_H = 140, 28  # sparkline size in pixels; the scores live in [0, 1]

JS = """
function sortBy(th) {
  const table = th.closest('table'), body = table.tBodies[0], col = th.cellIndex;
  const asc = th.dataset.dir !== 'asc';
  table.querySelectorAll('th').forEach(h => delete h.dataset.dir);
  th.dataset.dir = asc ? 'asc' : 'desc';
  const key = r => { const v = r.cells[col].dataset.v; return v === '' ? null : (isNaN(v) ? v : Number(v)); };
  [...body.rows].sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === null || y === null) return (x === null) - (y === null);
    return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
  }).forEach(r => body.appendChild(r));
}
"""
CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1300px;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; font-size: 0.9em; } th, td { border: 1px solid #ccc; padding: 4px 8px; }
th { background: #f2f2f2; cursor: pointer; user-select: none; } td { text-align: right; } td.l { text-align: left; }
th[data-dir=asc]::after { content: ' ▲'; } th[data-dir=desc]::after { content: ' ▼'; }
.note { color: #666; font-size: 0.88em; } .ca { stroke: #2a6fdb; } .ef { stroke: #d0542a; }
"""


def lessons_table(summaries: dict[str, dict]) -> pd.DataFrame:
    """A row per lesson and segment, from each lesson's summary.json, with the lesson's overall measures alongside.

    Args:
        summaries: lesson name -> its summary (as `write_analysis` wrote it).
    """
    rows = []
    for lesson, s in sorted(summaries.items()):
        o = s["overall"]
        for seg in s["segments"]:
            rows.append({"lesson": lesson, "video": s["video"]["path"], "duration_s": float(s["duration_s"]),
                         "segment": int(seg["index"]), "start_s": float(seg["start_s"]), "end_s": float(seg["end_s"]),
                         "num_rows": int(seg["num_rows"]), "num_students": len(seg["students"]),
                         "teacher_present": seg["teacher"] is not None,
                         **{k: seg[k] for k in SEGMENT_MEASURES},
                         "lesson_classroom_activity": o["classroom_activity"],
                         "lesson_effectiveness": o["effectiveness"], "lesson_rating": o["rating"]})
    table = pd.DataFrame(rows, columns=["lesson", "video", "duration_s", "segment", "start_s", "end_s", "num_rows",
                                        "num_students", "teacher_present", *SEGMENT_MEASURES,
                                        "lesson_classroom_activity", "lesson_effectiveness", "lesson_rating"])
    floats = [c for c in table.columns if c.endswith(("activity", "positive", "negative", "effectiveness"))]
    return table.astype({c: "float64" for c in floats})


def sparkline(points: list[tuple[float, float | None]], duration_s: float, cls: str) -> str:
    """SVG polyline(s) of (time, score in [0, 1]) points; a None score breaks the line."""
    runs: list[list[str]] = [[]]
    for t, v in points:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            runs.append([])
            continue
        x = 2 + (SPARK_W - 4) * (t / duration_s if duration_s > 0 else 0.5)
        y = 2 + (SPARK_H - 4) * (1.0 - min(max(v, 0.0), 1.0))
        runs[-1].append(f"{x:.1f},{y:.1f}")
    out = []
    for run in (r for r in runs if r):
        if len(run) == 1:  # one segment: a short flat stroke, so a single value is still visible
            x, y = (float(c) for c in run[0].split(","))
            run = [f"{max(x - 6, 1):.1f},{y:.1f}", f"{min(x + 6, SPARK_W - 1):.1f},{y:.1f}"]
        out.append(f'<polyline class="{cls}" fill="none" stroke-width="1.5" points="{" ".join(run)}"/>')
    return "".join(out)


def _cell(v: object, text: str | None = None, left: bool = False) -> str:
    missing = v is None or (isinstance(v, float) and math.isnan(v))
    sort_key = "" if missing else (f"{v:.6g}" if isinstance(v, (int, float)) else html.escape(str(v)))
    shown = text if text is not None else ("–" if missing else f"{v:.2f}" if isinstance(v, float)
                                           else html.escape(str(v)))
    return f'<td{" class=l" if left else ""} data-v="{sort_key}">{shown}</td>'


def overview_html(summaries: dict[str, dict], rejected: list[tuple[str, str]], *, title: str = "Lessons") -> str:
    """The overview page: one row per lesson (links to `<lesson>/report.html`), then the rejected videos."""
    head = ["lesson", "minutes", "students", "teacher", "classroom activity", "effectiveness", "rating",
            "teacher activity", "student positive", "student negative", "over the lesson"]
    body = []
    for lesson, s in sorted(summaries.items()):
        o, segs, dur = s["overall"], s["segments"], float(s["duration_s"])
        mid = [(0.5 * (g["start_s"] + g["end_s"]), g) for g in segs]
        spark = (f'<svg width="{SPARK_W}" height="{SPARK_H}" role="img" aria-label="classroom activity and '
                 f'effectiveness per segment"><rect width="{SPARK_W}" height="{SPARK_H}" fill="#fafafa"/>'
                 + sparkline([(t, g["classroom_activity"]) for t, g in mid], dur, "ca")
                 + sparkline([(t, g["effectiveness"]) for t, g in mid], dur, "ef") + "</svg>")
        link = f'<a href="{html.escape(lesson)}/report.html">{html.escape(lesson)}</a>'
        body.append("<tr>" + "".join([
            _cell(lesson, link, left=True), _cell(dur / 60), _cell(len(o["students"])),
            _cell("yes" if o["teacher"] is not None else "no", left=True), _cell(o["classroom_activity"]),
            _cell(o["effectiveness"]), _cell(o["effectiveness"], html.escape(o["rating"] or "–"), left=True),
            _cell(o["teacher_activity"]), _cell(o["student_positive"]), _cell(o["student_negative"]),
            f'<td class=l data-v="{len(segs)}">{spark}</td>']) + "</tr>")
    ths = "".join(f'<th onclick="sortBy(this)">{html.escape(h)}</th>' for h in head)
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">{len(summaries)} lessons analysed, {len(rejected)} videos rejected; written '
             f'{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}. Scores are in [0, 1] (docs/analytics.md). '
             'Sparklines: <span style="color:#2a6fdb">classroom activity</span> and <span style="color:#d0542a">'
             "teaching effectiveness</span> per segment, over the lesson. Click a heading to sort.</p>",
             f"<table><thead><tr>{ths}</tr></thead><tbody>{''.join(body)}</tbody></table>"]
    if rejected:
        rows = "".join(f"<tr><td class=l>{html.escape(v)}</td><td class=l>{html.escape(r)}</td></tr>"
                       for v, r in sorted(rejected))
        parts.append(f"<h2>Rejected videos</h2><table><tr><th>video</th><th>reason</th></tr>{rows}</table>")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style><script>{JS}</script></head><body>{''.join(parts)}</body></html>")
