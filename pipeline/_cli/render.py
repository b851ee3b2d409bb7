"""Human and JSON renderings of probe and plan results (the CLI prints these)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline import segment
from pipeline.send.strategy import Cost, Strategy
from pipeline.types import Limits, Plan, VideoInfo, to_ms


def _longest_gop_ms(info: VideoInfo) -> int:
    assert info.scan is not None
    keys = info.scan.keyframes + [info.scan.end]
    return max((to_ms(b - a) for a, b in zip(keys, keys[1:], strict=False)), default=0)


def verdicts(info: VideoInfo) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for mode in ("bytes", "url"):
        limits = Limits.for_mode(mode)
        plan = segment.make_plan(info, limits)
        out[mode] = {"fits": plan.whole, "chunks": len(plan.chunks),
                     "max_bytes": limits.max_bytes, "max_duration_ms": limits.max_duration_ms}
    return out


def probe_dict(info: VideoInfo) -> dict[str, Any]:
    assert info.scan is not None
    return {
        "path": info.path, "container": info.container, "size_bytes": info.size_bytes,
        "duration_ms": info.duration_ms, "bit_rate": info.bit_rate,
        "streams": [{"index": s.index, "kind": s.kind, "codec": s.codec, "width": s.width,
                     "height": s.height,
                     "frame_rate": float(s.frame_rate) if s.frame_rate else None,
                     "rotation": s.rotation, "cover_art": s.is_cover_art}
                    for s in info.streams],
        "video_frames": len(info.scan.video),
        "keyframes": len(info.scan.keyframes),
        "longest_keyframe_interval_ms": _longest_gop_ms(info),
        "verdict": verdicts(info),
    }


def probe_text(info: VideoInfo) -> str:
    d = probe_dict(info)
    lines = [f"{d['path']}", f"  container  {d['container']}",
             f"  size       {d['size_bytes']:,} bytes",
             f"  duration   {d['duration_ms'] / 1000:.3f} s",
             f"  bit rate   {(d['bit_rate'] or 0) / 1000:,.0f} kbit/s"]
    for s in d["streams"]:
        extra = ""
        if s["kind"] == "video":
            extra = f" {s['width']}x{s['height']} {s['frame_rate'] or 0:.3f} fps"
            extra += f" rotation {s['rotation']}" if s["rotation"] else ""
            extra += " (cover art)" if s["cover_art"] else ""
        lines.append(f"  stream {s['index']}   {s['kind']} {s['codec']}{extra}")
    lines.append(f"  frames     {d['video_frames']:,} video frames, {d['keyframes']:,} keyframes, "
                 f"longest keyframe interval {d['longest_keyframe_interval_ms'] / 1000:.2f} s")
    for mode, v in d["verdict"].items():
        verdict = "fits, sent whole" if v["fits"] else f"needs {v['chunks']} chunks"
        lines.append(f"  {mode:<5} mode ({v['max_bytes']:,} B, {v['max_duration_ms'] // 1000} s):"
                     f" {verdict}")
    return "\n".join(lines)


def plan_dict(info: VideoInfo, plan: Plan, costs: Sequence[Cost],
              strategy: Strategy) -> dict[str, Any]:
    return {
        "source": info.path, "size_bytes": info.size_bytes, "duration_ms": info.duration_ms,
        "strategy": strategy.name, "strategies": [c.as_dict() for c in costs],
        "frames_billed_note": SKIPPING_NOTE,
        "limits": plan.limits.as_dict(), "whole": plan.whole, "note": plan.reason,
        "lower_bound": plan.lower_bound,
        "chunks": [{"index": c.index, "start_ms": to_ms(c.start - plan.origin),
                    "end_ms": to_ms(c.end - plan.origin), "frames": c.frames,
                    "first_frame": c.first_packet, "expected_bytes": c.expected_bytes,
                    "reencode": c.reencode} for c in plan.chunks],
    }


def plan_text(info: VideoInfo, plan: Plan, costs: Sequence[Cost], strategy: Strategy) -> str:
    d = plan_dict(info, plan, costs, strategy)
    lim = d["limits"]
    head = (f"{info.path}: {info.size_bytes:,} bytes, {info.duration_ms / 1000:.1f} s; "
            f"limits {lim['max_bytes']:,} bytes and {lim['max_duration_ms'] / 1000:g} s "
            f"({lim['mode']} mode)")
    table = costs_text(costs, strategy.name)
    if not strategy.lists_cuts:
        return "\n".join([head, *table])
    if plan.whole:
        return "\n".join([head, f"  {plan.reason}", *table])
    lines = [head, f"  {len(plan.chunks)} chunks (lower bound {plan.lower_bound})"
             + (f"; {plan.reason}" if plan.reason else "")]
    for c in d["chunks"]:
        flag = "  re-encode: one keyframe interval exceeds the limits" if c["reencode"] else ""
        lines.append(f"  {c['index']:4d}  {c['start_ms'] / 1000:9.3f} - {c['end_ms'] / 1000:9.3f} s"
                     f"  {c['frames']:6d} frames  ~{c['expected_bytes']:>11,} bytes{flag}")
    return "\n".join([*lines, *table])


def costs_text(costs: Sequence[Cost], chosen: str) -> list[str]:
    """Each strategy's requests, bytes to send, frames billed and client CPU; `*` marks the
    strategy asked for, `~` an estimate."""
    if not costs:
        return []
    lines = ["  strategy    requests   bytes to send   frames billed   client CPU"]
    for c in costs:
        about = "~" if c.estimated else " "
        mark = "*" if c.strategy == chosen else " "
        lines.append(f"  {mark} {c.strategy:<8} {c.requests:>9,}  {about}{c.bytes:>13,}   "
                     f"{c.frames_billed:>13,}   {about}{c.cpu_seconds:>7.1f} s")
    lines.append("  (frames billed: Clarifai bills each frame it scores; ~: estimated from "
                 "measured rates)")
    lines.append(f"  ({SKIPPING_NOTE})")
    return lines


SKIPPING_NOTE = ("frames billed without --skip-similar: skipping similar frames (compact, "
                 "frames) can only lower it")
