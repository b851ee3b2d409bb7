"""Local prediction speed: video-seconds per wall-second at 1 frame/s on the embedded model.

Measured on the 5-minute 720p30 benchmark video: the whole `run` (probe, split, predict, merge),
and its two costs apart: decoding one frame a second (exact and fast modes) and inference."""

from __future__ import annotations

import shutil
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import five_minute_720p, timed  # noqa: E402

from pipeline import sampling  # noqa: E402
from pipeline.backends import embedded  # noqa: E402
from pipeline.backends.models import NSFW  # noqa: E402
from pipeline.batch.runner import Runner  # noqa: E402
from pipeline.media import decode  # noqa: E402
from pipeline.settings import Settings  # noqa: E402


def end_to_end(src: str, workers: int) -> float:
    out = tempfile.mkdtemp()
    try:
        settings = Settings.from_options(concurrency=workers, progress=False)
        _, seconds = timed(lambda: Runner(settings, out).run([src]))
    finally:
        shutil.rmtree(out)
    return seconds


def decode_rate(src: str, seconds: int, fast: bool) -> float:
    grid = sampling.clarifai_grid(Fraction(seconds), 1000)
    decoded, took = timed(lambda: sum(1 for _ in decode.decode(src, grid, fast=fast)))
    assert decoded == grid.count
    return seconds / took


def inference_rate(batch: int, images: int = 96) -> float:
    classifier = embedded.shared(NSFW)
    rng = np.random.default_rng(0)
    frames_ = [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(batch)]
    classifier.scores(frames_)
    _, took = timed(lambda: [classifier.scores(frames_) for _ in range(images // batch)])
    return images / took


def main() -> None:
    src = str(five_minute_720p())
    duration = 300
    print(f"source: {Path(src).name}, 300 s of 1280x720 at 30 fps, "
          f"{Path(src).stat().st_size:,} bytes")
    for workers in (1, 2):
        seconds = end_to_end(src, workers)
        print(f"run, {workers} chunk(s) at a time: {duration / seconds:.1f}x real time "
              f"({seconds:.1f} s)")
    print(f"decode only, exact frames: {decode_rate(src, duration, False):.1f}x real time")
    print(f"decode only, fast (non-reference frames skipped): "
          f"{decode_rate(src, duration, True):.1f}x real time")
    for batch in (1, 4, 8):
        print(f"inference only, batch {batch}: {inference_rate(batch):.1f} images/s "
              f"(= x real time at 1 frame/s)")


if __name__ == "__main__":
    main()
