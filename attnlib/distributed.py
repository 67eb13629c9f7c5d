"""Data-parallel training with ``torchrun``: what :func:`attnlib.train.fit` needs, nothing more.

Chapter 14, "Scaling out", runs the GPT chapter's training on two processes.

Distributed data parallelism (Li et al., 2020, "PyTorch Distributed") keeps a full copy
of the model in every process. Each process reads its own share of every *global*
batch, computes gradients on it, and the processes average their gradients with an
all-reduce during the backward pass, so every copy takes the same optimiser step. With
equal shares and a mean loss, that step is the one a single process would take on the
whole global batch: the test ``tests/test_distributed.py`` checks exactly this.

A training script changes in three places and :func:`attnlib.train.fit` not at all::

    ctx = init_distributed()                         # reads RANK, WORLD_SIZE, ... from torchrun
    model = wrap_model(GPT(...).to(ctx.device), ctx) # DistributedDataParallel when world > 1
    batches = DistributedBatches(dataset, batch_size=32, rank=ctx.rank, world_size=ctx.world_size)
    fit(model, loss_fn, batches, steps=500, device=ctx.device, progress=ctx.is_main)
    shutdown_distributed()

and runs as ``torchrun --standalone --nproc_per_node 2 train.py``. The backend is
``gloo`` on the CPU and ``nccl`` on GPUs. :func:`init_distributed` also sets
``TQDM_DISABLE=1`` in every process but rank 0, so only one progress bar is drawn
even where ``progress`` is left on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ._checks import int_in_range, positive_int

__all__ = [
    "DistributedContext",
    "init_distributed",
    "wrap_model",
    "DistributedBatches",
    "shutdown_distributed",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a data-parallel run.

    Attributes:
        rank: this process's index, ``0 .. world_size - 1``.
        world_size: number of processes.
        local_rank: index among the processes of this machine (picks the GPU).
        device: the device this process computes on.
        backend: ``"gloo"``, ``"nccl"``, or ``None`` for a single process.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: Optional[str]

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that prints, plots and saves."""
        return self.rank == 0


def _env_int(name: str) -> Optional[int]:
    raw = os.environ.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer (got {raw!r})") from None


def init_distributed(backend: Optional[str] = None) -> DistributedContext:
    """Join the process group that ``torchrun`` set up, or run as a single process.

    ``torchrun`` starts one process per worker and gives each the environment
    variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
    ``MASTER_PORT``; this function reads them (``env://`` initialisation). Without
    them (a notebook, ``python train.py``) it returns a context of one process and
    initialises nothing, so the same script runs either way.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; by default ``nccl`` when CUDA is available
            (each process takes GPU ``LOCAL_RANK``), ``gloo`` otherwise.

    Returns:
        A :class:`DistributedContext`.

    Li et al. (2020), "PyTorch Distributed". Chapter 14.
    """
    if backend is not None and backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo', 'nccl' or None (got {backend!r})")
    world_size = _env_int("WORLD_SIZE")
    rank = _env_int("RANK")
    local_rank = _env_int("LOCAL_RANK")
    if world_size is None or world_size == 1:
        device = torch.device("cuda") if backend == "nccl" or (backend is None and torch.cuda.is_available()) else torch.device("cpu")
        return DistributedContext(rank=0, world_size=1, local_rank=0, device=device, backend=None)
    if rank is None:
        raise ValueError(f"WORLD_SIZE={world_size} is set but RANK is not: launch with torchrun")
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK must be in [0, WORLD_SIZE={world_size}) (got {rank})")
    local_rank = rank if local_rank is None else local_rank
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("backend='nccl' needs CUDA, which is not available (use 'gloo' on the CPU)")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if rank != 0:
        os.environ["TQDM_DISABLE"] = "1"  # one progress bar, rank 0's
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device, backend=backend)


def wrap_model(model: nn.Module, ctx: DistributedContext, **ddp_kwargs: Any) -> nn.Module:
    """Wrap ``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` when needed.

    DDP copies rank 0's parameters and buffers to every process at construction and
    averages the gradients across processes during ``backward()``, in buckets that
    overlap with the rest of the backward pass (Li et al., 2020, section 3.2). With
    one process the model is returned as it is.

    Args:
        model: the model, already on ``ctx.device``.
        ctx: from :func:`init_distributed`.
        ddp_kwargs: passed on to ``DistributedDataParallel``.

    Returns:
        The wrapped model (reach the original as ``.module``) or ``model`` itself.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (got {type(model).__name__})")
    if not isinstance(ctx, DistributedContext):
        raise TypeError(f"ctx must be a DistributedContext from init_distributed() (got {type(ctx).__name__})")
    if ctx.world_size == 1:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, **ddp_kwargs)


class DistributedBatches:
    """This process's share of every global batch, reshuffled at every pass.

    A :class:`~torch.utils.data.DistributedSampler` splits a permutation of the
    dataset into ``world_size`` disjoint shares of equal size, one per rank; this
    iterable batches this rank's share. Every pass over it (``fit`` restarts it when
    it is exhausted) calls ``set_epoch`` with the pass number, so each epoch has a new
    permutation that every rank agrees on. Step ``s`` of rank ``r`` reads batch ``s``
    of share ``r``; the global batch of step ``s`` is the union over ranks, of size
    ``batch_size * world_size``.

    Args:
        dataset: a map-style dataset.
        batch_size: examples per process and step (the *local* batch size).
        rank: this process's rank.
        world_size: number of processes.
        shuffle: permute the dataset at each epoch (same permutation on every rank).
        seed: seed of the permutations.
        drop_last: drop the last, incomplete batch of each epoch, so every step's
            local batches have the same size (needed for the exact equality with a
            single process).
        collate_fn: how to stack examples into a batch (DataLoader's default).

    Chapter 14.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        collate_fn: Optional[Callable[[List[Any]], Any]] = None,
    ) -> None:
        positive_int("batch_size", batch_size)
        positive_int("world_size", world_size)
        int_in_range("rank", rank, 0, world_size, high_name="world_size")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"dataset must be a map-style dataset with __len__ and __getitem__ (got {type(dataset).__name__})")
        if len(dataset) < world_size * batch_size and drop_last:
            raise ValueError(
                f"dataset has {len(dataset)} examples, fewer than one global batch of "
                f"batch_size * world_size = {batch_size * world_size}"
            )
        self.sampler: DistributedSampler[Any] = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        self.loader = DataLoader(
            dataset, batch_size=batch_size, sampler=self.sampler, drop_last=drop_last, collate_fn=collate_fn
        )
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.loader)

    def indices(self) -> Sequence[int]:
        """The dataset indices of this rank's share in the current epoch."""
        self.sampler.set_epoch(self.epoch)
        return list(iter(self.sampler))

    def __iter__(self) -> Iterator[Any]:
        self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)


def shutdown_distributed() -> None:
    """Leave the process group (call once at the end of a ``torchrun`` script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
