"""BENCHMARKS.md is shared by several benchmark scripts: each owns one section
between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` and replaces only that."""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, name: str, lines: list[str]) -> None:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = "\n".join([begin, *lines, end])
    text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures measured on this project's 2-core, 24 GiB machine; each section says which script wrote it.\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
