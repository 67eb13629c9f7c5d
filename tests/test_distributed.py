"""Tests for attnlib.distributed: two torchrun processes train exactly like one process.

The test launches this very file under ``python -m torch.distributed.run`` (torchrun)
with two CPU processes (gloo). Each trains a small float64 GPT with the unchanged
:func:`attnlib.train.fit` on its share of every global batch and saves its parameters;
the test then trains one process on the same global batches and compares.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from attnlib.distributed import DistributedBatches, DistributedContext, init_distributed, shutdown_distributed, wrap_model
from attnlib.gpt import GPT
from attnlib.train import fit

N, LENGTH, VOCAB, LOCAL_BATCH, WORLD, STEPS = 40, 9, 13, 4, 2, 7  # 5 steps per epoch: STEPS crosses an epoch


def make_dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(123)
    return TensorDataset(torch.randint(0, VOCAB, (N, LENGTH), generator=g))


def make_model() -> GPT:
    torch.manual_seed(7)
    return GPT(VOCAB, d_model=16, num_heads=2, num_layers=2, dropout=0.0, max_len=LENGTH).double()


def next_token_loss(model: torch.nn.Module, batch) -> torch.Tensor:
    seq = batch[0]
    logits = model(seq[:, :-1])  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, VOCAB), seq[:, 1:].reshape(-1))  # mean over tokens


def worker(out_dir: str) -> None:
    """What each torchrun process runs: the three changed lines, then fit unchanged."""
    ctx = init_distributed()
    assert ctx.world_size == WORLD and ctx.backend == "gloo"
    model = wrap_model(make_model().to(ctx.device), ctx)
    batches = DistributedBatches(make_dataset(), LOCAL_BATCH, rank=ctx.rank, world_size=ctx.world_size, seed=3)
    history = fit(model, next_token_loss, batches, steps=STEPS, lr=1e-2, device=ctx.device, progress=ctx.is_main)
    state = {k: v.detach().cpu() for k, v in model.module.state_dict().items()}  # type: ignore[union-attr]
    torch.save({"state": state, "loss": history.loss, "tqdm_disabled": os.environ.get("TQDM_DISABLE")},
               Path(out_dir) / f"rank{ctx.rank}.pt")
    shutdown_distributed()


def test_two_processes_match_one_process_on_the_same_global_batches(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TQDM_DISABLE")}
    env["OMP_NUM_THREADS"] = "1"
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD),
           str(Path(__file__).resolve()), str(tmp_path)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=root)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    # The single process: the same initial model, each step on the union of the ranks' batches.
    shares = [DistributedBatches(make_dataset(), LOCAL_BATCH, rank=r, world_size=WORLD, seed=3) for r in range(WORLD)]
    global_batches = []
    while len(global_batches) < STEPS:
        for per_rank in zip(*shares):  # one epoch, every rank in lockstep
            global_batches.append([torch.cat([b[0] for b in per_rank])])  # (WORLD * LOCAL_BATCH, LENGTH)
    model = make_model()
    history = fit(model, next_token_loss, global_batches[:STEPS], steps=STEPS, lr=1e-2, progress=False)

    reference = model.state_dict()
    moved = max((reference[k] - make_model().state_dict()[k]).abs().max().item() for k in reference)
    assert moved > 1e-3  # training changed the parameters, so equality below means something
    for r, saved in enumerate(ranks):
        for name, value in reference.items():
            assert torch.allclose(saved["state"][name], value, atol=1e-10, rtol=0), f"rank {r}: {name} differs"
    # The global mean loss is the mean of the ranks' local mean losses (equal local sizes).
    for step in range(STEPS):
        local_mean = sum(saved["loss"][step] for saved in ranks) / WORLD
        assert abs(local_mean - history.loss[step]) < 1e-10
    assert ranks[0]["tqdm_disabled"] is None and ranks[1]["tqdm_disabled"] == "1"  # one progress bar


def test_batches_are_disjoint_shares_that_reshuffle_every_epoch():
    shares = [DistributedBatches(make_dataset(), LOCAL_BATCH, rank=r, world_size=WORLD, seed=3) for r in range(WORLD)]
    first = [list(s.indices()) for s in shares]
    assert not set(first[0]) & set(first[1]) and len(set(first[0]) | set(first[1])) == N
    for s in shares:
        assert len(list(iter(s))) == len(s) == N // (WORLD * LOCAL_BATCH)
    second = [list(s.indices()) for s in shares]
    assert second[0] != first[0]  # a new permutation in epoch 1
    assert not set(second[0]) & set(second[1])


def test_single_process_without_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed()
    assert ctx.world_size == 1 and ctx.rank == 0 and ctx.is_main and ctx.backend is None
    model = torch.nn.Linear(2, 2)
    assert wrap_model(model, ctx) is model


def test_errors_name_the_problem(monkeypatch):
    with pytest.raises(ValueError, match="backend must be 'gloo', 'nccl' or None"):
        init_distributed("mpi")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer"):
        init_distributed()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ValueError, match="RANK is not"):
        init_distributed()
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match=r"RANK must be in \[0, WORLD_SIZE=2\)"):
        init_distributed()
    if not torch.cuda.is_available():
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(ValueError, match="backend='nccl' needs CUDA"):
            init_distributed("nccl")
    ctx = DistributedContext(0, 1, 0, torch.device("cpu"), None)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        wrap_model("model", ctx)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ctx must be a DistributedContext"):
        wrap_model(torch.nn.Linear(1, 1), {"rank": 0})  # type: ignore[arg-type]
    data = make_dataset()
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        DistributedBatches(data, 0)
    with pytest.raises(ValueError, match="world_size must be a positive int"):
        DistributedBatches(data, 2, world_size=0)
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, world_size=2\)"):
        DistributedBatches(data, 2, rank=2, world_size=2)
    with pytest.raises(TypeError, match="dataset must be a map-style dataset"):
        DistributedBatches(iter([1, 2]), 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fewer than one global batch"):
        DistributedBatches(data, 30, world_size=2)


if __name__ == "__main__":  # run by torchrun from the first test
    worker(sys.argv[1])
