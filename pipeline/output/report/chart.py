"""The concept-by-time chart (matplotlib, Agg, no pyplot): a heat strip of the top concepts'
values over time, their segments as bars, and the chunks on the same time axis coloured by
the requests each took. Drawn, not counted, is downsampled: the strip has at most one column
per pixel (each the bin's maximum, so a short event stays visible), and segments closer than a
pixel are drawn as one bar. Fonts are matplotlib's bundled DejaVu Sans."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from pipeline.output.report.common import clock
from pipeline.output.report.data import VideoData

if TYPE_CHECKING:
    from matplotlib.axes import Axes

WIDTH_PX = 1600
TOP = 12  # concepts drawn
ATTEMPT_COLOURS = {1: "#9bb7d4", 2: "#f0a030", 3: "#e0602a"}
MANY_ATTEMPTS = "#b2182b"


def top_concepts(data: VideoData, count: int = TOP) -> list[int]:
    """Columns of the concepts present longest (segment time), then highest mean value."""
    total = {c.id: c.total_ms for c in data.concepts}
    means = data.values.mean(axis=0) if len(data.times) else np.zeros(len(data.ids))
    order = sorted(range(len(data.ids)), key=lambda j: (-total.get(data.ids[j], 0), -means[j]))
    return order[:count]


def binned_max(values: np.ndarray, times: np.ndarray, duration_ms: int, bins: int) -> tuple[
        np.ndarray, np.ndarray]:
    """(columns, their start times): `values` (concepts x frames) reduced to at most `bins`
    columns by maximum, each column the frames of one equal stretch of time."""
    if values.shape[1] <= bins:
        return values, times
    edges = np.linspace(0, duration_ms, bins + 1)[:-1]
    first = np.unique(np.searchsorted(times, edges, side="left"))
    first = first[first < len(times)]
    return np.maximum.reduceat(values, first, axis=1), times[first]


def render_png(data: VideoData) -> bytes:
    """The chart as PNG bytes."""
    # matplotlib is slow to import: only a video's chart needs it, not a batch's page
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    top = top_concepts(data)
    rows = max(1, len(top))
    with matplotlib.rc_context({"font.family": "DejaVu Sans", "font.size": 8}):
        fig = Figure(figsize=(WIDTH_PX / 100, 1.6 + 0.36 * rows), dpi=100, layout="constrained")
        heat, bars, chunks = fig.subplots(3, 1, sharex=True, height_ratios=[rows, rows, 1.4])
        _heat(heat, data, top)
        _segments(bars, data, top)
        _chunks(chunks, data.chunks, data.duration_ms)
        canvas = FigureCanvasAgg(fig)
        # matplotlib annotates neither method of FigureCanvasAgg
        canvas.draw()  # type: ignore[no-untyped-call]
        pixels = np.asarray(canvas.buffer_rgba())[..., :3]  # type: ignore[no-untyped-call]
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", compress_level=6)  # no second render
    return buf.getvalue()


def _heat(ax: Axes, data: VideoData, top: list[int]) -> None:
    seconds = data.duration_ms / 1000
    names = [data.names[j] for j in top]
    if top and len(data.times):
        strip, starts = binned_max(np.ascontiguousarray(data.values[:, top].T), data.times,
                                   data.duration_ms, WIDTH_PX)
        edges = np.append(np.maximum(starts - data.sample_ms // 2, 0), data.duration_ms) / 1000
        ax.pcolormesh(edges, np.arange(len(top) + 1), strip, cmap="viridis", vmin=0, vmax=1,
                      shading="flat", rasterized=True)
    ax.set_ylim(max(1, len(top)), 0)
    ax.set_yticks(np.arange(len(top)) + 0.5, names)
    ax.set_xlim(0, seconds)
    label = "per frame" if len(data.times) <= WIDTH_PX else "maximum per column"
    ax.set_title(f"concept values over time ({label}; 0 dark, 1 yellow)", loc="left")


def _segments(ax: Axes, data: VideoData, top: list[int]) -> None:
    by_id = {c.id: c for c in data.concepts}
    pixel_ms = data.duration_ms / WIDTH_PX
    colours = [f"C{i % 10}" for i in range(len(top))]
    for row, j in enumerate(top):
        concept = by_id.get(data.ids[j])
        if concept is None or not concept.segments:
            continue
        spans = _merged_spans([s.start_ms for s in concept.segments],
                              [s.end_ms for s in concept.segments], pixel_ms)
        ax.broken_barh([(s / 1000, max(e - s, pixel_ms) / 1000) for s, e in spans],
                       (row + 0.15, 0.7), facecolors=colours[row], linewidth=0)
    ax.set_ylim(max(1, len(top)), 0)
    ax.set_yticks(np.arange(len(top)) + 0.5, [data.names[j] for j in top])
    count = sum(len(c.segments) for c in data.concepts)
    ax.set_title(f"segments (value ≥ {data.rules.min_confidence:g}): {count:,} in all",
                 loc="left")


def _merged_spans(starts: Sequence[int], ends: Sequence[int],
                  pixel_ms: float) -> list[tuple[int, int]]:
    """Spans closer than a pixel joined (drawing only: the table and counts use them all)."""
    spans: list[tuple[int, int]] = []
    for start, end in zip(starts, ends, strict=True):
        if spans and start - spans[-1][1] < pixel_ms:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def _chunks(ax: Axes, chunks: list[dict[str, Any]], duration_ms: int) -> None:
    by_attempts: dict[int, list[tuple[float, float]]] = {}
    for c in chunks:
        span = (c["start_ms"] / 1000, max(c["end_ms"] - c["start_ms"], 1) / 1000)
        by_attempts.setdefault(int(c.get("attempts", 1)), []).append(span)
    for attempts, spans in sorted(by_attempts.items()):
        colour = ATTEMPT_COLOURS.get(attempts, MANY_ATTEMPTS)
        label = f"{attempts} request" + ("s" if attempts > 1 else "")
        ax.broken_barh(spans, (0.1, 0.8), facecolors=colour, edgecolor="white",
                       linewidth=0.4, label=label)
    retries = sum(int(c.get("attempts", 1)) - 1 for c in chunks)
    ax.set_title(f"chunks: {len(chunks)}, {retries} retried requests", loc="left")
    if by_attempts:
        ax.legend(loc="lower right", bbox_to_anchor=(1, 1.0), ncols=len(by_attempts),
                  frameon=False)
    ax.set_yticks([])
    ax.set_ylim(0, 1)
    _time_axis(ax, duration_ms)


_TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)


def _time_axis(ax: Axes, duration_ms: int) -> None:
    from matplotlib.ticker import FuncFormatter, MultipleLocator  # as in render_png
    seconds = duration_ms / 1000
    step = next((s for s in _TICK_STEPS_S if seconds / s <= 14), 43200)
    ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: clock(x * 1000)))
    ax.set_xlim(0, duration_ms / 1000)
    ax.set_xlabel("time (h:mm:ss)")
