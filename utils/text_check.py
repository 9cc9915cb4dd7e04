"""Text that cannot go stale: which values quoted in the markdown an executed notebook no longer prints.

Chapter sources write every number, latent id or head that their text quotes from the solution
notebook's output as `{{value}}` (see utils/build.py); the builder lists them in each markdown
cell's metadata (`course.quoted`). Given one execution of the solution notebook,
`stale_quotes(notebook)` names each quoted value that appears in none of its outputs, with the
sentence that quotes it, so retraining the course world lists every sentence to rewrite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import nbformat

_TAG = re.compile(r"<[^>]+>")
_CODE = re.compile(r"<(script|style)\b.*?</\1\s*>", re.S | re.I)  # scripts are not text a reader sees
_TEXT_MIMETYPES = ("text/plain", "text/html", "text/markdown")


@dataclass(frozen=True)
class StaleQuote:
    cell: int  # position of the markdown cell in the notebook
    value: str
    sentence: str

    def __str__(self) -> str:
        return f"cell {self.cell}: {self.value!r} is no longer printed (quoted in: {self.sentence!r})"


def output_text(output: dict) -> str:
    """The text one output shows a reader: a stream's text, or a display's plain text, markdown and
    HTML (tags, scripts and styles stripped); "" for anything else."""
    if output.get("output_type") == "stream":
        text = output.get("text", "")
        return "".join(text) if isinstance(text, list) else str(text)
    parts = []
    for mimetype in _TEXT_MIMETYPES:
        data = (output.get("data") or {}).get(mimetype)
        if data:
            text = "".join(data) if isinstance(data, list) else str(data)
            parts.append(_TAG.sub(" ", _CODE.sub(" ", text)) if mimetype == "text/html" else text)
    return "\n".join(parts)


def printed_text(notebook: nbformat.NotebookNode) -> str:
    """Everything the notebook's code cells printed or displayed as text, one output per line."""
    parts = (output_text(output) for cell in notebook.cells for output in cell.get("outputs", []))
    return "\n".join(part for part in parts if part)


def is_printed(value: str, text: str) -> bool:
    """`value` occurs in `text` as a whole: "0.73" is not found in "10.73", "-0.73" or "0.735", "L2H1" not in "L2H10"."""
    return re.search(rf"(?<![\w.-]){re.escape(value)}(?!\w|\.\d)", text) is not None


def _sentence(source: str, value: str) -> str:
    at = source.find(value)
    full_stop = source.rfind(". ", 0, at)
    start = max(full_stop + 2 if full_stop >= 0 else 0, source.rfind("\n", 0, at) + 1)
    end = min((i for i in (source.find(". ", at + len(value)), source.find("\n", at)) if i >= 0), default=len(source))
    return source[start:end].strip()


def stale_quotes(notebook: nbformat.NotebookNode, printed: str | None = None) -> list[StaleQuote]:
    """The quoted values of `notebook`'s markdown that none of its outputs print (or, given
    `printed`, that this text does not contain: what the grader's `--printed` run wrote)."""
    text = printed_text(notebook) if printed is None else printed
    stale = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "markdown":
            continue
        for value in cell.get("metadata", {}).get("course", {}).get("quoted", []):
            if not is_printed(value, text):
                stale.append(StaleQuote(index, value, _sentence(cell.source, value)))
    return stale
