"""moto's S3 server with S3's check of presigned URLs' expiry in front (moto checks none).

    python moto_strict.py -H 127.0.0.1 -p 0 [--enforce-expiry]

A presigned GET past X-Amz-Date + X-Amz-Expires gets S3's own answer: 403 AccessDenied
"Request has expired". Everything else is moto's own app and request handler, as `moto_server`
runs them; the start-up line is the same, so the same fixture reads the port."""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

_EXPIRED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
            b"<Message>Request has expired</Message></Error>")


def expired(query: str, now: dt.datetime) -> bool:
    """A SigV4 presigned query string whose validity has run out."""
    q = dict(parse_qsl(query, keep_blank_values=True))
    if "X-Amz-Date" not in q or "X-Amz-Expires" not in q:
        return False
    signed = dt.datetime.strptime(q["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    return now > signed + dt.timedelta(seconds=int(q["X-Amz-Expires"]))


class ExpiryCheck:
    def __init__(self, app: Callable[..., Iterable[bytes]], enforce: bool) -> None:
        self.app = app
        self.enforce = enforce

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if self.enforce and expired(environ.get("QUERY_STRING", ""), dt.datetime.now(dt.UTC)):
            start_response("403 Forbidden", [("Content-Type", "application/xml"),
                                             ("Content-Length", str(len(_EXPIRED)))])
            return [_EXPIRED]
        return self.app(environ, start_response)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=0)
    parser.add_argument("--enforce-expiry", action="store_true")
    args = parser.parse_args()
    app = ExpiryCheck(DomainDispatcherApplication(create_backend_app), args.enforce_expiry)
    server = make_server(args.host, args.port, app, threaded=True,
                         request_handler=MotoRequestHandler)
    print(f" * Running on http://{args.host}:{server.server_address[1]}", file=sys.stderr,
          flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
