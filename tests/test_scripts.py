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


def test_recall_sweep_writes_runs_and_best_learning_rates(tmp_path):
    import json

    import recall_sweep

    out = tmp_path / "sweep.json"
    argv = ["--widths", "8", "--pairs", "2", "--models", "softmax", "mingru", "--lrs", "1e-2", "3e-2",
            "--seeds", "0", "1", "--steps", "3", "--batch-size", "4", "--eval-size", "8", "--out", str(out)]
    result = recall_sweep.main(argv)
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["command"].startswith("python scripts/recall_sweep.py --widths 8") and saved["seeds"] == [0, 1]
    assert len(saved["runs"]) == 2 * 2 * 2 and {r["model"] for r in saved["runs"]} == {"softmax", "mingru"}
    assert all(0 <= r["accuracy"] <= 1 for r in saved["runs"])
    for best in saved["best"]:
        runs = [r for r in saved["runs"] if r["model"] == best["model"]]
        means = {lr: sum(r["accuracy"] for r in runs if r["lr"] == lr) / 2 for lr in (1e-2, 3e-2)}
        assert best["mean"] == max(means.values()) and len(best["accuracies"]) == 2


def test_shipped_recall_sweep_is_the_committed_results_file():
    # scripts/recall_sweep.py writes results/recall_sweep.json; attnlib ships a copy so
    # that chapter 16 can plot it wherever attnlib is installed (Colab): the two must agree.
    from attnlib._package_data import resource_path

    shipped = resource_path("recall_sweep.json")
    assert shipped.read_bytes() == (ROOT / "results" / "recall_sweep.json").read_bytes()
