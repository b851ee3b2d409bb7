"""One video's report page: the source's facts, the chart, the concepts, thumbnails at segment
starts, the segments (times linking to the source at that instant when it can be reached) and
the chunks. Every image is inline; the page fetches nothing."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from urllib.parse import quote

from pipeline.output.report.common import clock, clock_ms, esc, page
from pipeline.output.report.data import VideoData
from pipeline.output.segments import Segment, by_time, in_time_order

MAX_ROWS = 2000  # segments listed; all are counted, and all are in segments.csv
THUMBS = 24  # thumbnails, at the starts of the longest segments


def source_file(data: VideoData, video_dir: Path) -> Path | None:
    """The source as a local file that exists: its path as the run was given it, from here or
    from beside the results folder; None for URLs and sources not found."""
    path = str(data.head.get("source", {}).get("path") or "")
    if not path or "://" in path:
        return None
    for candidate in (Path(path), video_dir.parent.parent / path):
        if candidate.is_file():
            return candidate.resolve()
    return None


def thumbnail_times(data: VideoData) -> list[int]:
    """Start times (ms) of the longest segments, in time order, for thumbnails."""
    every = [s for c in data.concepts for s in c.segments]
    return sorted({s.start_ms for s in _longest(every, THUMBS)})


def _longest(segments: list[Segment], count: int) -> list[Segment]:
    """The `count` longest segments (earlier first among equals)."""
    return sorted(segments, key=lambda s: (-s.duration_ms, s.start_ms))[:count]


def source_href(source: Path | None, html_path: Path) -> str | None:
    """A link to the source relative to the page (the pair can move together), else None."""
    if source is None:
        return None
    try:
        rel = os.path.relpath(source, html_path.resolve().parent)
    except ValueError:
        return source.as_uri()
    return quote(Path(rel).as_posix())


def render(data: VideoData, *, video_id: str, chart_png: bytes, thumbs: dict[int, bytes],
           href: str | None) -> str:
    name = str(data.head.get("source", {}).get("path") or video_id)
    body = [f"<h1>{esc(os.path.basename(name) or name)}</h1>",
            f'<p class="muted">video-pipeline report for {esc(video_id)}</p>',
            _facts(data, href), "<h2>Concepts over time</h2>",
            f'<img class="chart" alt="concepts over time" src="{_data_uri(chart_png, "png")}">',
            _concepts(data), _thumbs(thumbs, data, href), _segments(data, href),
            _chunks(data)]
    return page(f"{os.path.basename(name)}: video-pipeline report", "\n".join(body))


def _data_uri(data: bytes, kind: str) -> str:
    return f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}"


def _facts(data: VideoData, href: str | None) -> str:
    head, source = data.head, data.head.get("source", {})
    model = head.get("model") or {}
    limits = head.get("limits") or {}
    requests = sum(int(c.get("attempts", 1)) for c in data.chunks)
    path = esc(source.get("path", "?"))
    shown = f'<a href="{esc(href)}">{path}</a>' if href else f"{path} (not found from here)"
    rows = [("source", shown), ("duration", clock_ms(int(source.get("duration_ms") or 0))),
            ("size", f"{int(source.get('size_bytes') or 0):,} bytes"),
            ("backend", esc(head.get("backend", "?"))),
            ("model", esc(f"{model.get('name', '?')} ({model.get('id', '?')})")),
            ("sampling", f"one frame every {data.sample_ms} ms; {len(data.times):,} frames, "
                         f"{len(data.ids)} concepts"),
            ("limits", esc(f"{limits.get('mode', '?')} mode, {limits.get('max_bytes', 0):,} "
                           f"bytes, {limits.get('max_duration_ms', 0) / 1000:g} s a request")),
            ("chunks", f"{len(data.chunks)}, {requests} requests "
                       f"({requests - len(data.chunks)} retried)"),
            *_billing(data),
            ("segments", esc(f"value at least {data.rules.min_confidence:g}; gaps up to "
                             f"{data.rules.gap_ms(data.sample_ms)} ms bridged; shorter than "
                             f"{data.rules.min_segment_ms} ms dropped"))]
    return '<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _billing(data: VideoData) -> list[tuple[str, str]]:
    """What the video billed, and for a video that skipped similar frames, what it carried and
    what its audit found (and where its threshold tightened)."""
    skipping = data.head.get("skipping")
    if not isinstance(skipping, dict):
        return [("billing", f"{len(data.times):,} frames sampled, each sent (billed once)")]
    sampled, sent = int(skipping.get("frames_sampled", 0)), int(skipping.get("frames_sent", 0))
    audit = skipping.get("audit") or {}
    n = int(audit.get("frames", 0))
    rows = [("billing", f"{sampled:,} frames sampled, {sent:,} sent (billed once each: "
                        f"{100 * sent / max(sampled, 1):.1f}%), "
                        f"{int(skipping.get('frames_carried', 0)):,} carried from the last "
                        "frame sent (--skip-similar)"),
            ("audit", f"{n:,} carried frames sent anyway: same label on "
                      f"{100 * float(audit.get('same_label', 1)):.1f}%, mean absolute "
                      f"difference {float(audit.get('mean_abs_diff', 0)):.4f}" if n else
                      "no carried frame was audited")]
    for t in audit.get("tightened") or []:
        rows.append(("tightened", esc(f"the audit disagreed: threshold {t['threshold']:g} "
                                      f"from {clock_ms(int(t['from_ms']))} on")))
    return rows


def _concepts(data: VideoData) -> str:
    duration = max(data.duration_ms, 1)
    rows = []
    for j, concept in enumerate(data.concepts):
        column = data.values[:, data.ids.index(concept.id)] if len(data.times) else None
        top = float(column.max()) if column is not None else 0.0
        mean = float(column.mean()) if column is not None else 0.0
        rows.append((concept.total_ms, j, f"<tr><td>{esc(concept.name)}</td>"
                     f'<td class="num">{len(concept.segments):,}</td>'
                     f'<td class="num">{clock(concept.total_ms)}</td>'
                     f'<td class="num">{100 * concept.total_ms / duration:.1f}%</td>'
                     f'<td class="num">{top:.3f}</td><td class="num">{mean:.3f}</td></tr>'))
    rows.sort(key=lambda r: (-r[0], r[1]))
    return ("<h2>Concepts</h2><table><tr><th>concept</th><th class=num>segments</th>"
            "<th class=num>present</th><th class=num>of the video</th>"
            "<th class=num>highest value</th><th class=num>mean value</th></tr>"
            + "".join(r[2] for r in rows) + "</table>")


def _at(href: str | None, ms: int, text: str) -> str:
    """`text` linking to the source at `ms` (a media fragment), or plain without a source."""
    if not href:
        return esc(text)
    return f'<a href="{esc(href)}#t={ms / 1000:.3f}">{esc(text)}</a>'


def _thumbs(thumbs: dict[int, bytes], data: VideoData, href: str | None) -> str:
    if not thumbs:
        return ""
    names: dict[int, list[str]] = {}
    for s in (s for c in data.concepts for s in c.segments if s.start_ms in thumbs):
        names.setdefault(s.start_ms, []).append(s.concept_name)
    figures = [f'<figure><img alt="frame at {clock_ms(ms)}" src="{_data_uri(jpeg, "jpeg")}">'
               f"<figcaption>{_at(href, ms, clock_ms(ms))} "
               f"{esc(', '.join(sorted(set(names.get(ms, [])))))}</figcaption></figure>"
               for ms, jpeg in sorted(thumbs.items())]
    return ("<h2>At the start of the longest segments</h2>"
            f'<div class="thumbs">{"".join(figures)}</div>')


def _segments(data: VideoData, href: str | None) -> str:
    every = in_time_order(data.concepts)
    shown: list[Segment] = every
    note = f"{len(every):,} segment" + ("" if len(every) == 1 else "s")
    if len(every) > MAX_ROWS:
        shown = by_time(_longest(every, MAX_ROWS))
        note += f"; the {MAX_ROWS:,} longest listed (all of them are in segments.csv)"
    rows = "".join(
        f"<tr><td>{_at(href, s.start_ms, clock_ms(s.start_ms))}</td>"
        f"<td>{clock_ms(s.end_ms)}</td><td class=num>{s.duration_ms / 1000:.1f} s</td>"
        f"<td>{esc(s.concept_name)}</td><td class=num>{s.max_value:.3f}</td>"
        f"<td class=num>{s.mean_value:.3f}</td><td class=num>{s.frames:,}</td></tr>"
        for s in shown)
    link = " Start times open the source at that instant." if href else ""
    return (f'<h2>Segments</h2><p class="muted">{note}.{link}</p><table><tr><th>start</th>'
            "<th>end</th><th class=num>duration</th><th>concept</th><th class=num>max</th>"
            f"<th class=num>mean</th><th class=num>frames</th></tr>{rows}</table>")


def _chunks(data: VideoData) -> str:
    rows = "".join(
        f'<tr{" class=failed" if int(c.get("attempts", 1)) > 1 else ""}>'
        f"<td class=num>{int(c.get('index', i))}</td><td>{clock_ms(int(c['start_ms']))}</td>"
        f"<td>{clock_ms(int(c['end_ms']))}</td>"
        f"<td class=num>{int(c.get('size_bytes') or 0):,}</td>"
        f"<td class=num>{int(c.get('frames') or 0):,}</td>"
        f"<td class=num>{int(c.get('attempts', 1))}</td>"
        f"<td>{'re-encoded' if c.get('reencoded') else ''}</td></tr>"
        for i, c in enumerate(data.chunks))
    return ("<h2>Chunks</h2><p class=muted>Each chunk was one request, or more when retried "
            "(highlighted).</p><table><tr><th class=num>chunk</th><th>start</th><th>end</th>"
            "<th class=num>bytes</th><th class=num>video frames</th>"
            f"<th class=num>requests</th><th></th></tr>{rows}</table>")
