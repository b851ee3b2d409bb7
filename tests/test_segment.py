"""Splitting real video with the real ffmpeg: chunks fit, no frame is lost, starts are measured."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from media import ffprobe_count, ffprobe_duration

from pipeline import segment
from pipeline.errors import InputError
from pipeline.plan import Overhead
from pipeline.probe import probe
from pipeline.segment import SegmentOptions, split
from pipeline.send.media import ChunkMedia
from pipeline.types import Chunk, Limits

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMALL = Limits("bytes", 400_000, 600_000)


def assert_fits_and_conserves(source: Path, chunks: list[Chunk], limits: Limits) -> None:
    """Every chunk is within both limits, and the chunks' frames add up to the source's."""
    for chunk in chunks:
        assert Path(chunk.path).stat().st_size == chunk.size_bytes
        assert chunk.size_bytes <= limits.max_bytes, chunk
        assert ffprobe_duration(chunk.path) <= limits.max_duration_ms / 1000 + 1e-6
    assert sum(ffprobe_count(c.path) for c in chunks) == ffprobe_count(source)


def assert_contiguous(chunks: list[Chunk]) -> None:
    """Each chunk starts where the previous one ends, and its length is its file's length."""
    assert chunks[0].start == 0
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.end == b.start
    for c in chunks:
        assert abs(ffprobe_duration(c.path) - float(c.duration)) < 0.002


def test_vbr_video_splits_under_a_small_budget(vbr_video: Path, tmp_path: Path) -> None:
    """Variable bit rate, 400 kB budget: all chunks fit, frames conserved, starts contiguous."""
    info = probe(str(vbr_video))
    chunks = split(info, SMALL, str(tmp_path))
    assert len(chunks) >= 4
    assert_fits_and_conserves(vbr_video, chunks, SMALL)
    assert_contiguous(chunks)
    assert not any(c.reencoded for c in chunks)


def test_chunk_count_is_close_to_the_lower_bound(vbr_video: Path, tmp_path: Path) -> None:
    """Greedy packing by real packet bytes: at most one chunk over ceil(video bytes / budget)
    when keyframe intervals are small against the budget."""
    info = probe(str(vbr_video))
    assert info.scan is not None
    video_bytes = sum(p.size for p in info.scan.video)
    limits = Limits("bytes", 1_000_000, 600_000)
    chunks = split(info, limits, str(tmp_path))
    assert len(chunks) <= -(-video_bytes // limits.max_bytes) + 1
    assert max(c.size_bytes for c in chunks[:-1]) > 0.85 * limits.max_bytes


def test_duration_limit_is_honoured(vbr_video: Path, tmp_path: Path) -> None:
    """A 7 s limit on a 30 s video: every chunk at most 7 s, none lost."""
    limits = Limits("bytes", 10_000_000, 7_000)
    chunks = split(probe(str(vbr_video)), limits, str(tmp_path))
    assert len(chunks) == 5
    assert_fits_and_conserves(vbr_video, chunks, limits)


def test_a_video_that_fits_is_sent_whole_untouched(small_video: Path, tmp_path: Path) -> None:
    """No chunk file is written: the one chunk is the source itself."""
    chunks = split(probe(str(small_video)), Limits(), str(tmp_path))
    assert [c.path for c in chunks] == [str(small_video)]
    assert list(tmp_path.iterdir()) == []


def test_long_gop_stretch_is_reencoded_to_fit(long_gop_video: Path, tmp_path: Path) -> None:
    """One 12 s keyframe interval of ~3 MB under a 500 kB budget is re-encoded, then fits."""
    limits = Limits("bytes", 500_000, 600_000)
    info = probe(str(long_gop_video))
    assert segment.make_plan(info, limits).chunks[0].reencode
    chunks = split(info, limits, str(tmp_path))
    assert len(chunks) >= 2 and all(c.reencoded for c in chunks)
    assert_fits_and_conserves(long_gop_video, chunks, limits)
    assert_contiguous(chunks)


def test_keep_audio_keeps_the_audio_track(vbr_video: Path, tmp_path: Path) -> None:
    """With keep_audio the chunks carry audio and still fit; by default they do not."""
    limits = Limits("bytes", 600_000, 600_000)
    with_audio = split(probe(str(vbr_video), keep_audio=True), limits, str(tmp_path / "a"),
                       SegmentOptions(keep_audio=True))
    without = split(probe(str(vbr_video)), limits, str(tmp_path / "v"))
    assert probe(with_audio[0].path, scan=False).audio is not None
    assert probe(without[0].path, scan=False).audio is None
    assert_fits_and_conserves(vbr_video, with_audio, limits)


@pytest.mark.parametrize("name", ["msmpeg4.avi", "cinepak.avi", "rotated.mp4", "vfr.mkv",
                                  "offset.ts", "vp9.webm", "h264.mkv", "audio-first.mp4"])
def test_odd_containers_and_codecs_split_into_fitting_chunks(
        name: str, odd_videos: dict[str, Path], tmp_path: Path) -> None:
    """Each odd input becomes MP4 chunks within the limits with every frame kept (codecs MP4
    cannot carry are transcoded to H.264 first, so they may need fewer chunks)."""
    source = odd_videos[name]
    info = probe(str(source))
    limits = Limits("bytes", max(100_000, info.size_bytes // 3), 600_000)
    chunks = split(info, limits, str(tmp_path))
    assert len(chunks) >= (2 if segment.copyable(info) else 1)
    assert all(c.reencoded for c in chunks) != segment.copyable(info)
    assert_fits_and_conserves(source, chunks, limits)
    assert chunks[0].start == 0
    assert abs(float(chunks[-1].end) - info.duration_ms / 1000) < 0.05


def test_rotation_survives_stream_copy(odd_videos: dict[str, Path], tmp_path: Path) -> None:
    """A 90-degree rotated source gives chunks that still say they are rotated."""
    info = probe(str(odd_videos["rotated.mp4"]))
    assert info.video.rotation in (90, 270)
    chunks = split(info, Limits("bytes", info.size_bytes // 3, 600_000), str(tmp_path))
    assert probe(chunks[0].path, scan=False).video.rotation == info.video.rotation


def test_transport_stream_start_offset_is_time_zero(odd_videos: dict[str, Path]) -> None:
    """An MPEG-TS whose clock starts at ~8.9 s still maps its first frame to time 0."""
    info = probe(str(odd_videos["offset.ts"]))
    assert info.scan is not None and info.scan.origin > 5
    assert abs(info.duration_ms - 12_000) < 100


def decoded_frame_hashes(path: str | Path) -> list[str]:
    """The MD5 of every decoded video frame, in display order (ffmpeg's framemd5 muxer)."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-f",
                          "framemd5", "-"], capture_output=True, text=True, check=True).stdout
    return [line.rsplit(",", 1)[-1].strip() for line in out.splitlines()
            if line and not line.startswith("#")]


@pytest.mark.parametrize("name", ["vbr", "rotated.mp4", "audio-first.mp4"])
def test_directly_written_mp4_chunks_decode_to_the_source_frames(
        name: str, vbr_video: Path, odd_videos: dict[str, Path], tmp_path: Path) -> None:
    """MP4 chunks written from the sample table (no muxer) decode, chunk after chunk, to exactly
    the source's frames: B-frames, an edit list, rotation and audio as stream 0 included."""
    source = vbr_video if name == "vbr" else odd_videos[name]
    info = probe(str(source))
    assert info.table is not None  # the direct path is taken
    chunks = split(info, Limits("bytes", max(150_000, info.size_bytes // 4), 600_000),
                   str(tmp_path))
    assert len(chunks) >= 3
    assert sum((decoded_frame_hashes(c.path) for c in chunks), []) == decoded_frame_hashes(source)
    rotation = probe(chunks[1].path, scan=False).video.rotation
    assert rotation == info.video.rotation


def test_a_chunk_that_does_not_decode_fails_the_video(vbr_video: Path, tmp_path: Path) -> None:
    """Garbage over the first keyframe's data: the index still reads, the cut still happens, but
    the decode check of the first chunk fails the video with a message saying so."""
    broken = tmp_path / "broken.mp4"
    data = bytearray(vbr_video.read_bytes())
    info = probe(str(vbr_video))
    assert info.table is not None
    first = info.table.offsets[0]
    data[first + 8:first + 4008] = bytes(range(256)) * 15 + bytes(160)
    broken.write_bytes(bytes(data))
    with pytest.raises(InputError, match="does not decode"):
        split(probe(str(broken)), SMALL, str(tmp_path / "chunks"))


@pytest.mark.parametrize("name", ["long_gop", "msmpeg4.avi", "h264.mkv"])
def test_the_same_input_gives_byte_identical_chunks(
        name: str, long_gop_video: Path, odd_videos: dict[str, Path], tmp_path: Path) -> None:
    """Split twice (re-encoded stretches, a transcode, the segment muxer): the same bytes, so a
    resumed run equals an uninterrupted one."""
    video = long_gop_video if name == "long_gop" else odd_videos[name]
    limits = Limits("bytes", 500_000, 600_000)
    runs = [split(probe(str(video)), limits, str(tmp_path / str(n))) for n in range(2)]
    assert len(runs[0]) >= 2
    first, second = ([Path(c.path).read_bytes() for c in chunks] for chunks in runs)
    assert first == second


def test_in_memory_chunks_are_the_bytes_split_writes(vbr_video: Path, tmp_path: Path) -> None:
    """`run` cuts an MP4 in memory: the same chunks as `split` writes, byte for byte, built
    from the source's samples when sent, with nothing written."""
    limits = Limits("bytes", 400_000, 600_000)
    info = probe(str(vbr_video))
    written = split(info, limits, str(tmp_path / "files"))
    described = split(info, limits, str(tmp_path / "memory"), in_memory=True)
    assert not (tmp_path / "memory").exists() or not list((tmp_path / "memory").iterdir())
    assert [(c.start, c.end, c.size_bytes, c.frames) for c in described] == \
        [(c.start, c.end, c.size_bytes, c.frames) for c in written]
    media = ChunkMedia(info.table)
    assert all(c.packets and c.path == str(vbr_video) for c in described)
    assert [media.build(c) for c in described] == [Path(c.path).read_bytes() for c in written]


def test_an_in_memory_chunk_is_cut_again_in_memory(vbr_video: Path, tmp_path: Path) -> None:
    """A chunk the API calls too large is re-cut from the source's samples: pieces that fit,
    cover the chunk exactly, and are the bytes a file split would give."""
    info = probe(str(vbr_video))
    (chunk, *_) = split(info, Limits("bytes", 800_000, 600_000), str(tmp_path), in_memory=True)
    smaller = Limits("bytes", 300_000, 600_000)
    pieces = segment.resplit(chunk, smaller, str(tmp_path), source=info)
    assert len(pieces) >= 2 and all(p.packets and p.size_bytes <= 300_000 for p in pieces)
    assert pieces[0].start == chunk.start and pieces[-1].end == chunk.end
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:], strict=False))
    assert sum(p.frames for p in pieces) == chunk.frames
    first, last = chunk.packets or (0, 0)
    assert (pieces[0].packets or (0, 0))[0] == first and (pieces[-1].packets or (0, 0))[1] == last


@pytest.mark.parametrize("in_memory", [False, True])
def test_a_chunk_that_comes_out_over_the_limit_is_cut_again(
        vbr_video: Path, tmp_path: Path, in_memory: bool,
        caplog: pytest.LogCaptureFixture) -> None:
    """Planned with no allowance for MP4 overhead, chunks packed to the limit come out over it:
    each is planned again under a tighter budget and re-cut, and every final chunk fits."""
    limits = Limits("bytes", 300_000, 600_000)
    info = probe(str(vbr_video))
    bare = SegmentOptions(overhead=Overhead(fixed=0, per_packet=0))
    with caplog.at_level(logging.INFO, logger="pipeline.segment"):
        chunks = split(info, limits, str(tmp_path), bare, in_memory=in_memory)
    assert "re-cutting it smaller" in caplog.text
    assert all(c.size_bytes <= limits.max_bytes for c in chunks)
    assert sum(c.frames for c in chunks) == ffprobe_count(vbr_video)
    assert all(a.end == b.start for a, b in zip(chunks, chunks[1:], strict=False))
