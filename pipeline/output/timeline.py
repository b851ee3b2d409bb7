"""timeline.json, streamed both ways: written a frame at a time, byte for byte what
`json.dumps(timeline, indent=2, ensure_ascii=False)` gives, and read a frame at a time (the
keys before "frames" are small and read whole). A ten-hour timeline (36,000 frames x 20
concepts, ~90 MB of JSON) never exists as one dict, nor as one string."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NoReturn

from pipeline.errors import UnwritableNumberError
from pipeline.output import formats
from pipeline.types import Concept, Frame

_FRAMES_MARK = '\n  "frames": []'


# -- writing ---------------------------------------------------------------------------------
def pieces(head: Mapping[str, Any], frames: Iterable[Frame],
           tail: Mapping[str, Any]) -> Iterator[str]:
    """The text of {**head, "frames": [...], **tail} (with a trailing newline), in pieces."""
    text = json.dumps({**head, "frames": [], **tail}, indent=2, ensure_ascii=False)
    cut = text.index(_FRAMES_MARK) + len(_FRAMES_MARK) - 1  # just before the closing "]"
    yield text[:cut]
    encoder = _FrameText()
    written = 0
    for index, frame in enumerate(frames):
        yield ("\n" if index == 0 else ",\n") + encoder.frame(index, frame)
        written += 1
    yield ("\n  ]" if written else "]") + text[cut + 1:] + "\n"


class _FrameText:
    """One frame as json.dumps(indent=2) lays it out at depth 2, with each concept's id and name
    encoded once per timeline rather than once per frame."""

    def __init__(self) -> None:
        self._concepts: dict[tuple[str, str], str] = {}

    def frame(self, index: int, frame: Frame) -> str:
        carried = "" if frame.carried_from_ms is None else \
            f',\n        "carried_from_ms": {frame.carried_from_ms:d}'
        head = (f'    {{\n      "frame_info": {{\n        "index": {index:d},\n'
                f'        "time": {frame.time_ms:d}{carried}\n      }},\n      "data": {{\n'
                '        "concepts": ')
        if not frame.concepts:
            return head + "[]\n      }\n    }"
        body = ",\n".join([self._concept(c) for c in frame.concepts])
        return head + "[\n" + body + "\n        ]\n      }\n    }"

    def _concept(self, c: Concept) -> str:
        key = (c.id, c.name)
        prefix = self._concepts.get(key)
        if prefix is None:
            prefix = self._concepts[key] = (
                '          {\n            "id": ' + json.dumps(c.id, ensure_ascii=False)
                + ',\n            "name": ' + json.dumps(c.name, ensure_ascii=False)
                + ',\n            "value": ')
        return prefix + number(c.value) + "\n          }"


def number(value: float) -> str:
    """A float as json.dumps writes it (repr). NaN and the infinities are refused: json.dumps
    would write NaN or Infinity, which are not JSON, and no reader that follows the standard
    could read the file again."""
    if not math.isfinite(value):
        raise UnwritableNumberError(f"refusing to write {value!r} into a JSON output: JSON has "
                                    "no NaN or infinity")
    return repr(value)


# -- reading ---------------------------------------------------------------------------------
_BLANK = " \t\r\n"


def _not_json(name: str) -> NoReturn:
    """NaN and the infinities are read as what they are: not JSON (json's reader takes them)."""
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_not_json)


class _Text:
    """A sliding window over a text file for raw_decode: values are decoded one at a time."""

    def __init__(self, fh: IO[str], size: int = 1 << 20) -> None:
        self.fh, self.size = fh, size
        self.text, self.pos, self.eof = "", 0, False

    def _more(self) -> bool:
        if self.eof:
            return False
        chunk = self.fh.read(self.size)
        if not chunk:
            self.eof = True
            return False
        self.text = self.text[self.pos:] + chunk
        self.pos = 0
        return True

    def peek(self) -> str:
        """The next character that is not blank (not consumed); '' at the end."""
        while True:
            text, pos = self.text, self.pos
            while pos < len(text) and text[pos] in _BLANK:
                pos += 1
            self.pos = pos
            if pos < len(text):
                return text[pos]
            if not self._more():
                return ""

    def take(self, allowed: str) -> str:
        char = self.peek()
        if not char or char not in allowed:
            raise ValueError(f"expected one of {allowed!r} at character {self.pos}")
        self.pos += 1
        return char

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError:
                if self._more():
                    continue
                raise
            if end == len(self.text) and self._more():
                continue  # a number that ends at the window's edge may go on
            self.pos = end
            return obj


def _walk(path: str | Path) -> Iterator[tuple[str, Any]]:
    """("key", (name, value)) for each top-level key but frames; at "frames", ("frames", None)
    then ("frame", raw) for each frame."""
    with open(path, encoding="utf-8") as fh:
        text = _Text(fh)
        text.take("{")
        if text.peek() == "}":
            return
        while True:
            key = text.value()
            text.take(":")
            if key == "frames":
                yield "frames", None
                yield from (("frame", raw) for raw in _array(text))
            else:
                yield "key", (key, text.value())
            if text.take(",}") == "}":
                return


def _array(text: _Text) -> Iterator[Any]:
    text.take("[")
    if text.peek() == "]":
        text.pos += 1
        return
    while True:
        yield text.value()
        if text.take(",]") == "]":
            return


def read_head(path: str | Path) -> dict[str, Any]:
    """The top-level keys before "frames" (all but run_key in the files we write); the frames
    are not read."""
    head: dict[str, Any] = {}
    for kind, item in _walk(path):
        if kind != "key":
            break
        head[item[0]] = item[1]
    return head


def read_frames(path: str | Path) -> Iterator[Frame]:
    """The frames of a timeline.json, one at a time (ids and names interned: a long timeline
    repeats the same few)."""
    for kind, raw in _walk(path):
        if kind == "frame":
            yield formats.frame_from_dict(raw)


def read_key(path: str | Path, key: str) -> object:
    """One top-level key's value (None if absent), the frames streamed past, not kept."""
    for kind, item in _walk(path):
        if kind == "key" and item[0] == key:
            return item[1]
    return None
