"""The repository's scripts: scripts/seed_sweep.py's parameter substitution and
scripts/colab_check.py's choice of Python and of pytest settings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import colab_check  # noqa: E402
import seed_sweep  # noqa: E402

PARAMS = '''# Parameters. Sized for one CPU core.
SEED = 0
STEPS = 1600              # training steps
POSITIONAL = "sinusoidal" # "sinusoidal" or "learned"
WIDTH, HEADS = 64, 4
'''


def test_set_parameters_replaces_the_value_and_keeps_the_comment():
    out = seed_sweep.set_parameters(PARAMS, {"SEED": "2", "STEPS": "100", "POSITIONAL": '"learned"'})
    assert "SEED = 2\n" in out
    assert "STEPS = 100              # training steps\n" in out
    assert 'POSITIONAL = "learned" # "sinusoidal" or "learned"\n' in out
    assert out.count("\n") == PARAMS.count("\n")


def test_set_parameters_names_a_missing_parameter():
    with pytest.raises(SystemExit, match="--set LR: expected one assignment of LR in the parameters cell, found 0"):
        seed_sweep.set_parameters(PARAMS, {"LR": "1e-3"})


def test_colab_check_reads_the_pytest_settings_and_skips_a_python_that_does_not_run(tmp_path):
    ini = colab_check._pytest_ini()
    assert ini.startswith("[pytest]\n") and "filterwarnings =\n    error" in ini and "testpaths" not in ini
    shim = tmp_path / "python3.12"
    shim.write_text("#!/bin/sh\nexit 127\n")
    shim.chmod(0o755)
    assert colab_check.python_version(shim) is None
    assert colab_check.python_version(Path(sys.executable)) == "%d.%d" % sys.version_info[:2]
