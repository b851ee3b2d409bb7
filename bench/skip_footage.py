"""Footage for bench_skip.py, built on demand into bench/out/footage (nothing committed): three
kinds of real footage, each ten minutes, that behave very differently when similar frames are
skipped.

- slides: a slide talk; the 12 photographs of opencv-doc 4.6.0's examples/data (Debian 12;
  Apache-2.0 / BSD-3-Clause), 50 s each, 1280x720 30 fps, camera noise (temporal,
  `noise=alls=6`), a slow exposure drift of +-1.5 %, H.264 at ~1.5 Mbit/s.
- camera: a fixed camera on pedestrians; vtest.avi of the same package, played forwards then
  backwards, looped to 600 s, 768x576 10 fps.
- film: Big Buck Bunny (Blender Foundation, CC-BY-3.0), 596.5 s, 1280x720 24 fps H.264, as
  moviepy 2.2.1's sdist (PyPI) ships it: docs/_static/medias/getting_started/
  moviepy_10_minutes/moviepy_10_minutes.zip, resources/bbb.mp4.

The builders are those of the skip research (slides, camera, film), fetching what they need
with `apt-get download` (bench/footage.py) and `pip download` (an sdist: no install)."""

from __future__ import annotations

import glob
import subprocess
import sys
import tempfile
from pathlib import Path

from common import sh
from footage import FOOTAGE, clips

DL = FOOTAGE / "dl"
PHOTOS = ["leuvenA.jpg", "aloeL.jpg", "baboon.jpg", "fruits.jpg", "building.jpg", "messi5.jpg",
          "basketball1.png", "squirrel_cls.jpg", "chicky_512.png", "rubberwhale1.png",
          "home.jpg", "graf1.png"]
PHOTO_DIR = "usr/share/doc/opencv-doc/examples/data"
SLIDE_S = 50
MOVIEPY = "moviepy==2.2.1"
BBB = ("moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/"
       "moviepy_10_minutes.zip")


def film() -> Path:
    """Big Buck Bunny as moviepy's sdist ships it."""
    path = FOOTAGE / "bbb.mp4"
    if path.exists():
        return path
    DL.mkdir(parents=True, exist_ok=True)
    if not glob.glob(str(DL / "moviepy-2.2.1.tar.gz")):
        sh(sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
           MOVIEPY, "-d", str(DL))
    with tempfile.TemporaryDirectory() as tmp:
        sh("tar", "-xzf", str(DL / "moviepy-2.2.1.tar.gz"), "-C", tmp, BBB)
        sh("unzip", "-q", "-o", "-j", f"{tmp}/{BBB}", "moviepy_10_minutes/resources/bbb.mp4",
           "-d", str(FOOTAGE))
    return path


def _opencv_data() -> Path:
    """opencv-doc's vtest.avi and photographs, unpacked once."""
    data = FOOTAGE / "opencv-data"
    if (data / "vtest.avi").exists():
        return data
    clips()  # fetches opencv-doc's .deb into footage/debs
    deb = glob.glob(str(FOOTAGE / "debs" / "opencv-doc_*.deb"))[0]
    data.mkdir(parents=True, exist_ok=True)
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], check=True,
                         capture_output=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        members = [f"./{PHOTO_DIR}/{p}" for p in [*PHOTOS, "vtest.avi"]]
        subprocess.run(["tar", "-xf", "-", "-C", tmp, *members], input=tar, check=True)
        for p in [*PHOTOS, "vtest.avi"]:
            Path(tmp, PHOTO_DIR, p).rename(data / p)
    return data


def camera() -> Path:
    """vtest.avi forwards and backwards, looped to 600 s: a fixed camera."""
    path = FOOTAGE / "camera.mp4"
    if path.exists():
        return path
    data = _opencv_data()
    graph = ("[0:v]split=2[a][b];[b]reverse[r];[a][r]concat=n=2:v=1:a=0,"
             "loop=loop=3:size=2000,setpts=N/10/TB,format=yuv420p[v]")
    sh("ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(data / "vtest.avi"),
       "-filter_complex", graph, "-map", "[v]", "-t", "600", "-c:v", "libx264", "-preset",
       "veryfast", "-crf", "20", "-g", "50", "-threads", "2", str(path))
    return path


def slides() -> Path:
    """A slide talk: each photograph 50 s, camera noise and exposure drift."""
    path = FOOTAGE / "slides.mp4"
    if path.exists():
        return path
    data = _opencv_data()
    inputs: list[str] = []
    chains = []
    for n, photo in enumerate(PHOTOS):
        inputs += ["-loop", "1", "-framerate", "30", "-t", str(SLIDE_S), "-i", str(data / photo)]
        chains.append(f"[{n}:v]scale=1280:720:force_original_aspect_ratio=decrease,"
                      f"pad=1280:720:(ow-iw)/2:(oh-ih)/2:color=white,setsar=1,format=yuv420p"
                      f"[s{n}]")
    graph = (";".join(chains) + ";" + "".join(f"[s{n}]" for n in range(len(PHOTOS)))
             + f"concat=n={len(PHOTOS)}:v=1:a=0,noise=alls=6:allf=t,"
             "eq=brightness='0.015*sin(2*PI*t/7)':eval=frame[v]")
    sh("ffmpeg", "-v", "error", "-nostdin", "-y", *inputs, "-filter_complex", graph,
       "-map", "[v]", "-t", str(SLIDE_S * len(PHOTOS)), "-c:v", "libx264", "-preset",
       "veryfast", "-b:v", "1500k", "-maxrate", "3000k", "-bufsize", "3000k", "-g", "60",
       "-threads", "2", str(path))
    return path


KINDS = {"slides": slides, "camera": camera, "film": film}
