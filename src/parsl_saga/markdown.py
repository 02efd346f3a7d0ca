"""The project's one Markdown table writer: benchmarks' report, lambda_hat's outputs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table of ``str()`` of each cell: format cells first."""
    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(map(str, cells)) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])
