"""One self-contained HTML report of a classroom analysis: inline PNG plots, Table 3/4 analogues, a plain reading.

Everything is in the one file (plots as base64 PNG, CSS inline, no JavaScript), so it opens offline and can be
mailed. No face images are ever put in the report.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from classemo.analytics import PROB_PREFIX
from classemo.labels import LabelSet

MAX_PEOPLE_PLOTTED = 16  # beyond this the per-person figure gets unreadable; the tables still list everyone

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 4px 9px; text-align: right; }
th { background: #f2f2f2; } td.l, th.l { text-align: left; }
.reading { background: #f5f9ff; border-left: 4px solid #4a7bd0; padding: 0.6em 1em; }
.empty { background: #fff6e5; border-left: 4px solid #d09a4a; padding: 0.6em 1em; }
.note { color: #666; font-size: 0.88em; } img { max-width: 100%; }
.headline { font-size: 1.25em; font-weight: 600; margin: 0.8em 0; }
"""


def _fig_to_img(fig: object, alt: str) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(v: object) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.2f}"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list[object]]) -> str:
    th = "".join(f'<th class="{"l" if i == 0 else ""}">{html.escape(h)}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i == 0 else ""}">{_fmt(v)}</td>' for i, v in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _person_name(track: int, role: str) -> str:
    return f"{'Teacher' if role == 'teacher' else 'Student'} #{track}"


def person_timeline_plot(timeline: pd.DataFrame, label_set: LabelSet) -> str:
    """Per person: stacked class probabilities over time, with valence and arousal on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    people = (timeline.groupby("track").agg(role=("role", "first"), n=("time", "size"))
              .sort_values(["role", "n"], ascending=[False, False]).head(MAX_PEOPLE_PLOTTED))
    cols = [f"{PROB_PREFIX}{n}" for n in label_set.names]
    colours = plt.get_cmap("tab10")(np.arange(len(cols)) % 10)
    fig, axes = plt.subplots(len(people), 1, figsize=(11, 1.7 * len(people) + 0.6), sharex=True, squeeze=False)
    t_max = float(timeline["time"].max()) or 1.0
    for ax, (track, p) in zip(axes[:, 0], people.iterrows()):
        d = timeline[timeline["track"] == track].sort_values("time")
        t = d["time"].to_numpy()
        if len(t) == 1:  # a single window (a still image): draw it as a short bar so it is visible
            t = np.array([t[0] - 0.02 * t_max, t[0] + 0.02 * t_max])
            d = pd.concat([d, d])
        ax.stackplot(t, d[cols].to_numpy().T, colors=colours, alpha=0.85)
        ax.set_ylim(0, 1)
        ax.set_ylabel(_person_name(int(track), p.role), rotation=0, ha="right", va="center", fontsize=9)
        ax2 = ax.twinx()
        ax2.plot(t, d["valence"], color="black", lw=1.4, label="valence")
        ax2.plot(t, d["arousal"], color="black", lw=1.2, ls="--", label="arousal")
        ax2.set_ylim(-1.05, 1.05)
        ax2.tick_params(labelsize=7)
    axes[0, 0].legend([plt.Rectangle((0, 0), 1, 1, color=c) for c in colours], label_set.names,
                      ncol=len(cols), fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.02))
    axes[-1, 0].set_xlabel("time (s)")
    return _fig_to_img(fig, "per-person emotion timeline")


def activity_plot(timeline: pd.DataFrame, summary: dict, label_set: LabelSet) -> str:
    """Classroom emotional activity and teacher facial activity over time (rolling over windows, and per segment)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from classemo.analytics import AnalyticsConfig, readable_mask, row_scores

    cfg = AnalyticsConfig(**summary["config"])
    fig, ax = plt.subplots(figsize=(11, 3.2))
    timeline = timeline[readable_mask(timeline)]
    probs = timeline[[f"{PROB_PREFIX}{n}" for n in label_set.names]].to_numpy(float)
    s = row_scores(probs, timeline["valence"].to_numpy(), timeline["arousal"].to_numpy(), label_set, cfg,
                   timeline["attention"].to_numpy(str) if "attention" in timeline else None)
    df = pd.DataFrame({"time": timeline["time"].round(1), "role": timeline["role"], "classroom": s["classroom"],
                       "activity": s["activity"]})
    stu = df[df["role"] == "student"].groupby("time")["classroom"].mean()
    tea = df[df["role"] == "teacher"].groupby("time")["activity"].mean()
    if len(stu):
        ax.plot(stu.index, stu.rolling(5, min_periods=1, center=True).mean(), marker="." if len(stu) < 3 else None,
                color="#2a6fdb", lw=2, label="classroom emotional activity (students)")
    if len(tea):
        ax.plot(tea.index, tea.rolling(5, min_periods=1, center=True).mean(), marker="." if len(tea) < 3 else None,
                color="#d0542a", lw=1.5, label="teacher facial activity")
    for seg in summary["segments"]:
        if seg["classroom_activity"] is not None:
            ax.hlines(seg["classroom_activity"], seg["start_s"], max(seg["end_s"], seg["start_s"] + 0.1),
                      color="#2a6fdb", lw=6, alpha=0.25)
    ax.axhline(cfg.active, color="grey", ls=":", lw=1)
    ax.axhline(cfg.normal, color="grey", ls=":", lw=1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("score in [0, 1]")
    ax.legend(fontsize=8, loc="upper right")
    return _fig_to_img(fig, "classroom activity curve")


def _seg_label(seg: dict) -> str:
    return f"{seg['start_s'] / 60:.1f}–{seg['end_s'] / 60:.1f} min"


def table3(summary: dict) -> str:
    """Table 3 analogue: teacher facial activity, per-student positive/negative activity, classroom activity."""
    students = sorted(summary["overall"]["students"], key=int)
    header = ["segment", "teacher activity", *[f"S#{s} pos / neg" for s in students], "classroom activity"]
    rows = []
    for seg in [*summary["segments"], {**summary["overall"], "label": "whole video"}]:
        cells: list[object] = [seg.get("label") or _seg_label(seg), seg["teacher_activity"]]
        for s in students:
            st = seg["students"].get(s)
            if st is None:
                cells.append(None)
            else:  # a student whose face could not be read in the segment has no emotion measures
                cells.append("unread" if st["positive_activity"] is None else
                             f"{st['positive_activity']:.2f} / {st['negative_activity']:.2f}")
        cells.append(seg["classroom_activity"])
        rows.append(cells)
    return _table(header, rows)


def table4(summary: dict) -> str:
    """Table 4 analogue: teaching effectiveness and the emotional evaluations."""
    header = ["segment", "effectiveness score", "teaching effectiveness", "teacher", "students", "classroom"]
    rows = [[seg.get("label") or _seg_label(seg), seg["effectiveness"], seg["rating"], seg["teacher_evaluation"],
             seg["student_evaluation"], seg["classroom_evaluation"]]
            for seg in [*summary["segments"], {**summary["overall"], "label": "whole video"}]]
    return _table(header, rows)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def headline(summary: dict) -> str:
    """The students' lesson in one line, as a person watching it would put it: the dominant reading of their faces,
    the share positive and negative, and where they looked ("Mostly neutral; positive (smiling) 6% of the time,
    negative 2%; looking down 41%, turned away 5%")."""
    o = summary["overall"]
    parts = []
    shares = {k: o.get(f"student_{k}") for k in ("neutral", "positive", "negative")}
    if shares["neutral"] is not None:
        top = max(shares, key=shares.get)  # type: ignore[arg-type]
        tone = f"mostly {top}" if shares[top] >= 0.5 else "mixed"
        parts.append(f"{tone.capitalize()}; positive (smiling) {_pct(shares['positive'])} of the time, "
                     f"negative {_pct(shares['negative'])}")
    else:
        parts.append("No student's expression could be read")
    att = o.get("attention") or {}
    if att.get("front") is not None:
        parts.append(f"looking down {_pct(att['down'])}, turned away {_pct(att['away'])}")
    return "; ".join(parts) + "."


def reading(summary: dict) -> str:
    """A few plain sentences for the teacher, from the overall and per-segment measures."""
    o = summary["overall"]
    n_students = len(o["students"])
    parts = [f"{n_students} student{'s' if n_students != 1 else ''} "
             f"{'and the teacher were' if o['teacher'] is not None else 'were'} followed through the video."]
    if o.get("readable_share") is not None:
        parts.append(f"Their faces could be read {_pct(o['readable_share'])} of the time; the rest of the time they "
                     "looked down, turned away, or were too small or blurred to read, and those moments are left "
                     "out of the emotion measures (the attention figures still count them).")
    if o.get("student_neutral") is not None:
        parts.append(f"When their faces could be read, students looked neutral {_pct(o['student_neutral'])} of the "
                     f"time, positive (smiling) {_pct(o['student_positive'])} and negative "
                     f"{_pct(o['student_negative'])}.")
    att = o.get("attention") or {}
    if att.get("front") is not None:
        parts.append(f"They faced the front {_pct(att['front'])} of the time, looked down (desk, notes or a phone) "
                     f"{_pct(att['down'])} and were turned away {_pct(att['away'])}.")
    if o["classroom_activity"] is not None:
        parts.append(f"Overall the class was <b>{o['classroom_evaluation'].lower()}</b> emotionally "
                     f"(classroom activity {o['classroom_activity']:.2f} on a 0–1 scale), and the lesson's "
                     f"teaching effectiveness reads as <b>{o['rating']}</b>.")
    if o["teacher_activity"] is not None:
        parts.append(f"The teacher's facial activity was {o['teacher_activity']:.2f} "
                     f"({o['teacher_evaluation'].lower()}).")
    segs = [s for s in summary["segments"] if s["classroom_activity"] is not None]
    if len(segs) >= 2:
        hi = max(segs, key=lambda s: s["classroom_activity"])
        lo = min(segs, key=lambda s: s["classroom_activity"])
        parts.append(f"The class was most engaged in {_seg_label(hi)} and least in {_seg_label(lo)}; "
                     f"those may be the moments to revisit.")
    parts.append("These are estimates from faces only: a quiet face is not a bored mind, and looking down is often "
                 "writing. Use them as a prompt for reflection, not as a grade.")
    return " ".join(parts)


def attention_table(summary: dict) -> str:
    """Per student and for the class: where they looked, and how much of the time their faces could be read."""
    o = summary["overall"]

    def cells(name: str, v: dict, read: float | None) -> list[object]:
        att = v.get("attention") or {}
        return [name, *[None if att.get(k) is None else _pct(att[k]) for k in ("front", "down", "away")],
                None if read is None else _pct(read)]

    rows = [cells(f"Student #{tid}", st, st.get("readable_share"))
            for tid, st in sorted(o["students"].items(), key=lambda kv: int(kv[0]))]
    rows.append(cells("class", o, o.get("readable_share")))
    return _table(["", "facing the front", "looking down", "turned away", "face readable"], rows)


def attention_plot(summary: dict) -> str:
    """One bar per student (and the class): the share of time facing the front, looking down and turned away."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    o = summary["overall"]
    names, values = [], []
    for tid, st in sorted(o["students"].items(), key=lambda kv: int(kv[0]))[:MAX_PEOPLE_PLOTTED]:
        if (st.get("attention") or {}).get("front") is not None:
            names.append(f"Student #{tid}")
            values.append([st["attention"][k] for k in ("front", "down", "away")])
    if (o.get("attention") or {}).get("front") is not None:
        names.append("class")
        values.append([o["attention"][k] for k in ("front", "down", "away")])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.0))
    left = np.zeros(len(names))
    for k, (label, colour) in enumerate((("facing the front", "#4a7bd0"), ("looking down", "#e0a030"),
                                         ("turned away", "#999999"))):
        v = np.array([row[k] for row in values])
        ax.barh(names, v, left=left, color=colour, label=label)
        left += v
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("share of the time the face was seen")
    ax.legend(fontsize=8, ncol=3, loc="lower left", bbox_to_anchor=(0, 1.0))
    return _fig_to_img(fig, "attention per student")


def write_report(path: str | Path, timeline: pd.DataFrame, summary: dict, label_set: LabelSet) -> Path:
    """Write report.html for an analysis (an empty but valid report when no faces were found)."""
    path = Path(path)
    video = summary.get("video", {})
    title = f"Classroom emotion report: {Path(video.get('path', 'video')).name}"
    body = [f"<h1>{html.escape(title)}</h1>"]
    an = summary.get("analysis", {})
    body.append(f'<p class="note">Analysed {video.get("analysed_frames", "?")} frames at {an.get("fps", "?")} fps '
                f'({summary["duration_s"]:.1f} s of video); {len(summary.get("tracks", {}))} people tracked, '
                f'{len(summary.get("dropped_tracks", {}))} short tracks dropped; '
                f'segments of {summary["segment_s"]:g} s.'
                + (" The video looks truncated: only its decodable part was analysed." if video.get("truncated")
                   else "") + "</p>")
    if len(timeline) == 0:
        body.append('<div class="empty"><b>No faces were found in this video.</b> Nothing could be measured. Check '
                    "that faces are visible and at least ~4% of the frame height, or try the haar-profile or YuNet "
                    "detector.</div>")
    else:
        body.append(f'<p class="headline">{html.escape(headline(summary))}</p>')
        body.append(f'<h2>Reading for the teacher</h2><div class="reading">{reading(summary)}</div>')
        if (summary["overall"].get("attention") or {}).get("front") is not None:
            body.append("<h2>Where the students looked</h2>" + attention_plot(summary) + attention_table(summary))
        body.append("<h2>Classroom activity over time</h2>" + activity_plot(timeline, summary, label_set))
        body.append("<h2>Table 3: facial activity</h2>" + table3(summary))
        body.append("<h2>Table 4: teaching effectiveness and emotional evaluation</h2>" + table4(summary))
        body.append("<h2>Emotion timeline per person</h2>" + person_timeline_plot(timeline, label_set))
        if timeline["track"].nunique() > MAX_PEOPLE_PLOTTED:
            body.append(f'<p class="note">Only the {MAX_PEOPLE_PLOTTED} longest-tracked people are plotted.</p>')
    body.append(f'<h2>About this report</h2><p class="note">{html.escape(summary.get("privacy", ""))} Formulas: '
                "docs/analytics.md in the classemo project.</p>")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")
    path.write_text(page, encoding="utf-8")
    return path
