"""`video-pipeline report`: pages made from timeline.json alone, self-contained, rendered in a
real headless Chromium that must draw something and ask the network for nothing."""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from browser import Browser, looks_blank
from PIL import Image
from test_run import cli

from pipeline.output import timeline
from pipeline.output.report.chart import binned_max
from pipeline.types import Concept, Frame

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CONCEPTS = ["person", "car", "dog", "text", "sfw"]


def synthetic_frames(seconds: int, sample_ms: int) -> list[Frame]:
    """Concepts that come and go at different paces, one at exactly the threshold."""
    out = []
    for i in range(seconds * 1000 // sample_ms):
        t = i * sample_ms + sample_ms // 2
        values = [0.9 if (i // 7) % 2 else 0.1, 0.3 + 0.6 * ((i // 13) % 2), 0.5,
                  (i % 10) / 10, 0.99]
        out.append(Frame(t, tuple(Concept(f"id-{n}", n, v)
                                  for n, v in zip(CONCEPTS, values, strict=True))))
    return out


def write_timeline(vdir: Path, source: str, frames: list[Frame], *, seconds: int,
                   sample_ms: int) -> None:
    quarter = seconds * 250
    head = {"source": {"path": source, "duration_ms": seconds * 1000, "size_bytes": 123456},
            "backend": "clarifai", "model": {"id": "general-image-recognition",
                                             "name": "general"},
            "sample_ms": sample_ms,
            "limits": {"mode": "bytes", "max_bytes": 10_000_000, "max_duration_ms": 600_000},
            "chunks": [{"index": i, "start_ms": i * quarter, "end_ms": (i + 1) * quarter,
                        "size_bytes": 30000, "frames": 50, "reencoded": False,
                        "attempts": [1, 3, 1, 2][i]} for i in range(4)]}
    vdir.mkdir(parents=True)
    (vdir / "timeline.json").write_text("".join(timeline.pieces(head, frames, {})))


@pytest.fixture
def out(tmp_path: Path, small_video: Path) -> Path:
    """A run's --out, made by hand: summary.json, one finished video whose source (the 8 s
    test video) is readable, one failed input."""
    out = tmp_path / "out"
    write_timeline(out / "small-0001", str(small_video), synthetic_frames(8, 100), seconds=8,
                   sample_ms=100)
    inputs = [{"id": "small-0001", "source": str(small_video), "status": "done", "error": None,
               "note": None, "chunks": 4, "resumed": 0, "requests": 7, "seconds": 3.2},
              {"id": None, "source": "bad/<broken>.mp4", "status": "failed",
               "error": "bad/<broken>.mp4: not a readable video", "note": None, "chunks": 0,
               "resumed": 0, "requests": 0, "seconds": 0.1}]
    (out / "summary.json").write_text(json.dumps(
        {"counts": {"done": 1, "skipped": 0, "failed": 1}, "requests": 7, "inputs": inputs}))
    return out


class _Fetches(HTMLParser):
    """Every attribute through which a page could load something, and the inline style."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.links: list[str] = []
        self.tags: set[str] = set()
        self.csp = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.add(tag)
        for name in ("src", "srcset", "poster", "data", "background"):
            if found.get(name):
                self.sources.append(str(found[name]))
        if tag == "a" and found.get("href"):
            self.links.append(str(found["href"]))
        if tag == "link" and found.get("href"):
            self.sources.append(str(found["href"]))
        if tag == "meta" and found.get("http-equiv") == "Content-Security-Policy":
            self.csp = str(found.get("content"))


def parse(page: Path) -> tuple[_Fetches, str]:
    text = page.read_text(encoding="utf-8")
    parser = _Fetches()
    parser.feed(text)
    return parser, text


def test_the_pages_render_in_a_browser_and_fetch_nothing(out: Path, tmp_path: Path) -> None:
    """Headless Chromium renders the video page and the batch page: both draw something, and
    neither asks for anything but itself. A page that does fetch is caught (the control)."""
    vdir = out / "small-0001"
    done = cli("report", str(vdir))
    assert done.returncode == 0, done.stderr
    done = cli("report", str(out))
    assert done.returncode == 0, done.stderr
    control = tmp_path / "control.html"
    control.write_text('<p>control</p><img src="http://example.com/x.png">'
                       f'<img src="{(vdir / "timeline.json").as_uri()}">')
    with Browser() as browser:
        video = browser.render(vdir / "report.html")
        batch = browser.render(out / "report.html", size=(1200, 600))
        caught = browser.render(control, size=(400, 300))
    (tmp_path / "video.png").write_bytes(video.png)
    assert not looks_blank(video.png) and not looks_blank(batch.png)
    assert video.fetched(vdir / "report.html") == []
    assert batch.fetched(out / "report.html") == []
    assert sorted(caught.fetched(control)) == sorted(
        ["http://example.com/x.png", (vdir / "timeline.json").as_uri()])


def test_the_video_page_is_self_contained(out: Path, small_video: Path) -> None:
    """Images are data: URIs (the chart, thumbnails from the readable source), no script, no
    stylesheet link, no web font; a CSP forbids any fetch; segment starts link to the source
    at that instant; facts, retries and the failing input are there."""
    vdir = out / "small-0001"
    assert cli("report", str(vdir)).returncode == 0
    parser, text = parse(vdir / "report.html")
    assert parser.sources and all(s.startswith("data:image/") for s in parser.sources)
    assert sum(s.startswith("data:image/jpeg") for s in parser.sources) >= 2
    assert not parser.tags & {"script", "link", "iframe", "object", "video", "audio"}
    assert "url(" not in text and "@import" not in text and "@font-face" not in text
    assert parser.csp.startswith("default-src 'none'")
    fragment_links = [h for h in parser.links if "#t=" in h]
    assert fragment_links and all(h.startswith("../../") for h in fragment_links)
    assert (vdir / fragment_links[0].split("#")[0]).resolve() == small_video.resolve()
    assert "4, 7 requests (3 retried)" in text and "general-image-recognition" in text


def test_without_the_source_there_are_no_links_and_no_thumbnails(tmp_path: Path) -> None:
    """The page needs nothing but timeline.json: with the source gone it still renders,
    without thumbnails or links to the source."""
    alone = tmp_path / "results" / "gone-0001"
    write_timeline(alone, "/gone/small.mp4", synthetic_frames(8, 100), seconds=8, sample_ms=100)
    done = cli("report", str(alone))
    assert done.returncode == 0, done.stderr
    parser, page = parse(alone / "report.html")
    assert not any(s.startswith("data:image/jpeg") for s in parser.sources)
    assert not any("#t=" in h for h in parser.links)
    assert "not found from here" in page


def test_segments_are_found_again_for_another_min_confidence(out: Path) -> None:
    """With no segments.json the page finds them; at --min-confidence 0.95 only sfw (0.99)
    is present, at the default the concept sitting exactly at 0.5 is too."""
    vdir = out / "small-0001"
    assert cli("report", str(vdir), "--html", str(out / "default.html")).returncode == 0
    assert cli("report", str(vdir), "--min-confidence", "0.95",
               "--html", str(out / "strict.html")).returncode == 0
    default = (out / "default.html").read_text()
    strict = (out / "strict.html").read_text()
    assert "value at least 0.5;" in default and "value at least 0.95;" in strict
    # dog: once in the concepts table, and once more as a segment at the default only
    assert default.count("<td>dog</td>") == 2 and strict.count("<td>dog</td>") == 1


def test_png_writes_the_chart_alone(out: Path, tmp_path: Path) -> None:
    """--png without --html: a PNG of the chart, no page."""
    vdir = out / "small-0001"
    done = cli("report", str(vdir), "--png", str(tmp_path / "chart.png"))
    assert done.returncode == 0, done.stderr
    assert not (vdir / "report.html").exists()
    image = Image.open(io.BytesIO((tmp_path / "chart.png").read_bytes()))
    assert image.format == "PNG" and image.width == 1600 and not looks_blank(
        (tmp_path / "chart.png").read_bytes())


def test_the_batch_page_lists_every_input_and_links_each_video_page(out: Path) -> None:
    """From summary.json: every input with its status and error (escaped), the video's
    duration, and a link to its page, which is made when missing."""
    done = cli("report", str(out))
    assert done.returncode == 0, done.stderr
    parser, text = parse(out / "report.html")
    assert "small-0001/report.html" in parser.links
    assert (out / "small-0001" / "report.html").exists()
    assert "bad/&lt;broken&gt;.mp4: not a readable video" in text
    assert "<td class=num>0:08</td>" in text and "3.2 s" in text


def test_report_on_a_folder_that_is_neither_is_an_error(tmp_path: Path) -> None:
    done = cli("report", str(tmp_path))
    assert done.returncode == 1
    assert "neither a video's results" in done.stderr and "Traceback" not in done.stderr


def test_drawing_keeps_a_one_frame_spike_visible() -> None:
    """Downsampled for drawing by the maximum of each column: one frame at 0.95 among 36,000
    zeros is still 0.95 in the 1,600-column strip."""
    times = np.arange(36_000, dtype=np.int64) * 1000 + 500
    values = np.zeros((1, 36_000))
    values[0, 12_345] = 0.95
    strip, starts = binned_max(values, times, 36_000_000, 1600)
    assert strip.shape == (1, 1600) and strip.max() == 0.95 and len(starts) == 1600


def test_an_empty_timeline_still_gets_a_page_and_a_chart(tmp_path: Path) -> None:
    """A video with no frames: the page says so (0 segments) and the chart is drawn."""
    vdir = tmp_path / "results" / "empty-0001"
    write_timeline(vdir, "/gone/empty.mp4", [], seconds=4, sample_ms=1000)
    done = cli("report", str(vdir), "--html", str(vdir / "report.html"),
               "--png", str(tmp_path / "chart.png"))
    assert done.returncode == 0, done.stderr
    assert "0 segments." in (vdir / "report.html").read_text()
    assert Image.open(tmp_path / "chart.png").format == "PNG"
