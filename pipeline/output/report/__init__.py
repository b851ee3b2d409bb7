"""`video-pipeline report`: one video's page (and chart) from its timeline.json alone, and the
batch page from summary.json. Pages are self-contained HTML: the chart and thumbnails are inline
images, the style is inline, and a Content-Security-Policy forbids any fetch."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.output.files import atomic_write_bytes, atomic_write_text
from pipeline.output.report import chart, data, page
from pipeline.output.report.batch import write_batch_report
from pipeline.output.report.thumbs import thumbnails
from pipeline.output.segments import Rules

__all__ = ["write_batch_report", "write_video_report"]


def write_video_report(video_dir: str | Path, rules: Rules, *, html: str | Path | None = None,
                       png: str | Path | None = None) -> None:
    """report.html for DIR/VIDEO_ID (or `html`), and the chart alone as `png` if given; with
    only `png`, no page. Thumbnails are cut while the chart is drawn."""
    video_dir = Path(video_dir)
    loaded = data.load(video_dir, rules)
    source = page.source_file(loaded, video_dir)
    with ThreadPoolExecutor(1, thread_name_prefix="thumbs") as pool:
        wanted = html is not None or png is None
        times = page.thumbnail_times(loaded) if source is not None and wanted else []
        pending = pool.submit(thumbnails, source, times) if times and source else None
        chart_png = chart.render_png(loaded)
        thumbs = pending.result() if pending is not None else {}
    if png is not None:
        atomic_write_bytes(png, chart_png)
    if not wanted:
        return
    html_path = Path(html) if html is not None else video_dir / "report.html"
    atomic_write_text(html_path, page.render(
        loaded, video_id=video_dir.resolve().name, chart_png=chart_png, thumbs=thumbs,
        href=page.source_href(source, html_path)))
