"""gancore: the GAN machinery shared by ganaug and ganomaly.

Networks (:mod:`gancore.nets`: MLP and DCGAN; :mod:`gancore.resnets`: residual
nets for real images; :mod:`gancore.translation`: StarGAN's class-to-class
translation), adversarial losses and R1 (:mod:`gancore.losses`),
DiffAugment and adaptive augmentation (:mod:`gancore.diffaugment`), EMA, one
training loop (:mod:`gancore.train`), device and RNG handling
(:mod:`gancore.device`), safe model files (:mod:`gancore.io`) and the rules for
writing any file (:mod:`gancore.files`). Imports torch and numpy only.

Names are imported on first use (PEP 562), so that a program which only reads model
files into numpy (:func:`gancore.io.load_arrays`, the streaming scorer) does not pay
torch's start-up time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "device": [
        "Rngs",
        "autocast",
        "distributed_context",
        "init_distributed",
        "is_main_process",
        "make_grad_scaler",
        "make_rngs",
        "resolve_device",
    ],
    "diffaugment": ["AdaptiveAugment", "DiffAugment"],
    "ema": ["EMA"],
    "files": [
        "UnsafeOutputError",
        "atomic_write",
        "check_outputs",
        "same_file",
        "special_file",
    ],
    "io": [
        "FORMAT_VERSION",
        "ModelFileError",
        "load_arrays",
        "load_model",
        "module_state",
        "module_tensors",
        "save_model",
    ],
    "losses": ["LOSSES", "GANLoss", "gradient_penalty", "r1_penalty"],
    "nets": [
        "DCGANDiscriminator",
        "DCGANGenerator",
        "MLPDiscriminator",
        "MLPGenerator",
        "crop_to",
        "dcgan_weights_init",
        "pad_to_multiple",
    ],
    "resnets": [
        "ConditionalBatchNorm2d",
        "ResNetDiscriminator",
        "ResNetGenerator",
        "SelfAttention",
        "resnet_weights_init",
    ],
    "train": [
        "TrainingDivergedError",
        "adversarial_steps",
        "load_checkpoint",
        "train_gan",
    ],
    "translation": [
        "MLPTranslationDiscriminator",
        "MLPTranslationGenerator",
        "TranslationDiscriminator",
        "TranslationGenerator",
        "other_classes",
        "translation_steps",
    ],
}
_SOURCE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_SOURCE)

if TYPE_CHECKING:  # static analysers see the eager imports
    from .device import (  # noqa: F401
        Rngs,
        autocast,
        distributed_context,
        init_distributed,
        is_main_process,
        make_grad_scaler,
        make_rngs,
        resolve_device,
    )
    from .diffaugment import AdaptiveAugment, DiffAugment  # noqa: F401
    from .ema import EMA  # noqa: F401
    from .files import (  # noqa: F401
        UnsafeOutputError,
        atomic_write,
        check_outputs,
        same_file,
        special_file,
    )
    from .io import (  # noqa: F401
        FORMAT_VERSION,
        ModelFileError,
        load_arrays,
        load_model,
        module_state,
        module_tensors,
        save_model,
    )
    from .losses import LOSSES, GANLoss, gradient_penalty, r1_penalty  # noqa: F401
    from .nets import (  # noqa: F401
        DCGANDiscriminator,
        DCGANGenerator,
        MLPDiscriminator,
        MLPGenerator,
        crop_to,
        dcgan_weights_init,
        pad_to_multiple,
    )
    from .resnets import (  # noqa: F401
        ConditionalBatchNorm2d,
        ResNetDiscriminator,
        ResNetGenerator,
        SelfAttention,
        resnet_weights_init,
    )
    from .train import (  # noqa: F401
        TrainingDivergedError,
        adversarial_steps,
        load_checkpoint,
        train_gan,
    )
    from .translation import (  # noqa: F401
        MLPTranslationDiscriminator,
        MLPTranslationGenerator,
        TranslationDiscriminator,
        TranslationGenerator,
        other_classes,
        translation_steps,
    )


def __getattr__(name: str):
    if name in _EXPORTS:  # a submodule, e.g. gancore.io after a bare import gancore
        return importlib.import_module(f".{name}", __name__)
    module = _SOURCE.get(name)
    if module is None:
        raise AttributeError(f"module 'gancore' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
