"""A strategy's one encode per video (the compact proxy, the frames' JPEGs): run once, named by
its command line, renamed into place only when whole, so a later run (a resume) takes it as it is.
Its failure is the video's, in one sentence; a full disk says so."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from pipeline.errors import FFmpegError, InputError, io_failure
from pipeline.media import mp4read, proc
from pipeline.types import SampleTable

log = logging.getLogger(__name__)


SIDE = "SIDE"  # stands for a pass's second output (`made_once(side=...)`), as file:SIDE
SIDE_OUTPUT = f"file:{SIDE}"


def made_once(argv: list[str], folder: Path, name: str, *, video: str, what: str,
              seconds: float, doing: str | None = None, side: str | None = None) -> Path:
    """The file `argv` writes (its last item stands for the output), in `folder` as
    `NAME-DIGEST.EXT` with the digest of the command line; encoded only when not there yet
    (`doing` logged then), within the deadline of a pass over `seconds` of media. With `side`,
    the pass also writes a second file where argv says SIDE_OUTPUT, named `side` the same way
    (`beside`), and both must be there."""
    path = named(argv[:-1], folder, name)
    other = beside(path, side) if side is not None else None

    def make(parts: dict[Path, Path]) -> None:
        head = [f"file:{parts[other]}" if other and a == SIDE_OUTPUT else a for a in argv[:-1]]
        proc.run([*head, f"file:{parts[path]}"],
                 timeout=proc.deadlines().deadline(media_seconds=seconds))

    return made(path, [other] if other else [], make, video=video, what=what, doing=doing)


def named(key: list[str], folder: Path, name: str) -> Path:
    """`folder/NAME-DIGEST.EXT`, the digest of `key` (what makes the file: its command line)."""
    digest = hashlib.sha256("\0".join(key).encode()).hexdigest()[:16]
    stem, ext = os.path.splitext(name)
    return folder / f"{stem}-{digest}{ext}"


def made(path: Path, others: list[Path], make: Callable[[dict[Path, Path]], None], *,
         video: str, what: str, doing: str | None = None) -> Path:
    """`path` (and `others`, made by the same pass), made once: unless all are there, `make`
    writes each to the temporary name it is given, and they are renamed into place, `path`
    last (so a file there is whole, and its pass's others with it)."""
    wanted = [*others, path]
    if all(p.exists() for p in wanted):
        return path
    if doing:
        log.info("%s: %s", video, doing)
    with _encode_failures(video, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        parts = {p: p.with_suffix(p.suffix + ".part") for p in wanted}
        make(parts)
        for p in wanted:
            os.replace(parts[p], p)
    return path


def beside(path: Path, name: str) -> Path:
    """The second output of the pass that made `path` (`made_once(side=name)`)."""
    stem, ext = os.path.splitext(name)
    return path.with_name(f"{stem}-{path.stem.rsplit('-', 1)[1]}{ext}")


def sampled_table(path: Path, count: int, *, video: str, what: str) -> SampleTable:
    """The sample table of the file's video track, which holds one sample an instant: fewer
    means the source stopped decoding early, and fails the video."""
    table = next(iter(mp4read.video_tables(str(path)).values()), None)
    held = 0 if table is None else len(table.sizes)
    if table is None or held != count:
        raise InputError(video, f"{what} holds {held} of {count} sampled frames (the video "
                                "does not decode to its end)")
    return table


@contextlib.contextmanager
def _encode_failures(path: str, what: str) -> Iterator[None]:
    """A failed encode fails the video with one sentence (a full disk says so)."""
    try:
        yield
    except FFmpegError as exc:
        raise io_failure(exc) or InputError(path, f"could not make {what} ({exc.summary})") \
            from exc
    except OSError as exc:
        raise io_failure(exc) or exc from None
