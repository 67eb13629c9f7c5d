"""The claims ledger (book/claims.md) stays well-formed, every reference in it resolves, and
the figures of a traced claim come from the run that built the book.

The ledger is a summary table (claim, verdict, chapters) and one section per claim: C1-C20
from the four popular texts, then L1-L4 from the research literature (``(claim-cN)=`` or
``(claim-lN)=`` target, ``## CN: ...`` or ``## LN: ...`` heading, then ``**Verdict:**``, ``**Tested in:**``
and ``**Measured:**`` paragraphs). Each claim has exactly one section and one summary row,
and the two give the same verdict; a verdict is one of the allowed words (optionally
followed by a parenthesised qualifier, e.g. "contradicted (as worded)"); a claim whose
chapter is not written says "not yet tested" and has no verdict; every ``{doc}`` link
points to a page that exists and is in ``_toc.yml``, and every ``{ref}``/``{numref}``
label is defined in one of those pages. A claim marked traced (``*Traced:*``) states no
measured figure by hand: every number with a decimal point, a percent sign or a times
sign in its section is pasted with a ``{glue:text}`` role from an executed notebook (the
book build fails when the notebook does not publish the key), or sits in a code span
naming a file.
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
# C: the popular texts' claims (../shared/CLAIMS.md); L: claims from the research literature
# that the later chapters test (issue 21: linear attention, recall, state tracking; 22: induction).
CLAIM_IDS = [f"C{i}" for i in range(1, 21)] + [f"L{i}" for i in range(1, 5)]
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


SECTION = re.compile(r"^\(claim-(?P<target>[cl]\d+)\)=\n## (?P<id>[CL]\d+): (?P<claim>.+)$", re.MULTILINE)
FIELD = re.compile(r"^\*\*(?P<name>Verdict|Tested in|Measured):\*\* ?(?P<value>.*?)(?=\n\n|\Z)", re.MULTILINE | re.DOTALL)
SUMMARY_ROW = re.compile(r"^\| \{ref\}`(?P<id>[CL]\d+) <claim-(?P<target>[cl]\d+)>`(?P<claim>[^|]*)\|(?P<verdict>[^|]*)\|(?P<chapters>[^|]*)\|$",
                         re.MULTILINE)
GLUE_ROLE = re.compile(r"\{glue:text\}`[^`]+`")
CODE_SPAN = re.compile(r"`[^`]*`")
HAND_FIGURE = re.compile(r"\d\.\d|\d\s?%|\d\s?×|×\s?\d")


def ledger_rows(text: str) -> List[Dict[str, str]]:
    """The claims of the ledger, one dict per section: id, claim, verdict, tested in,
    measured, reason (the verdict paragraph after the verdict), traced ("yes"/""), and the
    verdict of its summary row ("summary verdict", "" when it has none)."""
    summary = {m["id"]: m["verdict"].strip() for m in SUMMARY_ROW.finditer(text)}
    matches = list(SECTION.finditer(text))
    rows = []
    for i, match in enumerate(matches):
        if match["target"] != match["id"].lower():
            raise ValueError(f"section {match['id']} has the target claim-{match['target']}")
        body = text[match.end(): matches[i + 1].start() if i + 1 < len(matches) else len(text)]
        fields = {m["name"].lower(): " ".join(m["value"].split()) for m in FIELD.finditer(body)}
        verdict_text = fields.get("verdict", "")
        verdict, _, reason = verdict_text.partition(". ")
        if verdict_text == NOT_TESTED or verdict_text == NOT_TESTED + ".":
            verdict, reason = "", ""
        rows.append({
            "id": match["id"], "claim": match["claim"].strip(),
            "tested in": NOT_TESTED if not verdict and not fields.get("measured") else fields.get("tested in", "").rstrip("."),
            "measured": fields.get("measured", "").rstrip("."), "verdict": verdict.rstrip("."), "reason": reason,
            "traced": "yes" if re.search(r"^\*Traced:\*", body, re.MULTILINE) else "",
            "summary verdict": summary.get(match["id"], ""),
        })
    missing = set(summary) - {r["id"] for r in rows}
    if missing:
        raise ValueError(f"summary rows without a section: {sorted(missing)}")
    return rows


def hand_figures(measured: str) -> List[str]:
    """Figures typed by hand in a measured text: what remains after glue roles and code spans."""
    rest = CODE_SPAN.sub(" ", GLUE_ROLE.sub(" ", measured))
    rest = re.sub(r"\{(?:doc|ref|numref)\}`[^`]*`", " ", rest)
    return [rest[max(0, m.start() - 20): m.end() + 20].strip() for m in HAND_FIGURE.finditer(rest)]


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
        if row["summary verdict"] != (verdict or NOT_TESTED):
            problems.append(f"{cid}: the summary table says {row['summary verdict']!r}, the section {verdict or NOT_TESTED!r}")
        for role in re.findall(r"\{glue:text\}`([^`]*)`", " ".join(row.values())):
            if "::" not in role.rsplit(":", 1)[0]:
                problems.append(f"{cid}: glue role {role!r} needs a format after the key (MyST-NB reads the part "
                                "before the last ':' as the key), e.g. ':d' or ':.2f'")
        if row["traced"]:
            for figure in hand_figures(row["measured"]):
                problems.append(f"{cid} is traced but types a figure by hand: ...{figure}...")
        elif tested != NOT_TESTED:
            problems.append(f"{cid} has a verdict but is not traced: its figures must be pasted from the executed "
                            "notebooks (glue) and the section marked *Traced:*")
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
def _section(i: int, body: str) -> str:
    return f"\n(claim-c{i})=\n## C{i}: a\n\n{body}\n"


GOOD = (
    "| {ref}`C1 <claim-c1>` a | supported | 01 |\n"
    + "".join(f"| {{ref}}`C{i} <claim-c{i}>` a | not yet tested | |\n" for i in range(2, 21))
    + "".join(f"| {{ref}}`L{i} <claim-l{i}>` a | not yet tested | |\n" for i in range(1, 5))
    + _section(1, "*Traced:* figures from this build.\n\n**Verdict:** supported. r\n\n"
                  "**Tested in:** {doc}`01 <../notebooks/01_sequences_and_rnns>`: x.\n\n"
                  "**Measured:** {glue:text}`../notebooks/01_sequences_and_rnns.ipynb::x:.2f` at K = 10 "
                  "(`results/seeds/x_0.5.json`).")
    + "".join(_section(i, "**Verdict:** not yet tested.") for i in range(2, 21))
    + "".join(f"\n(claim-l{i})=\n## L{i}: a\n\n**Verdict:** not yet tested.\n" for i in range(1, 5))
)


def problems_of(text: str) -> List[str]:
    return ledger_problems(text, ROOT, toc_files(ROOT / "_toc.yml"))


def test_checker_accepts_a_sound_ledger() -> None:
    assert problems_of(GOOD) == []


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("01_sequences_and_rnns>`: x", "01_no_such_chapter>`: x", "no page notebooks/01_no_such_chapter"),
        ("../notebooks/01_sequences_and_rnns>`: x", "../../outside>`: x", "outside the book"),
        (": x.", ": {ref}`fig <no-such-label>`.", "label 'no-such-label' is not defined"),
        ("**Verdict:** supported.", "**Verdict:** plausible.", "verdict 'plausible' is not one of"),
        ("**Verdict:** supported.", "**Verdict:** supported, mostly.", "verdict 'supported, mostly' is not one of"),
        ("## C20: a", "## C19: a", "claim-c20"),
        ("(claim-l4)=\n## L4: a", "(claim-l3)=\n## L3: a\n\n(claim-l4)=\n## L4: a", "L3 appears 2 times"),
        ("(claim-l4)=\n## L4: a", "(claim-l5)=\n## L5: a\n\n(claim-l4)=\n## L4: a", "unknown claim id L5"),
        (_section(20, "**Verdict:** not yet tested."), "", "summary rows without a section: ['C20']"),
        ("| supported | 01 |", "| qualified | 01 |", "C1: the summary table says 'qualified', the section 'supported'"),
        ("**Measured:** {glue", "**Measured:** 0.97 and {glue", "C1 is traced but types a figure by hand"),
        ("at K = 10", "at 95%", "C1 is traced but types a figure by hand"),
        ("at K = 10", "3.9× faster", "C1 is traced but types a figure by hand"),
        ("::x:.2f`", "::x`", "needs a format after the key"),
        ("*Traced:* figures from this build.\n\n", "", "C1 has a verdict but is not traced"),
    ],
)
def test_checker_catches(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    problems = problems_of(GOOD.replace(old, new, 1))
    assert any(expected in p for p in problems), problems


def test_checker_needs_the_page_in_the_toc() -> None:
    toc = toc_files(ROOT / "_toc.yml") - {"notebooks/01_sequences_and_rnns"}
    assert any("not in _toc.yml" in p for p in ledger_problems(GOOD, ROOT, toc))


# The README quotes no measured figure: a timing, a speed-up, a throughput or an accuracy
# typed there would not follow the code (the ledger pastes them from the build instead).
# What it may state are the budget and facts that no run measures, listed here with why.
README = ROOT / "README.md"
README_FIGURE = re.compile(
    r"(?<![\w.])\d[\d,]*(?:\.\d+)?\s?(?:ms|s|×|x|%|GFLOP/s|tokens/s|MiB|GiB|GB|MB|min|minutes|seconds)(?![\w/])"
)
README_STATED = {
    "4 minutes": "the budget of a notebook (the test-time issue), not a measurement",
    "55 GFLOP/s": "the reference speed the budget is stated against",
    "3.8 GB": "the size of torch's CUDA wheels on PyPI, what a download costs",
    "16 ×": "16 × 128 tokens, a benchmark's batch shape (a setting)",
}


def readme_figures(text: str) -> List[str]:
    """The figures with a unit in ``text``'s prose (code blocks and code spans left out)."""
    prose = CODE_SPAN.sub("", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    return [m.group(0) for m in README_FIGURE.finditer(prose) if m.group(0) not in README_STATED]


def test_readme_quotes_no_measured_figure() -> None:
    figures = readme_figures(README.read_text())
    assert not figures, (
        f"README.md types measured figures by hand: {figures}; paste them in the ledger from the "
        "executed notebooks (attnlib.glue), or point at a committed results file"
    )


def test_readme_check_catches_a_typed_figure() -> None:
    assert readme_figures("The cache was 6.2× faster, at 41 ms a step (`make bench`).") == ["6.2×", "41 ms"]
    assert readme_figures("```\n6.2× in a code block\n```\nat most 4 minutes, `12 ms`") == []
