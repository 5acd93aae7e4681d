"""One plain GAN training loop with injected parts.

:func:`train_gan` knows nothing about what it trains: the caller passes the two
networks, their optimisers and two loss functions that turn a batch into the
discriminator's and the generator's loss. :func:`adversarial_steps` builds those
functions for ordinary (conditional) GANs; ``ganomaly`` passes its own.

What the loop adds is what every GAN user needs and few loops get right: mixed
precision on CUDA, a per-epoch loss history, divergence detection (a NaN or infinite
loss stops training with an error naming the epoch, before anything is saved),
checkpoints that hold everything needed to resume (weights, optimiser and scaler
states, EMA, RNG states, history, and the state of loss functions that keep any,
such as an adaptive augmentation's probability), and resumption that reproduces an
uninterrupted run exactly on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .device import (
    Rngs,
    autocast,
    distributed_context,
    flush_denormal,
    make_grad_scaler,
)
from .diffaugment import AdaptiveAugment, DiffAugment
from .ema import EMA
from .files import atomic_write
from .losses import GANLoss, gradient_penalty, r1_penalty

__all__ = ["TrainingDivergedError", "adversarial_steps", "train_gan"]

_CHECKPOINT_FORMAT = "gankit-checkpoint-1"

LossFn = Callable[[tuple[torch.Tensor, ...]], "torch.Tensor | tuple"]


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite; nothing was saved from the diverged epoch."""


def _split(result) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A loss function returns a loss, or ``(loss, {name: value to log})``."""
    if isinstance(result, tuple):
        return result[0], result[1]
    return result, {}


def _accumulate(sums: dict, counts: dict, values: dict[str, torch.Tensor]) -> None:
    for name, value in values.items():
        sums[name] = sums.get(name, 0) + value.detach().float()
        counts[name] = counts.get(name, 0) + 1


class _Shards:
    """Row indices of one epoch: all rows, or this rank's shard under torchrun.

    Distributed, every rank gets a :class:`~torch.utils.data.DistributedSampler`
    shard of the same shuffled order (padded so all ranks take the same number of
    steps), and its latent noise is re-seeded per epoch and rank, so ranks draw
    different fakes and a resumed run draws what the uninterrupted one did.
    """

    def __init__(self, n_rows: int, rngs: Rngs, seed: int | None = None):
        self.n_rows, self.rngs = n_rows, rngs
        self.rank, self.world = distributed_context()
        if seed is None:
            seed = int(torch.randint(2**31 - 1, (1,), generator=rngs.torch_cpu))
        self.seed = seed
        if self.world > 1:
            from torch.utils.data import DistributedSampler

            self.sampler = DistributedSampler(
                range(n_rows), num_replicas=self.world, rank=self.rank, seed=seed
            )

    def order(self, epoch: int, device: torch.device) -> torch.Tensor:
        if self.world == 1:
            return torch.randperm(self.n_rows, generator=self.rngs.torch_cpu).to(device)
        self.sampler.set_epoch(epoch)
        self.rngs.torch_device.manual_seed(
            (self.seed * 1_000_003 + epoch * 1009 + self.rank) % 2**63
        )
        return torch.tensor(list(self.sampler), device=device)


def _sync_replicas(*modules: nn.Module | None) -> None:
    """Start every rank from rank 0's weights and buffers."""
    import torch.distributed as dist

    for module in modules:
        if module is not None:
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)


def _average_gradients(optimizer: torch.optim.Optimizer, world: int) -> None:
    """All-reduce the gradients of an optimizer's parameters (DDP's averaging).

    Done by hand rather than by wrapping the nets in DistributedDataParallel because
    the injected loss functions call the bare networks, and the generator step must
    not all-reduce the frozen discriminator.
    """
    import torch.distributed as dist

    grads = [
        p.grad
        for group in optimizer.param_groups
        for p in group["params"]
        if p.grad is not None
    ]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


class _LossWithState:
    """A loss function with state that :func:`train_gan` checkpoints and restores."""

    def __init__(self, function: LossFn, state_dict, load_state_dict):
        self._function = function
        self.state_dict, self.load_state_dict = state_dict, load_state_dict

    def __call__(self, batch: tuple[torch.Tensor, ...]):
        return self._function(batch)


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_write(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict:
    """Load a training checkpoint without executing code (``weights_only=True``)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(
            f"{path}: not a readable gankit checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a gankit training checkpoint")
    return state


def train_gan(
    *,
    generator: nn.Module,
    discriminator: nn.Module,
    g_optimizer: torch.optim.Optimizer,
    d_optimizer: torch.optim.Optimizer,
    d_loss_fn: LossFn,
    g_loss_fn: LossFn,
    data: Sequence[torch.Tensor],
    n_epochs: int,
    batch_size: int,
    device: torch.device,
    rngs: Rngs,
    n_critic: int = 1,
    ema: EMA | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    checkpoint_meta: dict | None = None,
    verbose: bool = False,
    desc: str = "training",
) -> list[dict[str, float]]:
    """Train a GAN for ``n_epochs`` epochs over in-memory tensors.

    Each batch gets one discriminator step; every ``n_critic``-th batch (counted
    across epochs) also gets a generator step (on the same batch). During the
    generator step the discriminator's parameters are frozen, so no gradient is
    computed for them.

    Parameters
    ----------
    generator, discriminator : nn.Module
        Moved to ``device``. Conv nets also go to channels-last memory on CUDA.
    g_optimizer, d_optimizer : torch.optim.Optimizer
        Built on the networks' parameters (their state moves with the networks).
    d_loss_fn, g_loss_fn : callable
        ``fn(batch) -> loss`` or ``fn(batch) -> (loss, {name: tensor})``, where
        ``batch`` is a tuple of tensors on ``device`` (rows of ``data``); extra named
        values are averaged per epoch into the history. A function with
        ``state_dict()`` and ``load_state_dict(state)`` methods (those of
        :func:`adversarial_steps` with lazy R1 or an adaptive augmentation) has its
        state saved in checkpoints and restored on resume.
    data : sequence of torch.Tensor
        Tensors with the same first dimension (e.g. images and labels).
    n_epochs, batch_size : int
        Under torchrun ``batch_size`` is the global batch: each of the N processes
        takes ``ceil(batch_size / N)`` rows of its shard per step (at least 2), so an
        epoch makes as many optimiser steps as in one process and the same
        hyperparameters train the same model.
    device : torch.device
    rngs : gancore.device.Rngs
        ``rngs.torch_cpu`` shuffles; the loss functions draw from the others. All are
        saved in checkpoints.
    n_critic : int, default=1
        Discriminator steps per generator step (5 is usual for WGAN-GP).
    ema : gancore.ema.EMA, optional
        Updated after every generator step.
    checkpoint_path : str or Path, optional
        Where to write checkpoints (atomically, so a killed run leaves the previous
        one intact).
    checkpoint_every : int, default=0
        Write a checkpoint every this many epochs and after the last (0: never).
    resume : bool, default=False
        Continue from ``checkpoint_path`` if it exists (start afresh otherwise).
    checkpoint_meta : dict, optional
        Stored in checkpoints and compared on resume, so a checkpoint of another
        configuration is refused instead of silently mixed in.
    verbose : bool, default=False
        Show a tqdm progress bar with the current losses.
    desc : str, default="training"
        Label of the progress bar.

    Returns
    -------
    history : list of dict
        One entry per epoch: ``epoch`` (1-based), ``d_loss``, ``g_loss`` (means over
        the epoch's steps) and any extra logged values.

    Raises
    ------
    TrainingDivergedError
        When an epoch's losses are NaN or infinite.
    """
    if n_epochs < 0 or batch_size < 1 or n_critic < 1:
        raise ValueError(
            f"need n_epochs >= 0, batch_size >= 1, n_critic >= 1; got {n_epochs}, "
            f"{batch_size}, {n_critic}"
        )
    n_rows = int(data[0].shape[0])
    if n_rows == 0 or any(int(t.shape[0]) != n_rows for t in data):
        raise ValueError("data must be non-empty tensors with the same first dimension")
    if checkpoint_every and checkpoint_path is None:
        raise ValueError("checkpoint_every needs a checkpoint_path")

    memory_format = torch.preserve_format
    if device.type == "cuda" and data[0].dim() == 4:
        memory_format = torch.channels_last
    generator.to(device, memory_format=memory_format)
    discriminator.to(device, memory_format=memory_format)
    if ema is not None:
        ema.module.to(device, memory_format=memory_format)
    data = tuple(
        t.to(device, memory_format=memory_format) if t.dim() == 4 else t.to(device)
        for t in data
    )
    d_scaler, g_scaler = make_grad_scaler(device), make_grad_scaler(device)

    rank, world = distributed_context()
    if world > 1:
        _sync_replicas(generator, discriminator, ema.module if ema else None)
        # Per-rank share of the global batch: with the whole batch on every rank,
        # N processes would make N times fewer steps and train a weaker model.
        batch_size = max(2, math.ceil(batch_size / world))
    history: list[dict[str, float]] = []
    start_epoch = 1
    shard_seed = None
    d_steps = 0
    meta = dict(checkpoint_meta or {})
    stateful = {
        name: function
        for name, function in (("d_loss_fn", d_loss_fn), ("g_loss_fn", g_loss_fn))
        if callable(getattr(function, "state_dict", None))
    }
    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        state = load_checkpoint(checkpoint_path)
        if state["meta"] != meta:
            raise ValueError(
                f"{checkpoint_path}: the checkpoint was made with another "
                f"configuration ({state['meta']} != {meta}); remove it or match it"
            )
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        g_optimizer.load_state_dict(state["g_optimizer"])
        d_optimizer.load_state_dict(state["d_optimizer"])
        d_scaler.load_state_dict(state["d_scaler"])
        g_scaler.load_state_dict(state["g_scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        loss_state = state.get("loss_state") or {}
        for name, function in stateful.items():
            if name not in loss_state:
                raise ValueError(
                    f"{checkpoint_path}: the checkpoint holds no state for {name} "
                    "(made without lazy R1 or adaptive augmentation?); remove it"
                )
            function.load_state_dict(loss_state[name])
        rngs.load_state_dict(state["rngs"])
        history = list(state["history"])
        start_epoch = int(state["epoch"]) + 1
        shard_seed = state["shard_seed"]
        d_steps = int(state["d_steps"])
    shards = _Shards(n_rows, rngs, shard_seed)

    def checkpoint(epoch: int) -> None:
        if rank != 0:  # one writer; every rank holds the same weights
            return
        _save_checkpoint(
            Path(checkpoint_path),
            {
                "format": _CHECKPOINT_FORMAT,
                "epoch": epoch,
                "meta": meta,
                "generator": generator.state_dict(),
                "discriminator": discriminator.state_dict(),
                "g_optimizer": g_optimizer.state_dict(),
                "d_optimizer": d_optimizer.state_dict(),
                "d_scaler": d_scaler.state_dict(),
                "g_scaler": g_scaler.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "loss_state": {
                    name: function.state_dict() for name, function in stateful.items()
                },
                "rngs": rngs.state_dict(),
                "history": history,
                "shard_seed": shards.seed,
                "d_steps": d_steps,
            },
        )

    def step(loss_fn, batch, optimizer, scaler) -> tuple[torch.Tensor, dict]:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            loss, logs = _split(loss_fn(batch))
        scaler.scale(loss).backward()
        if world > 1:
            _average_gradients(optimizer, world)
        scaler.step(optimizer)
        scaler.update()
        return loss.detach().float(), logs

    with flush_denormal(device):  # see gancore.device.flush_denormal
        generator.train()
        discriminator.train()
        epochs = tqdm(
            range(start_epoch, n_epochs + 1),
            desc=desc,
            disable=not verbose,
            initial=start_epoch - 1,
            total=n_epochs,
            unit="epoch",
        )
        for epoch in epochs:
            order = shards.order(epoch, device)
            # Sums stay on the device: one synchronisation per epoch, not per step.
            sums: dict[str, torch.Tensor] = {}
            counts: dict[str, int] = {}
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                if rows.numel() < 2 < n_rows:
                    continue  # batch norm cannot train on one row; used next epoch
                batch = tuple(t[rows] for t in data)
                d_loss, logs = step(d_loss_fn, batch, d_optimizer, d_scaler)
                _accumulate(sums, counts, {"d_loss": d_loss, **logs})
                d_steps += 1  # counted across epochs: small data still reaches G
                if d_steps % n_critic == 0:
                    discriminator.requires_grad_(False)
                    try:
                        g_loss, logs = step(g_loss_fn, batch, g_optimizer, g_scaler)
                    finally:
                        discriminator.requires_grad_(True)
                    _accumulate(sums, counts, {"g_loss": g_loss, **logs})
                    if ema is not None:
                        ema.update(generator)

            means = {k: v / counts[k] for k, v in sums.items()}
            if world > 1:  # the history holds the mean over all ranks
                import torch.distributed as dist

                stacked = torch.stack([means[k] for k in sorted(means)])
                dist.all_reduce(stacked)
                means = dict(zip(sorted(means), stacked / world, strict=True))
            record = {"epoch": epoch}
            record.update({k: float(v) for k, v in means.items()})
            bad = [f"{k}={v}" for k, v in record.items() if not math.isfinite(v)]
            # Finite losses do not prove finite weights: batch-norm running variances
            # can overflow to inf while every loss stays finite, and such a model would
            # be saved and generate garbage.
            bad += _non_finite_tensors(
                generator=generator,
                discriminator=discriminator,
                ema=ema.module if ema is not None else None,
            )
            if bad:
                raise TrainingDivergedError(
                    f"training diverged in epoch {epoch} of {n_epochs}: "
                    + ", ".join(bad[:4])
                    + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
                    + "; lower the learning rate or resume from the last checkpoint"
                    + (f" ({checkpoint_path})" if checkpoint_path else "")
                )
            history.append(record)
            if verbose:
                epochs.set_postfix(
                    {k: f"{v:.3g}" for k, v in record.items() if k != "epoch"}
                )
            if checkpoint_every and (
                epoch % checkpoint_every == 0 or epoch == n_epochs
            ):
                checkpoint(epoch)
        epochs.close()
        generator.eval()
        discriminator.eval()
        return history


def _non_finite_tensors(**modules: nn.Module | None) -> list[str]:
    """Names of parameters and buffers holding NaN or inf (one sync for all)."""
    named = [
        (f"{label}.{name}", tensor)
        for label, module in modules.items()
        if module is not None
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]
        if tensor.is_floating_point() and tensor.numel()
    ]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(t).all() for _, t in named]).tolist()
    return [
        f"non-finite {name}"
        for (name, _), ok in zip(named, finite, strict=True)
        if not ok
    ]


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def adversarial_steps(
    generator: nn.Module,
    discriminator: nn.Module,
    loss: GANLoss,
    *,
    latent_dim: int,
    rngs: Rngs,
    diffaugment: DiffAugment | AdaptiveAugment | None = None,
    conditional: bool = False,
    r1_gamma: float = 0.0,
    r1_every: int = 16,
) -> tuple[LossFn, LossFn]:
    """Loss functions for an ordinary (conditional) GAN, for :func:`train_gan`.

    The fake batch is sized from the real batch (so a short last batch works), and
    conditional fakes take the real batch's labels, so classes are seen in their
    data proportions. With ``diffaugment``, real and fake batches both go through it
    before the discriminator, in both steps.

    Parameters
    ----------
    generator, discriminator : nn.Module
    loss : GANLoss
    latent_dim : int
    rngs : gancore.device.Rngs
        Latent codes and augmentations are drawn from ``rngs.torch_device``.
    diffaugment : DiffAugment or AdaptiveAugment, optional
        An augmentation with an ``update(real_logits)`` method (ADA) is given the
        logits of every augmented real batch, and its ``p`` is logged per epoch as
        ``augment_p``.
    conditional : bool, default=False
        Batches are ``(x, y)`` and both networks take labels.
    r1_gamma : float, default=0.0
        Weight ``gamma`` of the R1 penalty on real images
        (:func:`gancore.losses.r1_penalty`); 0 turns it off.
    r1_every : int, default=16
        Lazy regularisation (StyleGAN2, Karras et al. 2020): the penalty is computed
        on every ``r1_every``-th discriminator step only, starting with the first,
        and multiplied by ``r1_every`` so that its average weight is unchanged.
        It is logged per epoch as ``r1_penalty`` (with ``gamma``, without the
        ``r1_every`` factor; the mean over the steps that computed it). StyleGAN2
        also multiplies Adam's learning rate by ``c = r1_every / (r1_every + 1)`` and
        raises its betas to the power ``c``; that is the caller's choice.

    Returns
    -------
    d_loss_fn, g_loss_fn : callable
        With lazy R1 or an adaptive augmentation, ``d_loss_fn`` has
        ``state_dict`` / ``load_state_dict`` (its step count and the augmentation's
        state), which :func:`train_gan` keeps in checkpoints.
    """
    if loss.needs_gradient_penalty and _has_batch_norm(discriminator):
        raise ValueError(
            "WGAN-GP's per-sample gradient penalty is invalid with batch norm in the "
            "discriminator; build it with normalization='instance' or None"
        )
    if r1_gamma < 0 or r1_every < 1:
        raise ValueError(
            f"need r1_gamma >= 0 and r1_every >= 1; got {r1_gamma}, {r1_every}"
        )
    noise_rng = rngs.torch_device
    adaptive = callable(getattr(diffaugment, "update", None))
    progress = {"d_steps": 0}  # for lazy R1; saved with the checkpoints

    def augment(x: torch.Tensor) -> torch.Tensor:
        return diffaugment(x, noise_rng) if diffaugment is not None else x

    def generate(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch[0]
        y = batch[1] if conditional else None
        z = torch.randn(x.shape[0], latent_dim, device=x.device, generator=noise_rng)
        return generator(z, y) if conditional else generator(z), y

    def critic(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return discriminator(x, y) if conditional else discriminator(x)

    def d_loss_fn(batch):
        with torch.no_grad():
            fake, y = generate(batch)
        with_r1 = r1_gamma > 0 and progress["d_steps"] % r1_every == 0
        progress["d_steps"] += 1
        logs = {}
        real = batch[0]
        if with_r1:  # the gradient is taken at the real image, before augmentation
            real = real.detach().requires_grad_(True)
        if adaptive:
            # A fill, not a copy from the host: no synchronisation on CUDA.
            logs["augment_p"] = torch.full((), diffaugment.p, device=real.device)
        real_in, fake_in = augment(real), augment(fake)
        real_logits = critic(real_in, y)
        d_loss = loss.discriminator_loss(real_logits, critic(fake_in, y))
        if adaptive:
            diffaugment.update(real_logits.detach())
        if with_r1:
            penalty = r1_penalty(real_logits, real, gamma=r1_gamma)
            d_loss = d_loss + r1_every * penalty
            logs["r1_penalty"] = penalty
        if loss.needs_gradient_penalty:
            penalty = gradient_penalty(
                discriminator, real_in, fake_in, y, generator=noise_rng
            )
            d_loss = d_loss + loss.gp_weight * penalty
            logs["gradient_penalty"] = penalty
        return (d_loss, logs) if logs else d_loss

    def g_loss_fn(batch):
        fake, y = generate(batch)
        return loss.generator_loss(critic(augment(fake), y))

    if not (adaptive or r1_gamma > 0):
        return d_loss_fn, g_loss_fn

    def state_dict() -> dict:
        return {
            "d_steps": progress["d_steps"],
            "augment": diffaugment.state_dict() if adaptive else None,
        }

    def load_state_dict(state: dict) -> None:
        progress["d_steps"] = int(state["d_steps"])
        if adaptive:
            diffaugment.load_state_dict(state["augment"])

    return _LossWithState(d_loss_fn, state_dict, load_state_dict), g_loss_fn
