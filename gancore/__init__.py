"""gancore: the GAN machinery shared by ganaug and ganomaly.

Networks (:mod:`gancore.nets`), adversarial losses (:mod:`gancore.losses`),
DiffAugment, EMA, one training loop (:mod:`gancore.train`), device and RNG handling
(:mod:`gancore.device`) and safe model files (:mod:`gancore.io`). Imports torch and
numpy only.
"""

from __future__ import annotations

from .device import (
    Rngs,
    autocast,
    distributed_context,
    init_distributed,
    is_main_process,
    make_grad_scaler,
    make_rngs,
    resolve_device,
)
from .diffaugment import DiffAugment
from .ema import EMA
from .io import (
    FORMAT_VERSION,
    ModelFileError,
    atomic_write,
    load_model,
    module_state,
    module_tensors,
    save_model,
)
from .losses import LOSSES, GANLoss, gradient_penalty
from .nets import (
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
    crop_to,
    dcgan_weights_init,
    pad_to_multiple,
)
from .train import TrainingDivergedError, adversarial_steps, load_checkpoint, train_gan

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DiffAugment",
    "EMA",
    "FORMAT_VERSION",
    "GANLoss",
    "LOSSES",
    "MLPDiscriminator",
    "MLPGenerator",
    "ModelFileError",
    "Rngs",
    "TrainingDivergedError",
    "adversarial_steps",
    "atomic_write",
    "autocast",
    "crop_to",
    "dcgan_weights_init",
    "distributed_context",
    "gradient_penalty",
    "init_distributed",
    "is_main_process",
    "load_checkpoint",
    "load_model",
    "make_grad_scaler",
    "make_rngs",
    "module_state",
    "module_tensors",
    "pad_to_multiple",
    "resolve_device",
    "save_model",
    "train_gan",
]
