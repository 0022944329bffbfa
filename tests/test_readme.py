"""The README stays one document: a botched edit once pasted half of it a second time."""

from collections import Counter
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_section_heading_appears_once() -> None:
    headings = [line for line in README.read_text().splitlines() if line.startswith("## ")]
    repeated = [h for h, n in Counter(headings).items() if n > 1]
    assert headings and not repeated, repeated


def test_no_paragraph_is_repeated() -> None:
    paragraphs = [p.strip() for p in README.read_text().split("\n\n")]
    prose = [p for p in paragraphs if p.count("\n") >= 3 and not p.startswith(("```", "|"))]
    repeated = [p[:80] for p, n in Counter(prose).items() if n > 1]
    assert not repeated, repeated
