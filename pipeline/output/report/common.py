"""What the report pages share: times as clocks, escaping, the style sheet (system fonts, no
web font: the pages fetch nothing) and the page frame with its Content-Security-Policy."""

from __future__ import annotations

import html

# The page may load nothing: images are data: URIs, the style is inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       "DejaVu Sans", sans-serif; margin: 1.5rem auto; max-width: 1640px; color: #1f2328;
       padding: 0 1rem; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; word-break: break-all; }
h2 { font-size: 1.1rem; margin-top: 1.8rem; border-bottom: 1px solid #d0d7de; }
.muted { color: #59636e; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.facts dt { color: #59636e; } dl.facts dd { margin: 0; }
img.chart { width: 100%; height: auto; border: 1px solid #d0d7de; }
table { border-collapse: collapse; font-size: .85rem; }
th, td { text-align: left; padding: .2rem .6rem; border-bottom: 1px solid #e6e9ec; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { background: #fff1f0; }
.thumbs { display: flex; flex-wrap: wrap; gap: .5rem; }
.thumbs figure { margin: 0; font-size: .75rem; }
.thumbs img { display: block; width: 160px; height: auto; border: 1px solid #d0d7de; }
.bad { color: #b2182b; } .good { color: #1a7f37; }
"""


def clock(ms: float) -> str:
    """h:mm:ss (or m:ss under an hour), whole seconds."""
    seconds = int(ms // 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def clock_ms(ms: int) -> str:
    """h:mm:ss.mmm, for segment boundaries."""
    return f"{clock(ms)}.{ms % 1000:03d}"


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{STYLE}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n")
