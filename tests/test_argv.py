"""ffmpeg command lines are built by pure functions: checked here without running ffmpeg."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pipeline.media import ffargs
from pipeline.media.decode import decode_argv
from pipeline.media.proc import media_input
from pipeline.sampling import Grid
from pipeline.types import Limits, StreamInfo, VideoInfo

pytestmark = pytest.mark.pure


def info(path: str = "in.mkv", audio: str | None = "aac") -> VideoInfo:
    streams = [StreamInfo(0, "video", "h264", Fraction(1, 1000))]
    if audio:
        streams.append(StreamInfo(1, "audio", audio, Fraction(1, 48000)))
    return VideoInfo(path, 1, 1, "matroska,webm", None, tuple(streams))


def after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_local_files_go_through_the_file_protocol_and_urls_as_they_are() -> None:
    """A name like -version.mp4 or http:x.mp4 is a file; a URL stays a URL."""
    assert media_input("-version.mp4") == "file:-version.mp4"
    assert media_input("http:x.mp4") == "file:http:x.mp4"
    assert media_input("https://h/x.mp4?sig=1") == "https://h/x.mp4?sig=1"


def test_reencoding_is_single_threaded_and_bitexact() -> None:
    """One encoder thread and no version strings: the same input gives the same bytes."""
    argv = ffargs.reencode_argv("-a.mp4", "/w/b.mp4", Limits("bytes", 1_000_000, 600_000))
    assert after(argv, "-threads") == "1"
    assert "+bitexact" in argv and after(argv, "-i") == "file:-a.mp4"
    assert argv[-1] == "file:/w/b.mp4"


def test_reencode_rate_cap_fits_four_gops_and_halves_when_nested() -> None:
    """maxrate x 4 GOPs fits the budget; a re-encode inside a re-encode gets half the rate."""
    limits = Limits("bytes", 1_000_000, 600_000)
    top = int(after(ffargs.reencode_argv("a", "b", limits, overhead=0), "-maxrate"))
    assert top * 4 * 2 / 8 <= 1_000_000 < (top + 1000) * 4 * 2 / 8
    nested = int(after(ffargs.reencode_argv("a", "b", limits, overhead=0, depth=2), "-maxrate"))
    assert nested == top // 2
    assert after(ffargs.reencode_argv("a", "b", limits), "-force_key_frames") == \
        "expr:gte(t,n_forced*2.0)"


def test_segment_pass_cuts_by_frame_number_and_copies_audio_only_when_kept() -> None:
    """Cuts are decode-order frame numbers; audio is dropped unless kept; no cut list means one
    segment, never the muxer's 2 s default."""
    argv = ffargs.segment_argv(info(), [30, 60], False, "out/part-%05d.mp4")
    assert after(argv, "-segment_frames") == "30,60" and "-an" in argv
    kept = ffargs.segment_argv(info(), [30], True, "p%d.mp4")
    assert after(kept, "-c:a") == "copy" and "-an" not in kept
    transcoded = ffargs.segment_argv(info(audio="pcm_s16le"), [30], True, "p%d.mp4")
    assert after(transcoded, "-c:a") == "aac"
    whole = ffargs.segment_argv(info(), [], False, "p%d.mp4")
    assert "-segment_frames" not in whole and after(whole, "-segment_time") == "1000000000"


def test_decode_samples_the_grid_with_the_last_frame_held() -> None:
    """The fps filter runs at the grid's rate from its first instant; the last frame is held two
    steps so that a short video still yields its sample."""
    argv = decode_argv("v.mp4", Grid(Fraction(1, 2), Fraction(1), 7), threads=1)
    vf = after(argv, "-vf")
    assert vf.startswith("tpad=stop_mode=clone:stop_duration=2.000000,")
    assert "setpts=PTS-STARTPTS-0.500000/TB" in vf and "fps=fps=1/1:round=up" in vf
    assert after(argv, "-frames:v") == "7" and after(argv, "-i") == "file:v.mp4"


def test_first_frame_check_makes_decode_errors_fatal() -> None:
    argv = ffargs.first_frames_argv(["a.mp4", "b.mp4"])
    assert "-xerror" in argv and argv.count("-frames:v") == 2
