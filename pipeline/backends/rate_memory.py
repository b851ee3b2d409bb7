"""The rate learned for each key, remembered between runs, so that the next run starts there.

One small JSON file in the user's cache folder. A key is never stored, nor anything it can be
read back from: each entry is filed under HMAC-SHA256 of the API's address and the key, with
a random salt kept in the file. Writes are atomic; a file that cannot be read or parsed is
ignored (and replaced at the next write); a write that fails is logged and the run goes on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.output.files import atomic_write_json

log = logging.getLogger(__name__)

FILE = "rates.json"
_FORMAT = 1
DEFAULT_API = "api.clarifai.com"


@dataclass(frozen=True)
class Remembered:
    """What a run learned about a key's rate: the rate it settled at, and the limit the API
    stated in its throttles (if it did)."""

    rate: float
    stated: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "stated": self.stated}


class RateMemory:
    """The remembered rates in `folder` (created when first written)."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / FILE
        self._data = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return _fresh()
        if not isinstance(data, dict) or data.get("format") != _FORMAT \
                or not _is_salt(data.get("salt")) or not isinstance(data.get("keys"), dict):
            return _fresh()
        return data

    @property
    def salt(self) -> str:
        return str(self._data["salt"])

    @staticmethod
    def fresh_salt() -> str:
        return str(_fresh()["salt"])

    def everything(self) -> dict[str, Remembered]:
        """Every remembered rate, by digest (what a Dask run's scheduler starts from)."""
        found = {d: self.recall(d) for d in self._data["keys"]}
        return {d: r for d, r in found.items() if r is not None}

    def recall(self, digest: str) -> Remembered | None:
        entry = self._data["keys"].get(digest)
        try:
            rate = float(entry["rate"])
            stated = None if entry.get("stated") is None else float(entry["stated"])
        except (TypeError, KeyError, ValueError, AttributeError):
            return None
        if stated is not None and not (math.isfinite(stated) and stated > 0):
            stated = None  # a hand-edited or damaged entry: what it says of the limit is dropped
        return Remembered(rate, stated) if math.isfinite(rate) and rate > 0 else None

    def remember(self, digest: str, learned: Remembered) -> None:
        """File `learned` under `digest` (read again first: another run may have written)."""
        data = self._read()
        if data["salt"] != self.salt:  # the file was made anew meanwhile: keep our digests
            data = {**_fresh(), "salt": self.salt}
        data["keys"][digest] = learned.as_dict()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, data)
        except OSError as exc:
            log.warning("cannot remember the learned rate in %s: %s", self.path,
                        exc.strerror or exc)
            return
        self._data = data


def digest(salt: str, api_base: str | None, key: str) -> str:
    """The name a key's entry is filed under: HMAC-SHA256(salt, api address + key)."""
    message = f"{api_base or DEFAULT_API}\n{key}".encode()
    return hmac.new(bytes.fromhex(salt), message, hashlib.sha256).hexdigest()


def _is_salt(value: object) -> bool:
    try:
        return isinstance(value, str) and len(bytes.fromhex(value)) >= 16
    except ValueError:
        return False


def _fresh() -> dict[str, Any]:
    return {"format": _FORMAT, "salt": secrets.token_hex(16), "keys": {}}
