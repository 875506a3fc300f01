"""Data-parallel training across processes: the process group, collectives with gradients, sync BN.

A run is distributed when a torch process group is initialised (`reid/engine/launch.py`
starts one process per device and initialises it); everything here is a no-op
otherwise, so one code path serves one process and many.

Every collective that carries gradients backs them with a sum over ranks. That
makes each rank's backward the gradient of the sum of all ranks' losses; since
every rank computes the same global loss (features and targets gathered), DDP's
average of those gradients is exactly the gradient of the single-process loss on
the global batch.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import torch
import torch.distributed as dist

from reidplug.core.errors import ConfigError

# FastReID spells it syncBN; "SyncBN" is accepted too.
SYNC_BN_NAMES = ("syncbn",)
# How long a collective waits for a missing rank before it fails (a hang would be worse).
TIMEOUT_ENV = "REIDPLUG_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800.0


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if is_distributed() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes checkpoints, logs and metrics."""
    return rank() == 0


def barrier() -> None:
    if is_distributed() and world_size() > 1:
        dist.barrier()


def backend_for(device_type: str) -> str:
    return "nccl" if device_type == "cuda" else "gloo"


def timeout() -> timedelta:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        seconds = DEFAULT_TIMEOUT_S
    return timedelta(seconds=max(seconds, 1.0))


def init_process_group(backend: str, url: str, world: int, global_rank: int) -> None:
    dist.init_process_group(backend, init_method=url, world_size=world, rank=global_rank, timeout=timeout())


def destroy_process_group() -> None:
    if is_distributed():
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolve_dist_url(url: str, num_machines: int) -> str:
    """`auto`: a free port on this machine (one machine only); otherwise the URL as given."""
    url = (url or "auto").strip()
    if url == "auto":
        if num_machines > 1:
            raise ConfigError("--dist-url auto works on one machine only; give every machine the same "
                              "tcp://HOST:PORT of machine rank 0", key="--dist-url")
        return f"tcp://127.0.0.1:{free_port()}"
    if not url.startswith(("tcp://", "file://", "env://")):
        raise ConfigError(f"expected tcp://HOST:PORT, file:///PATH, env:// or auto, got {url!r}", key="--dist-url")
    return url


# ---------------------------------------------------------------- objects and tensors


def all_gather_objects(obj) -> list:
    """`obj` of every rank, in rank order (picklable objects only; meant for small things)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_objects(obj, dst: int = 0) -> list | None:
    """`obj` of every rank in rank order on rank `dst`; None on the others."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size() if rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def broadcast_object(obj, src: int = 0):
    """Rank `src`'s `obj` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class _AllGather(torch.autograd.Function):
    """Concatenation of every rank's tensor (same shape on every rank) along dim 0."""

    @staticmethod
    def forward(ctx, tensor):
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        ctx.size = tensor.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss depends on this rank's slice
        r = dist.get_rank()
        return grad[r * ctx.size:(r + 1) * ctx.size]


class _AllReduce(torch.autograd.Function):
    """The sum of every rank's tensor."""

    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def gather_batch(tensor: torch.Tensor) -> torch.Tensor:
    """The global batch of `tensor` (rank order), differentiable; the tensor itself in one process."""
    if world_size() == 1:
        return tensor
    if not tensor.requires_grad:
        parts = [torch.empty_like(tensor) for _ in range(world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)
    return _AllGather.apply(tensor)


def gather_outputs(outputs, local_batch: int):
    """Every tensor of a model's training outputs that has the batch as its first dimension, gathered."""
    if world_size() == 1:
        return outputs
    if isinstance(outputs, torch.Tensor):
        return gather_batch(outputs) if outputs.dim() and outputs.shape[0] == local_batch else outputs
    if isinstance(outputs, dict):
        return {k: gather_outputs(v, local_batch) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(gather_outputs(v, local_batch) for v in outputs)
    return outputs


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over ranks, differentiable."""
    if world_size() == 1:
        return tensor
    return _AllReduce.apply(tensor)


# ---------------------------------------------------------------- synchronised batch norm


class GlobalBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch, on any backend.

    torch's SyncBatchNorm refuses CPU modules (it needs CUDA and NCCL); this one
    reduces the per-channel sum, sum of squares and count with a differentiable
    all-reduce, which gloo does too. In eval mode, and in one process, it is
    plain batch norm. It accepts [N, C] and [N, C, ...] inputs.
    """

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input):
        if not (self.training and world_size() > 1):
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        # All in float64, the squares included: E[x^2] - E[x]^2 cancels badly in float32 for a
        # channel whose mean is large next to its spread (a float32 square is exact in float64).
        x = input.double()
        count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float64, device=x.device)
        stats = all_reduce_sum(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.mul_(1 - momentum).add_(mean.to(self.running_mean.dtype), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var.dtype), alpha=momentum)
        shape = [1, c] + [1] * (input.dim() - 2)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


def convert_sync_batchnorm(model: torch.nn.Module, device_type: str) -> torch.nn.Module:
    """Every batch norm of `model` made to use global-batch statistics (MODEL.BACKBONE.NORM: syncBN).

    On CUDA it is torch's SyncBatchNorm (NCCL kernels); on the CPU (gloo), GlobalBatchNorm.
    Parameters, buffers and requires_grad flags carry over.
    """
    if device_type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert(model)


def _convert(module: torch.nn.Module) -> torch.nn.Module:
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                new.weight = module.weight
                new.bias = module.bias
        if module.track_running_stats:
            new.running_mean = module.running_mean
            new.running_var = module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        converted = _convert(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


def wants_sync_bn(cfg) -> bool:
    norms = (cfg.MODEL.BACKBONE.NORM, cfg.MODEL.HEADS.NORM)
    return any(str(n).lower() in SYNC_BN_NAMES for n in norms)


def wrap_ddp(model: torch.nn.Module, device: torch.device, *, find_unused: bool) -> torch.nn.Module:
    """The DistributedDataParallel wrapper the trainer runs the forward pass through.

    Buffers are not broadcast from rank 0 before each forward (FastReID's choice): with
    syncBN every rank holds the same statistics anyway, and without it each rank keeps its own.
    """
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    import inspect

    ddp = torch.nn.parallel.DistributedDataParallel
    # Newer torch names the switch forward_sync_buffers (buffers are still synced once, at init).
    sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters
            else {"broadcast_buffers": False})
    return ddp(model, device_ids=ids, find_unused_parameters=find_unused, **sync)
