"""What may be shown of a URL: never its query string (a presigned signature, a token),
fragment or user:password. Every message that can hold a URL someone else wrote (an API's
status description, ffmpeg's stderr, an HTTP error) goes through `text` before it is logged or
stored."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_URL = re.compile(r"(?i)\bhttps?://[^\s'\"<>]+")
# A signature parameter standing alone (a URL cut in two by a message, a bare query string).
_SIGNED = re.compile(
    r"(?i)((?:X-Amz-(?:Credential|Signature|Security-Token)|Signature|AWSAccessKeyId)=)"
    r"[^&\s'\"<>]*")


def url(text: str) -> str:
    """The URL without its query string, fragment or credentials."""
    if text[:5].lower() == "s3://":
        return text  # bucket and key: no credential is ever part of them
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def text(message: str) -> str:
    """`message` with every URL in it shown as `url` shows it, and any stray signature hidden."""
    return _SIGNED.sub(r"\1<redacted>", _URL.sub(_shown, message))


def _shown(found: re.Match[str]) -> str:
    """A URL found in prose, redacted; punctuation that ends the sentence stays."""
    whole = found.group()
    core = whole.rstrip(".,;:!?)]")
    return url(core) + whole[len(core):]
