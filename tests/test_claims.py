"""The claims ledger (book/claims.md) stays well-formed and every reference in it resolves.

Each claim C1-C20 has exactly one row; a verdict is one of the allowed words (optionally
followed by a parenthesised qualifier, e.g. "contradicted (as worded)"); a claim whose
chapter is not written says "not yet tested" and has no verdict; every ``{doc}`` link
points to a page that exists and is in ``_toc.yml`` (otherwise the book build fails or the
link is dead), and every ``{ref}``/``{numref}`` label is defined in one of those pages.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Set

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LEDGER = ROOT / "book" / "claims.md"
CLAIM_IDS = [f"C{i}" for i in range(1, 21)]
VERDICTS = ("supported", "qualified", "contradicted")
NOT_TESTED = "not yet tested"
COLUMNS = ["id", "claim", "tested in", "measured", "verdict", "reason"]

DOC_ROLE = re.compile(r"\{doc\}`(?:[^`<]*<)?([^`<>]+?)>?`")
REF_ROLE = re.compile(r"\{(?:ref|numref)\}`(?:[^`<]*<)?([^`<>]+?)>?`")
LABEL_TARGET = re.compile(r"^\(([\w.:-]+)\)=\s*$", re.MULTILINE)  # MyST target: (label)=
NAME_OPTION = re.compile(r"^\s*:name:\s*([\w.:-]+)\s*$", re.MULTILINE)  # figure/table :name:
VERDICT = re.compile(r"^(?P<word>[a-z]+)(?: \([^()]+\))?$")


def split_row(line: str) -> List[str]:
    """Cells of a markdown table row; an escaped pipe (\\|) stays inside its cell."""
    cells = re.split(r"(?<!\\)\|", line.strip())
    return [cell.strip() for cell in cells[1:-1]]


def ledger_rows(text: str) -> List[Dict[str, str]]:
    """The claim rows of the ledger's table, as dicts keyed by COLUMNS."""
    rows = []
    for line in text.splitlines():
        if re.match(r"^\|\s*C\d+\s*\|", line):
            cells = split_row(line)
            if len(cells) != len(COLUMNS):
                raise ValueError(f"row {cells[:1]} has {len(cells)} cells, expected {len(COLUMNS)}: {line[:80]}")
            rows.append(dict(zip(COLUMNS, cells)))
    return rows


def toc_files(toc_path: Path) -> Set[str]:
    """Every ``file:`` of the table of contents (and its root), without suffix, relative to ROOT."""
    toc = yaml.safe_load(toc_path.read_text())
    files = {toc["root"]}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.add(str(node["file"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc)
    return {str(Path(f).with_suffix("")) if Path(f).suffix in (".md", ".ipynb") else f for f in files}


def page_source(root: Path, name: str) -> str:
    """The markdown of a page (a .md file, or the markdown cells of a notebook); '' if missing."""
    md, nb = root / f"{name}.md", root / f"{name}.ipynb"
    if md.exists():
        return md.read_text()
    if nb.exists():
        cells = json.loads(nb.read_text())["cells"]
        return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return ""


def ledger_problems(text: str, root: Path, toc: Set[str]) -> List[str]:
    """Every problem of a ledger text, as readable messages (empty when it is sound)."""
    problems: List[str] = []
    try:
        rows = ledger_rows(text)
    except ValueError as err:
        return [str(err)]
    ids = [row["id"] for row in rows]
    for claim in CLAIM_IDS:
        if ids.count(claim) != 1:
            problems.append(f"{claim} appears {ids.count(claim)} times (expected once)")
    problems += [f"unknown claim id {i}" for i in ids if i not in CLAIM_IDS]

    labels: Set[str] = set()
    for page in toc:
        source = page_source(root, page)
        labels |= set(LABEL_TARGET.findall(source)) | set(NAME_OPTION.findall(source))

    for row in rows:
        cid, tested, verdict = row["id"], row["tested in"], row["verdict"]
        if tested == NOT_TESTED:
            if verdict or row["measured"]:
                problems.append(f"{cid}: 'not yet tested' but has a verdict or a measured figure")
            continue
        match = VERDICT.match(verdict)
        if not match or match.group("word") not in VERDICTS:
            problems.append(f"{cid}: verdict {verdict!r} is not one of {VERDICTS} (optionally with a '(...)' note)")
        docs = DOC_ROLE.findall(tested)
        if not docs:
            problems.append(f"{cid}: 'tested in' links no chapter with {{doc}}")
        if not row["measured"]:
            problems.append(f"{cid}: has a verdict but no measured figure")
        for cell in row.values():
            for target in DOC_ROLE.findall(cell):
                page = (root / "book" / target).resolve()
                try:
                    name = str(page.relative_to(root))
                except ValueError:
                    problems.append(f"{cid}: {{doc}} link {target!r} points outside the book")
                    continue
                if not page_source(root, name):
                    problems.append(f"{cid}: {{doc}} link {target!r}: no page {name}.md or {name}.ipynb")
                elif name not in toc:
                    problems.append(f"{cid}: {{doc}} link {target!r}: page {name} is not in _toc.yml")
            for label in REF_ROLE.findall(cell):
                if label not in labels:
                    problems.append(f"{cid}: {{ref}} label {label!r} is not defined in any page of the book")
    return problems


def test_ledger_is_sound() -> None:
    problems = ledger_problems(LEDGER.read_text(), ROOT, toc_files(ROOT / "_toc.yml"))
    assert not problems, "\n".join(problems)


def test_ledger_is_in_the_book() -> None:
    assert "book/claims" in toc_files(ROOT / "_toc.yml")


# The checker itself must catch each kind of mistake (a check that cannot fail is no check).
GOOD = (
    "| C1 | a | {doc}`01 <../notebooks/01_sequences_and_rnns>`: x | 1.0 | supported | r |\n"
    + "".join(f"| C{i} | a | not yet tested | | | |\n" for i in range(2, 21))
)


def problems_of(text: str) -> List[str]:
    return ledger_problems(text, ROOT, toc_files(ROOT / "_toc.yml"))


def test_checker_accepts_a_sound_ledger() -> None:
    assert problems_of(GOOD) == []


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("01_sequences_and_rnns>", "01_no_such_chapter>", "no page notebooks/01_no_such_chapter"),
        ("../notebooks/01_sequences_and_rnns", "../../outside", "outside the book"),
        (": x |", ": {ref}`fig <no-such-label>` |", "label 'no-such-label' is not defined"),
        ("| supported |", "| plausible |", "verdict 'plausible' is not one of"),
        ("| supported |", "| supported, mostly |", "verdict 'supported, mostly' is not one of"),
        ("| C20 |", "| C19 |", "C19 appears 2 times"),
        ("| C20 | a | not yet tested | | | |\n", "", "C20 appears 0 times"),
        ("| C2 | a | not yet tested | | | |", "| C2 | a | not yet tested | | qualified | |", "C2: 'not yet tested'"),
        ("| 1.0 |", "| |", "C1: has a verdict but no measured figure"),
        ("| r |", "|", "has 5 cells, expected 6"),
    ],
)
def test_checker_catches(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    problems = problems_of(GOOD.replace(old, new, 1))
    assert any(expected in p for p in problems), problems


def test_checker_needs_the_page_in_the_toc() -> None:
    toc = toc_files(ROOT / "_toc.yml") - {"notebooks/01_sequences_and_rnns"}
    assert any("not in _toc.yml" in p for p in ledger_problems(GOOD, ROOT, toc))
