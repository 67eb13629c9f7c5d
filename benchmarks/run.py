"""attnlib's benchmark suite: prints one table per benchmark and writes JSON.

    python benchmarks/run.py                  # everything, CPU (and CUDA when present)
    python benchmarks/run.py --only attention --quick

Rules every figure follows: it is a median over ``--repeats`` runs after warm-up runs;
every comparison is a ratio of two figures measured in the same run; and the outputs
are checked for correctness before anything is timed (a benchmark of a wrong kernel
is worthless), so the script stops rather than report one.

Benchmarks:

* ``mha``: attnlib ``MultiHeadAttention`` forward+backward, fused and readable paths,
  against ``torch.nn.MultiheadAttention`` (batch 32, length 256, width 256, 8 heads).
* ``attention``: naive (readable), tiled (:func:`attnlib.efficient.tiled_attention`)
  and PyTorch SDPA attention: forward time and peak extra memory against ``n``
  (batch 1, one head, head width 64). Memory is counted by
  :class:`attnlib.efficient.PeakMemory`: the bytes held by tensors created during the
  call, at their peak (memory a fused kernel allocates and frees internally is not
  seen, so SDPA's figure is a lower bound; naive and tiled are plain PyTorch, counted
  exactly).
* ``generation``: GPT tokens per second with and without the KV cache, against the
  number of generated tokens (greedy; both must produce the same tokens), for the
  shape of chapter 10's GPT; on the CPU with one thread and with the configured count.
* ``training``: GPT training tokens per second, and model FLOPs utilisation (MFU)
  against this machine's measured float32 matmul throughput.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_mha  # noqa: E402

from attnlib.efficient import PeakMemory, tiled_attention  # noqa: E402
from attnlib.functional import scaled_dot_product_attention  # noqa: E402
from attnlib.utils import measure_time  # noqa: E402


def check(name: str, diff: float, tol: float) -> None:
    if not diff <= tol:
        raise SystemExit(f"{name}: outputs differ by {diff:.2e} > {tol:.0e}; not timing a wrong computation")


def table(title: str, header: List[str], rows: List[List[Any]]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(h)), *(len(f"{r[i]}") for r in rows)) for i, h in enumerate(header)]
    print("  ".join(f"{h:>{w}}" for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(f"{c:>{w}}" for c, w in zip(r, widths)))


def bench_mha_section(args: argparse.Namespace, device: torch.device) -> Dict[str, Any]:
    B, T, D, H = 32, 256, 256, 8
    runs, x = bench_mha.checked_runs(B, T, D, H, device)
    # Interleave the implementations round by round so that load on a shared machine
    # hits all of them alike; the figure is the median of the rounds.
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            times[name].append(bench_mha.time_fwd_bwd(run, x, device, args.warmup, args.repeats))
    med = {name: statistics.median(t) for name, t in times.items()}
    base = med["torch.nn.MultiheadAttention"]
    rows = [[name, f"{t * 1e3:.2f}", f"{t / base:.3f}"] for name, t in med.items()]
    table(f"MHA forward+backward, B={B} T={T} D={D} H={H}, {device}", ["implementation", "ms", "ratio to torch"], rows)
    return {"shape": [B, T, D, H], "device": str(device), "seconds": med,
            "ratio_to_torch": {n: t / base for n, t in med.items()}}


def bench_attention(args: argparse.Namespace) -> Dict[str, Any]:
    sizes = [256, 512, 1024, 2048] if args.quick else [512, 1024, 2048, 4096, 8192]
    Dh = 64
    impls: Dict[str, Callable[..., torch.Tensor]] = {
        "naive": scaled_dot_product_attention,
        "tiled": tiled_attention,
        "sdpa": F.scaled_dot_product_attention,
    }
    out: Dict[str, Any] = {"head_width": Dh, "n": sizes, "seconds": {k: [] for k in impls}, "peak_bytes": {k: [] for k in impls}}
    rows = []
    for n in sizes:
        g = torch.Generator().manual_seed(n)
        q, k, v = (torch.randn(1, 1, n, Dh, generator=g) for _ in range(3))
        results = {}
        for name, fn in impls.items():
            with torch.no_grad(), PeakMemory() as mem:
                results[name] = fn(q, k, v, is_causal=False)
            out["peak_bytes"][name].append(mem.peak)
        for name in ("tiled", "sdpa"):
            check(f"attention {name} n={n}", (results[name] - results["naive"]).abs().max().item(), 1e-5)
        del results
        repeats = max(1, args.repeats // 5) if n >= 4096 else args.repeats
        for name, fn in impls.items():
            with torch.no_grad():
                out["seconds"][name].append(measure_time(lambda: fn(q, k, v), repeats=repeats, warmup=1))
        s, m = out["seconds"], out["peak_bytes"]
        rows.append([n] + [f"{s[x][-1] * 1e3:.1f}" for x in impls] + [f"{s['tiled'][-1] / s['naive'][-1]:.2f}",
                     f"{s['sdpa'][-1] / s['naive'][-1]:.2f}"] + [f"{m[x][-1] / 2**20:.1f}" for x in impls]
                    + [f"{m['tiled'][-1] / m['naive'][-1]:.4f}"])
    table(f"attention forward, batch 1, one head, Dh={Dh}, cpu (time ms, peak extra memory MiB)",
          ["n", "naive ms", "tiled ms", "sdpa ms", "tiled/naive", "sdpa/naive", "naive MiB", "tiled MiB", "sdpa MiB",
           "tiled/naive mem"], rows)
    out["memory_ratio_tiled_to_naive"] = [t / nv for t, nv in zip(out["peak_bytes"]["tiled"], out["peak_bytes"]["naive"])]
    return out


#: The shape of chapter 10's GPT (its parameters cell): the generation and training
#: benchmarks time this model, with random weights (speed does not depend on them).
CHAPTER_GPT = {"d_model": 64, "num_heads": 4, "num_layers": 2}


def chapter_gpt(vocab: int = 65, max_len: int = 1024) -> Any:
    from attnlib.gpt import GPT

    torch.manual_seed(0)
    return GPT(vocab, dropout=0.0, max_len=max_len, **CHAPTER_GPT)


def gpt_shape() -> str:
    return f"d={CHAPTER_GPT['d_model']}, {CHAPTER_GPT['num_layers']} layers, {CHAPTER_GPT['num_heads']} heads"


def bench_generation(args: argparse.Namespace, device: torch.device, threads: int = 0) -> Dict[str, Any]:
    """Tokens per second with and without the KV cache; on the CPU with ``threads`` threads (0: as set)."""
    default_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model = chapter_gpt().to(device).eval()
        prompt = torch.randint(0, 65, (1, 16), generator=torch.Generator().manual_seed(0)).to(device)
        lengths = [64, 128, 256] if args.quick else [64, 128, 256, 512]
        # Correctness first: the cache must not change what is generated.
        a = model.generate(prompt, 64, temperature=0, use_cache=True)
        b = model.generate(prompt, 64, temperature=0, use_cache=False)
        if not torch.equal(a, b):
            raise SystemExit("generation with and without the KV cache differ; not timing it")
        out: Dict[str, Any] = {"new_tokens": lengths, "threads": torch.get_num_threads(),
                               "tokens_per_s": {"cache": [], "no cache": []}}
        rows = []
        modes = {"cache": True, "no cache": False}
        for n in lengths:
            for flag in modes.values():  # warm-up
                model.generate(prompt, n, temperature=0, use_cache=flag)
            # Interleaved, one generation of each mode per round, so that load on a shared
            # machine hits both alike; the figure is the median round.
            seconds: Dict[str, List[float]] = {mode: [] for mode in modes}
            for _ in range(max(3, args.repeats // 3)):
                for mode, flag in modes.items():
                    seconds[mode].append(measure_time(lambda: model.generate(prompt, n, temperature=0, use_cache=flag),
                                                      repeats=1, warmup=0, device=device))
            for mode in modes:
                out["tokens_per_s"][mode].append(n / statistics.median(seconds[mode]))
            c, u = out["tokens_per_s"]["cache"][-1], out["tokens_per_s"]["no cache"][-1]
            rows.append([n, f"{c:.0f}", f"{u:.0f}", f"{c / u:.1f}"])
        where = f"{device}, {torch.get_num_threads()} thread(s)" if device.type == "cpu" else str(device)
        table(f"GPT generation ({gpt_shape()}, batch 1, prompt 16), {where}",
              ["new tokens", "cache tok/s", "no-cache tok/s", "speed-up"], rows)
        return out
    finally:
        torch.set_num_threads(default_threads)


def matmul_flops(device: torch.device, n: int = 1024) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    t = measure_time(lambda: a @ b, repeats=10, warmup=2, device=device)
    return 2 * n**3 / t


def bench_training(args: argparse.Namespace, device: torch.device) -> Dict[str, Any]:
    B, T, V = 16, 128, 65
    model = chapter_gpt(V, max_len=T).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    data = torch.randint(0, V, (B, T + 1), generator=g).to(device)

    def step() -> float:
        logits = model(data[:, :-1])  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, V), data[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    first = step()
    if not (math.isfinite(first) and abs(first - math.log(V)) < 0.5):
        raise SystemExit(f"GPT initial loss {first:.3f} is not near ln(V) = {math.log(V):.3f}; not timing it")
    for _ in range(5):
        last = step()
    if not last < first:
        raise SystemExit(f"GPT loss did not fall ({first:.3f} -> {last:.3f}); not timing it")
    seconds = measure_time(step, repeats=args.repeats, warmup=2, device=device)
    params = sum(p.numel() for p in model.parameters())
    non_embedding = params - model.token_embedding.weight.numel() - model.position_embedding.weight.numel()
    L, D = model.config.num_encoder_layers, model.config.d_model
    # Training FLOPs per token: 6 per weight (forward 2, backward 4) plus attention's
    # scores and mixing, 2 * 2 * L * T * D forward, times 3 with the backward; the
    # tied output head is a (D, V) matmul counted once.
    flops_per_token = 6 * (non_embedding + V * D) + 12 * L * T * D
    tokens_per_s = B * T / seconds
    peak = matmul_flops(device)
    mfu = tokens_per_s * flops_per_token / peak
    table(f"GPT training step ({gpt_shape()}, batch {B} x {T} tokens), {device}",
          ["tokens/s", "model GFLOP/s", "matmul GFLOP/s", "MFU"],
          [[f"{tokens_per_s:.0f}", f"{tokens_per_s * flops_per_token / 1e9:.2f}", f"{peak / 1e9:.2f}", f"{mfu:.3f}"]])
    return {"batch": B, "length": T, "params": params, "flops_per_token": flops_per_token, "seconds_per_step": seconds,
            "tokens_per_s": tokens_per_s, "matmul_flops_per_s": peak, "mfu": mfu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=["mha", "attention", "generation", "training"])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the MHA comparison")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads (0: keep torch's default); 1 is steadier on a busy machine")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "run.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = set(args.only or ["mha", "attention", "generation", "training"])
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} after {args.warmup} warm-up runs")
    results: Dict[str, Any] = {"torch": torch.__version__, "machine": platform.machine(),
                               "threads": torch.get_num_threads(), "repeats": args.repeats, "quick": args.quick}
    if "mha" in chosen:
        results["mha"] = [bench_mha_section(args, d) for d in devices]
    if "attention" in chosen:
        results["attention"] = bench_attention(args)
    if "generation" in chosen:
        # Batch-1 generation is a chain of small operations. On the CPU it is measured
        # with one thread and with the configured count: a second thread speeds up the
        # uncached path's long matrices but makes the cached path's tiny steps uneven.
        cpu_threads = sorted({1, torch.get_num_threads()})
        results["generation"] = {f"cpu, {t} thread(s)": bench_generation(args, torch.device("cpu"), t) for t in cpu_threads}
        results["generation"].update({str(d): bench_generation(args, d) for d in devices if d.type != "cpu"})
    if "training" in chosen:
        results["training"] = {str(d): bench_training(args, d) for d in devices}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
