"""Benchmark: attnlib.MultiHeadAttention against torch.nn.MultiheadAttention.

Forward + backward, same shapes, same weights, measured in the same run; every figure
is a median over repeats after warm-up, and the outputs are checked to agree before
anything is timed. Prints a table of times and ratios (attnlib / torch) and writes JSON.

    python benchmarks/bench_mha.py                 # CPU, batch 32, length 256, width 256, 8 heads
    python benchmarks/bench_mha.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Callable, Dict, Tuple

import torch
from torch import nn

import attnlib


def copy_weights(ours: attnlib.MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)


def checked_runs(
    batch: int, length: int, width: int, heads: int, device: torch.device
) -> Tuple[Dict[str, Callable[[torch.Tensor], torch.Tensor]], torch.Tensor]:
    """The three implementations, with the same weights, and an input ``(batch, length, width)``.

    Correctness first: a benchmark of a wrong computation is worthless, so every
    implementation's output is compared with torch's before anything is timed, and the
    run stops if one disagrees.
    """
    torch.manual_seed(0)
    ours = attnlib.MultiHeadAttention(width, heads).to(device)
    ref = nn.MultiheadAttention(width, heads, batch_first=True).to(device)
    copy_weights(ours, ref)
    x = torch.randn(batch, length, width, device=device, requires_grad=True)
    runs: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "torch.nn.MultiheadAttention": lambda t: ref(t, t, t, need_weights=False)[0],
        "attnlib fused": lambda t: ours(t, t, t)[0],
        "attnlib readable": lambda t: ours(t, t, t, need_weights=True)[0],
    }
    with torch.no_grad():
        expected = runs["torch.nn.MultiheadAttention"](x)
        for name, run in runs.items():
            diff = (run(x) - expected).abs().max().item()
            if not diff <= 1e-4:
                raise SystemExit(f"mha {name}: outputs differ from torch by {diff:.2e} > 1e-04; not timing a wrong computation")
    return runs, x


def time_fwd_bwd(run, x: torch.Tensor, device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of one forward+backward, timed by attnlib's own helper."""

    def step() -> None:
        run(x).sum().backward()
        x.grad = None

    return attnlib.measure_time(step, repeats=repeats, warmup=warmup, device=device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/mha.json"))
    args = parser.parse_args()

    device = torch.device(args.device)
    runs, x = checked_runs(args.batch, args.length, args.width, args.heads, device)

    results = {name: time_fwd_bwd(run, x, device, args.warmup, args.repeats) for name, run in runs.items()}
    base = results["torch.nn.MultiheadAttention"]
    print(f"forward+backward, B={args.batch} T={args.length} D={args.width} H={args.heads}, {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'implementation':<30} {'ms':>9} {'ratio to torch':>15}")
    for name, t in results.items():
        print(f"{name:<30} {t * 1e3:>9.2f} {t / base:>15.3f}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "config": vars(args) | {"json": str(args.json)},
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "seconds": results,
        "ratio_to_torch": {name: t / base for name, t in results.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
