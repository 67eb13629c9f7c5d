#!/usr/bin/env python3
"""Execute the book's notebooks into Jupyter Book's cache, several at a time.

Jupyter Book 1.x (MyST-NB with ``execute_notebooks: cache``) executes the notebooks that
are not yet in its jupyter-cache one after another. ``make book`` runs this script first:
it adds every notebook of ``_toc.yml`` to that same cache and executes the ones whose
code changed with jupyter-cache's parallel executor (one process per job), so that the
book build that follows finds them all cached. It executes exactly as the build would
(each notebook in its own folder, the same timeout, errors not allowed), and one torch
thread per process (``OMP_NUM_THREADS=1``, set by the Makefile) keeps the jobs from
stalling each other.

Usage: python scripts/execute_notebooks.py [--jobs N] [--cache DIR] [--timeout S]
Exit status 1, with each failing notebook's traceback, when a notebook fails.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import sys
import time
from pathlib import Path

from jupyter_cache import get_cache
from jupyter_cache.executors.basic import ExecutionWorkerLocalMProc, ProcessData

ROOT = Path(__file__).resolve().parent.parent


def toc_notebooks(toc: Path) -> list[Path]:
    """The notebooks that ``_toc.yml`` lists (``file: notebooks/...`` entries)."""
    names = re.findall(r"^\s*-?\s*file:\s*(notebooks/\S+?)\s*$", toc.read_text(), flags=re.M)
    return [ROOT / f"{name}.ipynb" for name in names]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="notebooks executed at once (default %(default)s)")
    parser.add_argument("--cache", default=str(ROOT / "_build" / ".jupyter_cache"),
                        help="the jupyter-cache folder of the book build (default %(default)s)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (as in _config.yml)")
    parser.add_argument("--toc", default=str(ROOT / "_toc.yml"), help="the table of contents (default %(default)s)")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1 (got {args.jobs})")
    notebooks = toc_notebooks(Path(args.toc))
    cache = get_cache(args.cache)
    for path in notebooks:
        cache.add_nb_to_project(str(path))
    stale = [str(path) for path in notebooks if cache.get_cached_project_nb(str(path)) is None]
    print(f"execute_notebooks: {len(notebooks) - len(stale)} of {len(notebooks)} notebooks cached, "
          f"executing {len(stale)} with {args.jobs} job(s)", flush=True)
    if not stale:
        return 0
    start = time.perf_counter()
    # jupyter-cache's own parallel executor takes one process per CPU; this pool takes --jobs.
    records = [cache.get_project_record(uri) for uri in stale]
    work = [ProcessData(r.pk, r.uri, cache, args.timeout, False) for r in records]
    with multiprocessing.Pool(args.jobs) as pool:
        results = pool.map(ExecutionWorkerLocalMProc(), work, chunksize=1)
    done = [uri for status, uri in results if status == 0]
    failed = [uri for status, uri in results if status != 0]
    print(f"execute_notebooks: {len(done)} executed in {time.perf_counter() - start:.0f} s", flush=True)
    for uri in failed:
        record = cache.get_project_record(uri)
        print(f"\nexecute_notebooks: {uri} FAILED\n{record.traceback or ''}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
