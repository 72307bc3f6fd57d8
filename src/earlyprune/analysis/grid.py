"""A results table as data (``Grid`` of ``Cell``), and its three renderings: Markdown, LaTeX, HTML.

Every table is built once as a grid and rendered from it, so the three formats never disagree.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    """One setting's statistics, in fractions, plus whether to show its seed count."""

    mean: float
    std: float
    n: int
    n_diverged: int
    n_failed: int
    show_n: bool
    n_disconnected: int = 0  # of the n seeds: masks that cut every input→output path

    def text(self, pm: str = "±", dash: str = "—") -> str:
        """``91.2 ± 0.3``, ``91.2 ± 0.3 (n=2)``, ``10.0 ± 0.0 (3 disconnected)``,
        ``— (1 diverged)``, in percent."""
        if self.n == 0 or math.isnan(self.mean):
            body = dash
        elif self.n < 2 or math.isnan(self.std):
            body = f"{100 * self.mean:.1f}"
        else:
            body = f"{100 * self.mean:.1f} {pm} {100 * self.std:.1f}"
        notes = [f"n={self.n}"] if self.show_n and self.n > 0 else []
        notes += [f"{self.n_disconnected} disconnected"] if self.n_disconnected else []
        notes += [f"{self.n_diverged} diverged"] if self.n_diverged else []
        notes += [f"{self.n_failed} failed"] if self.n_failed else []
        return f"{body} ({', '.join(notes)})" if notes else body


@dataclass(frozen=True)
class Grid:
    """A table: a title, row-label headers, sparsity columns and rows of cells."""

    title: str
    setting: tuple[str, str]
    label_headers: tuple[str, ...]
    columns: tuple[str, ...]
    rows: tuple[tuple[tuple[str, ...], tuple[Cell | None, ...]], ...]


def markdown(grid: Grid) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    header = [*grid.label_headers, *grid.columns]
    lines = [
        f"## {esc(grid.title)}",
        "",
        "Test accuracy (%), mean ± std over seeds; columns are sparsities (%).",
        "",
        "| " + " | ".join(esc(h) for h in header) + " |",
        "|" + "|".join([":--"] * len(grid.label_headers) + ["--:"] * len(grid.columns)) + "|",
    ]
    for labels, cells in grid.rows:
        texts = [*labels, *(c.text() if c else "" for c in cells)]
        lines.append("| " + " | ".join(esc(t) for t in texts) + " |")
    return "\n".join(lines) + "\n"


_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def tex_escape(text: str) -> str:
    """Escapes LaTeX's special characters in plain text."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def _tex_cell(cell: Cell | None) -> str:
    if cell is None:
        return ""
    # Escape the text first, then put in the maths, so the markup itself is not escaped.
    text = tex_escape(cell.text(pm="\x00", dash="\x01"))
    return text.replace("\x00", r"$\pm$").replace("\x01", "---")


def latex(grid: Grid) -> str:
    spec = "l" * len(grid.label_headers) + "r" * len(grid.columns)
    header = [*(tex_escape(h) for h in grid.label_headers), *grid.columns]
    lines = [
        f"% {grid.title} (needs \\usepackage{{booktabs}} and \\usepackage{{graphicx}})",
        r"\begin{table}[ht]",
        r"\centering",
        r"\resizebox{\textwidth}{!}{%",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
    ]
    for labels, cells in grid.rows:
        texts = [tex_escape(t) for t in labels]
        texts += [_tex_cell(c) for c in cells]
        lines.append(" & ".join(texts) + r" \\")
    lines += [
        r"\bottomrule",
        r"\end{tabular}}",
        rf"\caption{{{tex_escape(grid.title)}: test accuracy (\%), mean $\pm$ std over seeds; "
        r"columns are sparsities (\%).}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def grid_html(grid: Grid) -> str:
    """One grid as an HTML ``<table>`` with a caption; every text is escaped."""
    esc = html.escape
    header = "".join(f"<th>{esc(h)}</th>" for h in (*grid.label_headers, *grid.columns))
    body = []
    for labels, cells in grid.rows:
        tds = "".join(f'<th scope="row">{esc(t)}</th>' for t in labels)
        tds += "".join(f"<td>{esc(c.text()) if c else ''}</td>" for c in cells)
        body.append(f"<tr>{tds}</tr>")
    return (
        f"<table>\n<caption>{esc(grid.title)}: test accuracy (%), mean ± std; "
        f"columns are sparsities (%)</caption>\n<thead><tr>{header}</tr></thead>\n"
        f"<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>\n"
    )
