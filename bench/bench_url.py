"""URL mode against bytes mode, and a source in storage sent by reference.

The 30-minute 720p video (bench/common.py) through `serve --latency-ms 1500` (in this process,
`--allow-local-urls`), once per mode, each a whole `video-pipeline run --backend clarifai`
process (concurrency 4); moto's standalone server is the storage. Figures: requests sent (serve's
request log), objects and bytes uploaded to storage (moto's access log; the staged chunks'
sizes), bytes sent in requests (chunk bytes in bytes mode; in URL mode the URLs, whose length is
measured on one made the same way), and wall time. Then a 3-minute MP4 with its `moov` at the
end (~70 MB, within the URL limits) put in the bucket and run as s3://bucket/key: what passed
through the client (the ranged reads of its index, from the run's debug log), and whether
anything was staged.

    .venv/bin/python bench/bench_url.py [--sample-ms 1000] [--latency-ms 1500]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from common import OUT, five_minute_720p, sh, thirty_minute_720p  # noqa: E402
from s3_support import MOTO_SERVER, Moto, start, stop  # noqa: E402

from pipeline.serve.inputs import InputLimits  # noqa: E402
from pipeline.serve.server import ServeConfig, Server  # noqa: E402

KEY = "bench-key"
_READ = re.compile(r"probed by ranged reads \((\d+) bytes\)")


def source_video() -> Path:
    """The 30-minute video: a copy of the main checkout's cached one if there is one."""
    cached = Path("/work/main/bench/out/thirty-720p-g60.mp4")
    target = OUT / "thirty-720p-g60.mp4"
    if not target.exists() and cached.exists():
        OUT.mkdir(exist_ok=True)
        shutil.copyfile(cached, target)
    return thirty_minute_720p()


def three_minutes() -> Path:
    """The first 3 minutes of the 5-minute video, stream-copied (moov at the end)."""
    path = OUT / "three-720p-moov-end.mp4"
    if not path.exists():
        five = OUT / "five-720p-g60.mp4"
        cached = Path("/work/main/bench/out/five-720p-g60.mp4")
        if not five.exists() and cached.exists():
            shutil.copyfile(cached, five)
        sh("ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(five_minute_720p()), "-t", "180",
           "-c", "copy", str(path))
    return path


def run(args: list[str], env: dict[str, str],
        ) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall time and the CPU time (user + system) of the run process and its own children
    only (serve's decoders are children of this process too, so not RUSAGE_CHILDREN)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=ROOT, text=True,
                                stdout=out, stderr=err, env={**os.environ, **env})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, done


def requests(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def staged(moto: Moto, bucket: str, prefix: str) -> tuple[int, int]:
    """Objects PUT under the prefix (multipart parts counted once per object), and uploads."""
    lines = moto.writes(bucket, prefix)
    keys = {re.sub(r"\?.*", "", line.split('"')[1].split()[1]) for line in lines}
    return len(keys), len(lines)


def one_mode(mode: str, video: Path, moto: Moto, bucket: str, tmp: Path, args: argparse.Namespace,
             ) -> dict[str, Any]:
    log = tmp / f"requests-{mode}.jsonl"
    server = Server(ServeConfig(port=0, api_key=KEY, latency_ms=args.latency_ms,
                                request_log=str(log),
                                limits=InputLimits(allow_local_urls=True, url_timeout=120)))
    server.start()
    try:
        prefix = f"stage-{mode}"
        extra = ["--mode", "url", "--stage", f"s3://{bucket}/{prefix}"] if mode == "url" else []
        wall, cpu, done = run(["run", str(video), "--out", str(tmp / f"out-{mode}"), "--backend",
                          "clarifai", "--insecure", "--api-base", f"127.0.0.1:{server.port}",
                          "--sample-ms", str(args.sample_ms), "--no-progress", *extra],
                         {**moto.env(), "CLARIFAI_PAT": KEY})
    finally:
        server.stop(grace=1)
    sent = requests(log)
    timeline = json.loads(next((tmp / f"out-{mode}").glob("*/timeline.json")).read_text())
    objects, puts = staged(moto, bucket, prefix) if mode == "url" else (0, 0)
    uploaded = sum(c["size_bytes"] for c in timeline["chunks"]) if mode == "url" else 0
    url_len = len(moto.client().generate_presigned_url("get_object", Params={
        "Bucket": bucket, "Key": f"{prefix}/video-0123456789ab/0123456789/"
                                  "chunk-000000000-000600000.mp4"}, ExpiresIn=1680))
    in_requests = (sum(int(r["size_bytes"]) for r in sent) if mode == "bytes"
                   else url_len * len(sent))
    left = moto.keys(bucket, prefix)
    return {"mode": mode, "chunks": len(timeline["chunks"]), "requests": len(sent),
            "objects": objects, "puts": puts, "uploaded": uploaded, "in_requests": in_requests,
            "wall": wall, "cpu": cpu, "left": len(left),
            "floor": math.ceil(len(sent) / 4) * args.latency_ms / 1000,
            "statuses": sorted({r["status"] for r in sent})}


def by_reference(moto: Moto, bucket: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    video = three_minutes()
    moto.client().upload_file(str(video), bucket, "archive/three.mp4")
    log = tmp / "requests-ref.jsonl"
    server = Server(ServeConfig(port=0, api_key=KEY, latency_ms=args.latency_ms,
                                request_log=str(log),
                                limits=InputLimits(allow_local_urls=True, url_timeout=120)))
    server.start()
    try:
        wall, cpu, done = run(["run", f"s3://{bucket}/archive/three.mp4", "--out", str(tmp / "ref"),
                          "--backend", "clarifai", "--insecure", "--api-base",
                          f"127.0.0.1:{server.port}", "--mode", "url", "--stage",
                          f"s3://{bucket}/stage-ref", "--sample-ms", str(args.sample_ms),
                          "--no-progress", "-vv"], {**moto.env(), "CLARIFAI_PAT": KEY})
    finally:
        server.stop(grace=1)
    found = _READ.search(done.stderr)
    return {"size": video.stat().st_size, "read": int(found.group(1)) if found else -1,
            "requests": len(requests(log)), "staged": len(moto.writes(bucket, "stage-ref")),
            "wall": wall, "cpu": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-ms", type=int, default=1000)
    parser.add_argument("--latency-ms", type=int, default=1500)
    parser.add_argument("--modes", nargs="+", default=["bytes", "url"])
    args = parser.parse_args()
    video = source_video()
    with tempfile.TemporaryDirectory(prefix="bench-url-") as name:
        tmp = Path(name)
        moto = start(MOTO_SERVER, tmp / "moto.log")
        try:
            bucket = moto.bucket()
            rows = [one_mode(m, video, moto, bucket, tmp, args) for m in args.modes]
            ref = by_reference(moto, bucket, tmp, args)
        finally:
            stop(moto)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{video.name}: {video.stat().st_size:,} bytes; serve --latency-ms {args.latency_ms}, "
          f"--sample-ms {args.sample_ms}; load average {load} on {os.cpu_count()} cores")
    print(f"{'mode':>5} {'chunks':>6} {'requests':>8} {'objects':>7} {'uploaded B':>13} "
          f"{'in requests B':>13} {'wall s':>7} {'floor s':>7} {'client CPU s':>12} "
          f"{'left':>4}")
    for r in rows:
        print(f"{r['mode']:>5} {r['chunks']:>6} {r['requests']:>8} {r['objects']:>7} "
              f"{r['uploaded']:>13,} {r['in_requests']:>13,} {r['wall']:>7.1f} "
              f"{r['floor']:>7.1f} {r['cpu']:>12.1f} {r['left']:>4}  statuses {r['statuses']}")
    print("floor: ceil(requests / 4 in flight) x latency, what the requests alone take")
    print(f"s3:// source that fits ({ref['size']:,} B, moov at the end): read through the client "
          f"{ref['read']:,} B ({ref['read'] / ref['size']:.4%}); {ref['requests']} request(s); "
          f"staged writes {ref['staged']}; wall {ref['wall']:.1f} s, client CPU {ref['cpu']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
