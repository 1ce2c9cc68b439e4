"""A self-contained HTML page: inline CSS, figures inlined as base64 PNG, no external requests."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#1d232a;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #d8dde3;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #d8dde3;padding:.25em .6em;text-align:right}th{background:#f2f4f7}
td.l,th.l{text-align:left}img{max-width:100%;border:1px solid #eceff2}
.verdict{font-weight:600;padding:.1em .5em;border-radius:.3em}
.held{background:#d8f3dc;color:#1b4332}.not-held{background:#ffe0e0;color:#7a1010}
.not-tested{background:#eceff2;color:#444}
.claim{border:1px solid #d8dde3;border-radius:.4em;padding:.5em 1em;margin:.7em 0}
.note{color:#555;font-size:.9em}pre{background:#f6f8fa;padding:.7em;overflow:auto;font-size:.8em}
dt{font-weight:600}dd{margin:0 0 .5em 1.2em}
"""


def esc(text) -> str:
    return html.escape(str(text))


def image_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def table_html(frame: pd.DataFrame, left: tuple[str, ...] = ()) -> str:
    head = "".join(f'<th class="{"l" if c in left else ""}">{esc(c)}</th>' for c in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        cells = "".join(f'<td class="{"l" if c in left else ""}">{esc(row[c])}</td>' for c in frame.columns)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def page(title: str, sections: list[tuple[str, str]], data: dict) -> str:
    """`sections`: (heading, inner HTML). `data` is embedded as JSON for machines reading the page."""
    body = "\n".join(f"<section><h2>{esc(h)}</h2>\n{inner}</section>" for h, inner in sections)
    blob = json.dumps(data, default=str).replace("</", "<\\/")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>\n<h1>{esc(title)}</h1>\n"
        f"{body}\n<script type=\"application/json\" id=\"report-data\">{blob}</script>\n</body></html>\n"
    )
