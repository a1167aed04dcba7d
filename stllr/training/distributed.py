"""Data-parallel training across processes (torchrun), the way S-TLLR needs it.

S-TLLR calls ``backward()`` once per step of the learning window (``delay_ls`` calls per batch),
so ``torch.nn.parallel.DistributedDataParallel``'s gradient hooks would all-reduce after every
one of them. Here the model is not wrapped: each rank accumulates the window's gradients locally
and :func:`allreduce_gradients` averages them ONCE per optimizer step (one flat, coalesced
all-reduce). With mean-reduced losses and equal local batches (guaranteed by the samplers below),
the averaged gradient equals the gradient of the global batch, so N ranks with local batch b
train like one process with batch N*b.

Launch::

    torchrun --nproc_per_node 4 -m stllr train --arch ... --batch-size 64   # 64 = global batch

NCCL on GPU (one GPU per process, ``cuda:LOCAL_RANK``), gloo on CPU (``--cpu``). Only rank 0 writes
files. Everything here is a no-op with a single process."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = [
    "DistContext",
    "init_distributed",
    "cleanup_distributed",
    "is_distributed_env",
    "broadcast_module",
    "allreduce_gradients",
    "allreduce_sum",
    "allreduce_max",
    "ShardedShuffleSampler",
    "EvalShardSampler",
    "barrier",
]


@dataclass
class DistContext:
    """Where this process stands: rank, world size, device. ``enabled`` is False for one process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_distributed_env() -> bool:
    """True when launched by torchrun (or an equivalent) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(cpu: bool = False) -> DistContext:
    """Set up the process group from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT). Single process: no group, device cuda:0 if available (and not
    ``cpu``) else cpu."""
    use_cuda = torch.cuda.is_available() and not cpu
    if not is_distributed_env():
        return DistContext(device=torch.device("cuda") if use_cuda else torch.device("cpu"))
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    owns = False
    if not dist.is_initialized():
        _import_modules_that_capture_world()
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        owns = True
    return DistContext(
        rank=rank,
        world_size=world,
        local_rank=local_rank,
        backend=backend,
        device=device,
        owns_group=owns,
    )


def _import_modules_that_capture_world() -> None:
    """Import ``torch.distributed.nn`` BEFORE the process group exists.

    Its functions take ``group=group.WORLD`` as a default argument, evaluated when the module is
    first imported. Imported after ``init_process_group`` they hold the WORLD process group for
    good, and ``destroy_process_group()`` can no longer free it: gloo's threads (``gloo_tcp_loop``,
    ``pt_gloo_runloop``) then still run when the interpreter shuts down. It is imported lazily by
    PyTorch itself: constructing the first ``torch.optim`` optimizer imports ``torch._dynamo``,
    which imports ``torch.distributed.nn`` (PyTorch 2.13), i.e. after the group exists in
    ``train_trial``. Imported first, the defaults capture ``None`` (no group yet)."""
    try:
        import torch.distributed.nn  # noqa: F401
    except ImportError:  # pragma: no cover - builds without it: nothing captures the group
        pass


def cleanup_distributed(ctx: DistContext) -> None:
    if ctx.enabled and ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def broadcast_module(module: torch.nn.Module, ctx: DistContext, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (identical start)."""
    if not ctx.enabled:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def allreduce_gradients(params: Iterable[torch.nn.Parameter], ctx: DistContext) -> None:
    """Average the ``.grad`` of ``params`` over all ranks, in one coalesced all-reduce.

    Every rank must hold gradients for the same parameters (true for the registry's models: every
    trainable parameter receives a gradient at each learning step)."""
    if not ctx.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(ctx.world_size)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def allreduce_sum(values: Sequence[float], ctx: DistContext) -> List[float]:
    """Sum a few numbers over ranks (float64)."""
    if not ctx.enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def allreduce_max(value: int, ctx: DistContext) -> int:
    if not ctx.enabled:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


class ShardedShuffleSampler(Sampler[int]):
    """Training sampler used in every run, single-process included.

    The epoch's order is ``randperm(n)`` of a generator seeded with ``seed + epoch`` (call
    :meth:`set_epoch`), a pure function of (seed, epoch): a resumed run or a trial rerun alone
    sees the same order. Rank r takes positions r, r+W, r+2W, ... (padded by wrapping around so
    every rank has the same count), so consecutive local batches of size b on W ranks are exactly
    the consecutive global batches of size W*b of a single process with the same seed.
    """

    def __init__(
        self,
        num_samples: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
    ):
        if num_samples <= 0:
            raise ValueError("ShardedShuffleSampler: the dataset is empty")
        self.n = int(num_samples)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.epoch = 0
        self.per_rank = math.ceil(self.n / self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> List[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            idx = torch.randperm(self.n, generator=g).tolist()
        else:
            idx = list(range(self.n))
        total = self.per_rank * self.num_replicas
        if total > self.n:
            idx += idx[: total - self.n]
        return idx

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return self.per_rank


class EvalShardSampler(Sampler[int]):
    """Evaluation sampler: rank r takes samples r, r+W, ... in order, no padding, so the counts
    summed over ranks are exactly the dataset's."""

    def __init__(self, num_samples: int, num_replicas: int = 1, rank: int = 0):
        self.n = int(num_samples)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.num_replicas))
