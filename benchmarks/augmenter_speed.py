"""Training images per second of ganaug's networks on the CPU, 64 and 128 px.

Times ``GANAugmenter.fit_resample`` with a fixed number of epochs on random
one-channel images of two classes (conditional GAN, hinge loss, DiffAugment, EMA,
batch 32, the sampler's training loop as users run it) and reports the images the
discriminator sees per second (one generator and one discriminator step per
batch). The first epoch is left out (warm-up). With ``n_epochs="auto"`` the
sampler trains on about 40,000 images at 64x64 and 10,000 at 128x128, so these
rates give the default fit time: 40,000 / rate.  ``translator:BASE:SIZE`` times
``GANTranslator`` the same way (batch 16, its default; each step translates the
batch, translates it back and runs the identity pass), whose "auto" budget is
about 12,000 images at 64x64.

Run (one thread, as the other benchmarks)::

    python benchmarks/augmenter_speed.py
    python benchmarks/augmenter_speed.py --configs dcgan:32:64 resnet:16:128
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

DEFAULT_CONFIGS = [
    "translator:16:64",
    "translator:16:128",
    "dcgan:32:64",
    "dcgan:32:128",
    "resnet:16:64",
    "resnet:16:128",
    "resnet:32:64",
]


def images_per_second(
    architecture: str, base: int, size: int, n_images: int, epochs: int
) -> float:
    from ganaug import GANAugmenter, GANTranslator

    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, (n_images, 1, size, size), dtype=np.uint8)
    y = np.arange(n_images) % 2
    params = dict(
        base_channels=base,
        device="cpu",
        random_state=0,
        augment_ratio=0.0,
        sampling_strategy={0: n_images // 2, 1: n_images // 2},  # none to add
    )
    if architecture == "translator":
        kind = GANTranslator
    else:
        kind = GANAugmenter
        params.update(architecture=architecture, batch_size=32)
    kind(n_epochs=1, **params).fit_resample(X, y)  # warm-up
    started = time.perf_counter()
    kind(n_epochs=1 + epochs, **params).fit_resample(X, y)
    total = time.perf_counter() - started
    started = time.perf_counter()
    kind(n_epochs=1, **params).fit_resample(X, y)
    one = time.perf_counter() - started
    return epochs * n_images / max(total - one, 1e-9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs",
        nargs="+",
        default=DEFAULT_CONFIGS,
        metavar="ARCH:BASE:SIZE",
        help="architecture, base_channels and image side",
    )
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"augmenter_speed: {time.strftime('%Y-%m-%d %H:%M')} "
        f"{platform.processor() or platform.machine()}, torch threads "
        f"{args.threads}, CPU only\n"
    )
    print("| architecture | base_channels | image | images/s | default budget, min |")
    print("|---|---|---|---|---|")
    for config in args.configs:
        architecture, base, size = config.split(":")
        rate = images_per_second(
            architecture, int(base), int(size), args.images, args.epochs
        )
        budget = (12_000 if architecture == "translator" else 40_000) * (
            64 / int(size)
        ) ** 2
        print(
            f"| {architecture} | {base} | {size}x{size} | {rate:.1f} | "
            f"{budget / rate / 60:.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
