"""Multi-query associative recall across widths, numbers of pairs, mixers, learning rates and seeds.

Chapter 16's grid in the shape of Zoology's figure (Arora et al., 2023): each cell
trains :class:`attnlib.mixers.SequenceModel` with one sequence mixer (softmax
attention, linear attention, an LSTM, minGRU) at one width on recall with a given
number of key-value pairs, for every learning rate and seed, with
:func:`attnlib.mixers.train_recall`. The JSON it writes holds the command, the
seeds, every run's accuracy and seconds, and per cell the learning rate with the best
mean accuracy over seeds. The chapter reads and plots it and reruns one cell live.

Run single-threaded, as the book's numbers were made::

    OMP_NUM_THREADS=1 python scripts/recall_sweep.py --out results/recall_sweep.json

(about half an hour on one CPU core at the defaults). The file is rewritten after
every run, so an interrupted sweep keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from attnlib.mixers import MIXERS, train_recall


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64], help="model widths D")
    parser.add_argument("--pairs", type=int, nargs="+", default=[4, 8, 16], help="key-value pairs per sequence")
    parser.add_argument("--models", nargs="+", default=list(MIXERS), choices=MIXERS, help="sequence mixers")
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-3, 1e-2, 3e-2], help="peak learning rates")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--steps", type=int, default=400, help="optimiser steps per run")
    parser.add_argument("--batch-size", type=int, default=64, help="sequences per step")
    parser.add_argument("--layers", type=int, default=2, help="blocks per model")
    parser.add_argument("--eval-size", type=int, default=512, help="test sequences per run")
    parser.add_argument("--out", type=Path, default=Path("results/recall_sweep.json"), help="the JSON to write")
    return parser.parse_args(argv)


def best_lrs(runs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per (model, width, pairs): the learning rate with the best mean accuracy over seeds, and its accuracies."""
    cells: Dict[tuple, Dict[float, List[float]]] = {}
    for run in runs:
        cells.setdefault((run["model"], run["width"], run["pairs"]), {}).setdefault(run["lr"], []).append(run["accuracy"])
    best = []
    for (model, width, pairs), by_lr in cells.items():
        lr = max(by_lr, key=lambda r: sum(by_lr[r]) / len(by_lr[r]))
        best.append({"model": model, "width": width, "pairs": pairs, "lr": lr, "accuracies": by_lr[lr],
                     "mean": sum(by_lr[lr]) / len(by_lr[lr])})
    return best


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    command = "python scripts/recall_sweep.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    result: Dict[str, Any] = {
        "command": command.strip(), "seeds": args.seeds, "widths": args.widths, "pairs": args.pairs,
        "models": args.models, "lrs": args.lrs, "steps": args.steps, "batch_size": args.batch_size,
        "layers": args.layers, "eval_size": args.eval_size, "num_keys": 64, "num_values": 64,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "runs": [], "best": [], "seconds": 0.0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    grid = [(p, w, m, lr, s) for p in args.pairs for w in args.widths for m in args.models
            for lr in args.lrs for s in args.seeds]
    for i, (pairs, width, model, lr, seed) in enumerate(grid, start=1):
        t0 = time.perf_counter()
        accuracy = train_recall(model, width, pairs, lr, seed, args.steps, batch_size=args.batch_size,
                                num_layers=args.layers, eval_size=args.eval_size)
        result["runs"].append({"model": model, "width": width, "pairs": pairs, "lr": lr, "seed": seed,
                               "accuracy": accuracy, "seconds": time.perf_counter() - t0})
        result["best"] = best_lrs(result["runs"])
        result["seconds"] = time.perf_counter() - start
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"[{i}/{len(grid)}] {model:8s} D={width:3d} P={pairs:3d} lr={lr:g} seed={seed}: "
              f"{accuracy:.3f} ({result['seconds']:.0f} s)", flush=True)
    return result


if __name__ == "__main__":
    main()
