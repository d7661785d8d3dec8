"""One report page, two renderings: Markdown (report.md) and self-contained HTML (report.html).

A `Page` is a title, an intro and an ordered list of sections; a section is an optional
heading and its blocks: a `Table`, `Bullets`, a `Figure` or a `Paragraph`. Both renderers walk
the same sections, so the two files cannot drift apart. The HTML needs no network: plotly's JS
is inline and PNGs are embedded as base64; the Markdown links the PNGs written beside it.
Text (the intro, bullets, paragraphs) is Markdown: its code spans and bold become HTML.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

_STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
    "padding:3px 6px;text-align:left}th{background:#f2f2f2}li{margin:.3em 0}"
    "code{background:#f2f2f2;padding:0 3px;border-radius:3px}"
)


# A code span: a run of backticks, then anything up to the same run (CommonMark); or **bold**.
_INLINE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)|\*\*(?=\S)(.+?)(?<=\S)\*\*", re.S)


def inline_html(text: str) -> str:
    """Markdown inline text as HTML: code spans -> <code>, **bold** -> <strong>; the rest escaped.

    The notes and paragraphs use no other Markdown; anything else shows as written.
    """
    parts, end = [], 0
    for match in _INLINE.finditer(text):
        parts.append(html.escape(text[end : match.start()]))
        code, strong = match.group(2), match.group(3)
        if code is not None:
            if code.startswith(" ") and code.endswith(" ") and code.strip():
                code = code[1:-1]  # CommonMark strips one space each side: `` `x` `` -> `x`
            parts.append(f"<code>{html.escape(code)}</code>")
        else:
            parts.append(f"<strong>{inline_html(strong)}</strong>")
        end = match.end()
    parts.append(html.escape(text[end:]))
    return "".join(parts)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of `frame`'s cells as strings ('|' escaped)."""

    def cell(value) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, frame.columns)) + " |"]
    lines.append("|" + "|".join("---" for _ in frame.columns) + "|")
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


@dataclass(frozen=True)
class Table:
    """A table of display strings; `html_id` names it in the HTML (tests find it by id)."""

    frame: pd.DataFrame
    html_id: str
    empty: str = "No rows."  # said instead of a table without rows

    def to_markdown(self) -> str:
        return markdown_table(self.frame) if len(self.frame) else self.empty

    def to_html(self) -> str:
        if not len(self.frame):
            return f"<p>{html.escape(self.empty)}</p>"
        return self.frame.to_html(index=False, table_id=self.html_id, border=0)


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]

    def to_markdown(self) -> str:
        return "\n".join(f"- {item}" for item in self.items)

    def to_html(self) -> str:
        return "<ul>" + "".join(f"<li>{inline_html(item)}</li>" for item in self.items) + "</ul>"


@dataclass(frozen=True)
class Figure:
    """A PNG on disk; Markdown links it by file name (the page is written beside it), HTML
    embeds it - or, given `plotly`, shows that interactive figure instead."""

    alt: str
    png: Path
    plotly: Any = None  # a plotly Figure; its div's id is the PNG's stem

    def to_markdown(self) -> str:
        return f"![{self.alt}]({self.png.name})"

    def to_html(self) -> str:
        if self.plotly is not None:
            return self.plotly.to_html(full_html=False, include_plotlyjs=True, div_id=self.png.stem)
        data = base64.b64encode(self.png.read_bytes()).decode()
        return (
            f'<img alt="{html.escape(self.alt)}" style="width:100%;max-width:820px" '
            f'src="data:image/png;base64,{data}">'
        )


@dataclass(frozen=True)
class Paragraph:
    text: str

    def to_markdown(self) -> str:
        return self.text

    def to_html(self) -> str:
        return f"<p>{inline_html(self.text)}</p>"


Block = Table | Bullets | Figure | Paragraph


@dataclass(frozen=True)
class Section:
    heading: str | None  # None: the blocks continue the page without a heading of their own
    blocks: Sequence[Block]


@dataclass(frozen=True)
class Page:
    title: str
    intro: str
    sections: Sequence[Section]

    def to_markdown(self) -> str:
        parts = [f"# {self.title}", self.intro]
        for section in self.sections:
            if section.heading is not None:
                parts.append(f"## {section.heading}")
            parts += [block.to_markdown() for block in section.blocks]
        return "\n\n".join(parts) + "\n"

    def to_html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1><p>{inline_html(self.intro)}</p>"]
        for section in self.sections:
            if section.heading is not None:
                body.append(f"<h2>{html.escape(section.heading)}</h2>")
            body += [block.to_html() for block in section.blocks]
        return (
            f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(self.title)}'
            f"</title><style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
        )
