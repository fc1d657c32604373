"""A tiny HTML builder for the offline report pages (no external CSS, fonts or scripts)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1400px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f6f8; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0; }
.meta { color: #666; font-size: 0.88em; } .warn { color: #b2182b; } .ok { color: #1a7f37; }
code { background: #f4f6f8; padding: 0 0.25em; border-radius: 3px; }
nav a { margin-right: 1em; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; }
.lead { font-size: 1.08em; margin: 0.6em 0; }
details.howto { background: #f7f9fb; border: 1px solid #dde3ea; border-radius: 4px; padding: 0.4em 0.9em; margin: 0.8em 0; }
details.howto summary { cursor: pointer; font-weight: 600; }
details.howto dt { font-weight: 600; margin-top: 0.35em; } details.howto dd { margin: 0 0 0 1.2em; }
.sat { color: #b35806; } .neg { color: #2166ac; font-weight: 600; }
.scroll { overflow-x: auto; max-width: 100%; }
table.tiles td, table.tiles th { text-align: center; vertical-align: top; padding: 0.25em 0.3em; }
table.tiles th { font-size: 0.9em; font-weight: 600; max-width: 8.5em; }
table.tiles td.pair { text-align: left; white-space: nowrap; vertical-align: middle; }
img.tile { display: block; width: clamp(96px, 8.5vw, 128px); height: auto; margin: 0 auto; border: 1px solid #ccc; image-rendering: pixelated; }
.cap { display: block; font-size: 0.86em; line-height: 1.25; margin-top: 0.2em; max-width: 8.5em; overflow-wrap: anywhere; }
.cbar { display: inline-block; vertical-align: middle; margin: 0.15em 0.3em; }
.cbar-strip { display: block; height: 10px; border: 1px solid #999; }
.cbar-ticks { display: flex; justify-content: space-between; font-size: 0.8em; font-weight: normal; color: #444; }
.legend div { margin: 0.3em 0; }
"""


def escape(text: object) -> str:
    return html.escape(str(text))


def page(title: str, body: Iterable[str]) -> str:
    """A complete HTML document."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; cells (and headers) are escaped unless they are :class:`Raw`; columns in ``numeric`` align right."""
    head = "".join(f"<th>{h.html if isinstance(h, Raw) else escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            content = cell.html if isinstance(cell, Raw) else escape(cell)
            cells.append(f"<td class=\"num\">{content}</td>" if i in numeric else f"<td>{content}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class Raw:
    """Already-escaped HTML for a table cell."""

    def __init__(self, html_text: str) -> None:
        self.html = html_text


def image(src: str, alt: str) -> str:
    return f"<a href=\"{escape(src)}\"><img src=\"{escape(src)}\" alt=\"{escape(alt)}\" loading=\"lazy\"></a>"


def lead(html_text: str) -> str:
    """The one sentence at the top of a page that states its result (``html_text`` already escaped)."""
    return f"<p class=\"lead\">{html_text}</p>"


def how_to_read(terms: Sequence[tuple[str, str]], open_: bool = True) -> str:
    """A "How to read this page" box: ``(term, explanation)`` pairs, both already-escaped HTML."""
    items = "".join(f"<dt>{term}</dt><dd>{text}</dd>" for term, text in terms)
    return f"<details class=\"howto\"{' open' if open_ else ''}><summary>How to read this page</summary><dl>{items}</dl></details>"


def link(href: str, text: str) -> str:
    return f"<a href=\"{escape(href)}\">{escape(text)}</a>"
