"""Device choice, mixed precision and random number generators.

Randomness in gankit always flows from a ``random_state`` into *local* generators:
the global torch and numpy seeds are never touched, so fitting one estimator cannot
change the results of another.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "Rngs",
    "autocast",
    "distributed_context",
    "init_distributed",
    "is_main_process",
    "make_grad_scaler",
    "make_rngs",
    "resolve_device",
]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a device specification into a :class:`torch.device`.

    Parameters
    ----------
    device : str or torch.device, default="auto"
        ``"auto"`` picks CUDA when it is available and the CPU otherwise; any other
        value is passed to :class:`torch.device` (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If CUDA is asked for on a machine without it, or the string is not a device.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        resolved = device
    elif device == "auto":
        resolved = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            resolved = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(
                f"device={device!r} is not a device; use 'auto', 'cpu' or 'cuda[:N]'"
            ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} asks for CUDA but no CUDA device is present"
        )
    return resolved


def distributed_context() -> tuple[int, int]:
    """``(rank, world_size)`` of the process group; ``(0, 1)`` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True on rank 0, or when not distributed: the process that writes files."""
    return distributed_context()[0] == 0


def init_distributed(device: str | torch.device = "auto") -> torch.device:
    """Join the process group that ``torchrun`` describes, and pick this rank's device.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) this initialises
    ``torch.distributed`` -- NCCL when training on CUDA, gloo on the CPU -- and
    returns ``cuda:LOCAL_RANK`` or the CPU. Without ``torchrun`` it only resolves
    ``device``. Calling it again is harmless.

    Parameters
    ----------
    device : str or torch.device, default="auto"

    Returns
    -------
    torch.device
    """
    import os

    import torch.distributed as dist

    resolved = resolve_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return resolved
    if resolved.type == "cuda":
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    return resolved


@contextlib.contextmanager
def flush_denormal(device: torch.device):
    """Flush denormal floats to zero on the CPU while the block runs.

    DCGAN-initialised nets (weights of N(0, 0.02)) produce denormal numbers in
    training, which x86 CPUs process tens of times slower than normal ones; flushing
    them measurably speeds up CPU training (benchmarks/train_throughput.py) and
    changes nothing that matters at float32 precision. The flag is process-wide in
    torch, so it is restored to torch's default (off) afterwards.
    """
    if device.type != "cpu" or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype used on ``device``: bf16 where supported, else fp16, or None.

    The CPU runs in full precision: autocast there is slower for these small nets and
    changes results, which would break bit-for-bit reproducibility on CPU.
    """
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed-precision context for ``device`` (a no-op on the CPU)."""
    dtype = amp_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only when training runs in fp16 on CUDA."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype(device) == torch.float16)


@dataclass
class Rngs:
    """The local generators an estimator draws from.

    Attributes
    ----------
    torch_cpu : torch.Generator
        Shuffling and anything else drawn on the CPU.
    torch_device : torch.Generator
        Latent noise and augmentation parameters, drawn on the training device.
    numpy : numpy.random.Generator
        Splits and other numpy-side randomness.
    """

    torch_cpu: torch.Generator
    torch_device: torch.Generator
    numpy: np.random.Generator

    def state_dict(self) -> dict[str, torch.Tensor]:
        """RNG states as tensors, so checkpoints load with ``weights_only=True``."""
        numpy_state = self.numpy.bit_generator.state
        return {
            "torch_cpu": self.torch_cpu.get_state(),
            "torch_device": self.torch_device.get_state(),
            # PCG64 state: two 128-bit integers, stored as decimal strings' bytes.
            "numpy": torch.tensor(
                list(
                    f"{numpy_state['state']['state']},{numpy_state['state']['inc']},"
                    f"{numpy_state['has_uint32']},{numpy_state['uinteger']}".encode()
                ),
                dtype=torch.uint8,
            ),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.torch_cpu.set_state(state["torch_cpu"])
        self.torch_device.set_state(state["torch_device"])
        fields = bytes(state["numpy"].tolist()).decode().split(",")
        numpy_state = self.numpy.bit_generator.state
        numpy_state["state"] = {"state": int(fields[0]), "inc": int(fields[1])}
        numpy_state["has_uint32"] = int(fields[2])
        numpy_state["uinteger"] = int(fields[3])
        self.numpy.bit_generator.state = numpy_state


def seed_from_random_state(random_state) -> int:
    """A 63-bit seed from ``None``, an int or a :class:`numpy.random.RandomState`.

    ``None`` draws fresh entropy (a different result on every call, as in
    scikit-learn); an int is used as it is, so the same int gives the same result.
    """
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
    if isinstance(random_state, (int, np.integer)):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}")
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    raise TypeError(
        "random_state must be None, an int, a numpy RandomState or Generator; "
        f"got {type(random_state).__name__}"
    )


def make_rngs(random_state, device: torch.device | str = "cpu") -> Rngs:
    """Local torch (CPU and device) and numpy generators from one ``random_state``.

    Parameters
    ----------
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator
    device : torch.device or str, default="cpu"
        Where ``Rngs.torch_device`` draws.

    Returns
    -------
    Rngs

    Examples
    --------
    >>> a, b = make_rngs(0), make_rngs(0)
    >>> bool(torch.equal(torch.rand(3, generator=a.torch_cpu),
    ...                  torch.rand(3, generator=b.torch_cpu)))
    True
    """
    device = torch.device(device)
    seed = seed_from_random_state(random_state)
    # Distinct, reproducible streams for the three generators.
    children = np.random.SeedSequence(seed).spawn(3)
    torch_cpu = torch.Generator(device="cpu")
    torch_cpu.manual_seed(int(children[0].generate_state(1, np.uint64)[0] >> 1))
    torch_device = torch.Generator(device=device)
    torch_device.manual_seed(int(children[1].generate_state(1, np.uint64)[0] >> 1))
    return Rngs(torch_cpu, torch_device, np.random.default_rng(children[2]))
