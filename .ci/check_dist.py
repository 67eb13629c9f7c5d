"""Check what `make dist` built: one sdist and one wheel, each with the licence and py.typed.

The sdist must leave the tests out (they need the whole repository; see MANIFEST.in),
and both archives must hold every module of attnlib/. Usage: python .ci/check_dist.py dist
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(folder: Path) -> int:
    modules = {f"attnlib/{p.name}" for p in (ROOT / "attnlib").glob("*.py")} | {"attnlib/py.typed"}
    # The package data the chapters read at run time (the corpus, chapter 11's checkpoint).
    modules |= {f"attnlib/_resources/{p.name}" for p in (ROOT / "attnlib" / "_resources").iterdir()}
    sdists, wheels = sorted(folder.glob("*.tar.gz")), sorted(folder.glob("*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        print(f"check_dist: expected one sdist and one wheel in {folder} (got {sdists + wheels})")
        return 1
    with tarfile.open(sdists[0]) as tar:
        sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    with zipfile.ZipFile(wheels[0]) as whl:
        wheel = set(whl.namelist())
    problems = [f"sdist lacks {m}" for m in sorted((modules | {"LICENSE", "CHANGELOG.md", "CITATION.cff"}) - sdist)]
    problems += [f"sdist ships {n}, which needs the repository to run" for n in sorted(sdist) if n.startswith("tests/")]
    problems += [f"wheel lacks {m}" for m in sorted(modules - wheel)]
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel):
        problems.append("wheel lacks its .dist-info/licenses/LICENSE")
    for problem in problems:
        print(f"check_dist: {problem}")
    if not problems:
        print(f"check_dist: {sdists[0].name} and {wheels[0].name} hold attnlib, its package data, py.typed and the LICENSE; no tests in the sdist")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "dist")))
