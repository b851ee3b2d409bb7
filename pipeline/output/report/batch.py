"""The batch page, DIR/report.html, from DIR/summary.json: every input in input order with its
status, error, duration, chunks, requests and time taken, linking to each finished video's page
(made here when it is missing or older than the video's timeline.json)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pipeline.errors import InputError, PipelineError
from pipeline.output import timeline
from pipeline.output.files import atomic_write_text, read_json
from pipeline.output.report.common import clock, esc, page
from pipeline.output.segments import Rules

log = logging.getLogger(__name__)


def write_batch_report(out_dir: str | Path, rules: Rules, *,
                       html: str | Path | None = None) -> Path:
    """The batch page (DIR/report.html unless `html`), and the video pages it links to."""
    out_dir = Path(out_dir)
    summary = read_json(out_dir / "summary.json")
    if not isinstance(summary, dict) or not isinstance(summary.get("inputs"), list):
        raise InputError(str(out_dir), "no readable summary.json (not a run's --out folder)")
    html_path = Path(html) if html is not None else out_dir / "report.html"
    entries = [e for e in summary["inputs"] if isinstance(e, dict)]
    rows = [_row(n, e, out_dir, html_path, rules) for n, e in enumerate(entries, 1)]
    counts = summary.get("counts") or {}
    said = ", ".join(f"{n} {status}" for status, n in counts.items())
    body = (f"<h1>video-pipeline batch: {esc(out_dir.resolve().name)}</h1>"
            f'<p class="muted">{len(rows)} inputs: {esc(said)}; '
            f"{int(summary.get('requests') or 0):,} requests; frames "
            f"{int(summary.get('frames_sampled') or 0):,} sampled, "
            f"{int(summary.get('frames_billed') or 0):,} billed, "
            f"{int(summary.get('frames_carried') or 0):,} carried</p>"
            "<table><tr><th>#</th><th>input</th><th>status</th><th>error or note</th>"
            "<th class=num>duration</th><th class=num>chunks</th><th class=num>requests</th>"
            "<th class=num>time taken</th><th>report</th></tr>" + "".join(rows) + "</table>")
    atomic_write_text(html_path, page(f"video-pipeline batch: {out_dir.name}", body))
    return html_path


def _row(number: int, entry: dict[str, Any], out_dir: Path, html_path: Path, rules: Rules) -> str:
    status = str(entry.get("status") or "?")
    video_dir = out_dir / str(entry.get("id")) if entry.get("id") else None
    duration, link = "", ""
    if video_dir is not None and (video_dir / "timeline.json").is_file():
        duration = _duration(video_dir)
        link = _video_page(video_dir, html_path, rules)
    why = entry.get("error") or entry.get("note") or ""
    css = ' class="failed"' if status == "failed" else ""
    return (f"<tr{css}><td class=num>{number}</td><td>{esc(entry.get('source', '?'))}</td>"
            f'<td class="{"bad" if status == "failed" else "good"}">{esc(status)}</td>'
            f"<td>{esc(why)}</td><td class=num>{duration}</td>"
            f"<td class=num>{int(entry.get('chunks') or 0):,}</td>"
            f"<td class=num>{int(entry.get('requests') or 0):,}</td>"
            f"<td class=num>{float(entry.get('seconds') or 0):.1f} s</td><td>{link}</td></tr>")


def _duration(video_dir: Path) -> str:
    try:
        head = timeline.read_head(video_dir / "timeline.json")
        return clock(int(head["source"]["duration_ms"]))
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _video_page(video_dir: Path, html_path: Path, rules: Rules) -> str:
    """A link to the video's page, made first if missing or older than its timeline."""
    from pipeline.output.report import write_video_report  # the package imports this module
    report = video_dir / "report.html"
    stale = (not report.exists()
             or report.stat().st_mtime < (video_dir / "timeline.json").stat().st_mtime)
    if stale:
        try:
            write_video_report(video_dir, rules)
        except (PipelineError, OSError) as exc:
            log.error("%s: no report: %s", video_dir.name, exc)
            return "no page: " + esc(exc)
    href = os.path.relpath(report, html_path.resolve().parent)
    return f'<a href="{esc(Path(href).as_posix())}">page</a>'
