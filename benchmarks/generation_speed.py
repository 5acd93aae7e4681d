"""How many synthetic images per second does a fitted GANAugmenter give on CPU?

Peers measured in the same run, at 28x28 and 64x64 (one channel): the DCGAN
generator at the default width (base_channels=32) and at 64, and the MLP
generator. Generation speed does not depend on how well the GAN was trained, so
each model is fitted for one epoch on random images; the time measured is
``GANAugmenter.sample(n)`` end to end (latent draw, generator, crop, rescaling
to the input's dtype and range), best of ``--repeats``.

Run::

    python benchmarks/generation_speed.py            # about a minute
    python benchmarks/generation_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from ganaug import GANAugmenter

CONFIGS = {
    "dcgan (base 32, default)": dict(architecture="dcgan", base_channels=32),
    "dcgan (base 64)": dict(architecture="dcgan", base_channels=64),
    "mlp": dict(architecture="mlp", diffaugment=None),
}


def measure(size: int, params: dict, n_samples: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, size=(64, size, size), dtype=np.uint8)
    y = np.repeat([0, 1], 32)
    sampler = GANAugmenter(n_epochs=1, random_state=0, device="cpu", **params)
    sampler.fit_resample(X, y)
    sampler.sample(64, random_state=0)  # warm-up
    best = float("inf")
    for repeat in range(repeats):
        started = time.perf_counter()
        sampler.sample(n_samples, random_state=repeat)
        best = min(best, time.perf_counter() - started)
    return n_samples / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 64])
    parser.add_argument("-n", "--n-samples", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"generation_speed: {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{platform.machine()}, torch {torch.__version__}, threads {args.threads}, "
        f"{args.n_samples} images per timing, best of {args.repeats}"
    )
    print("| generator | " + " | ".join(f"{s}x{s} images/s" for s in args.sizes) + " |")
    print("|---|" + "---|" * len(args.sizes))
    for name, params in CONFIGS.items():
        rates = [measure(s, params, args.n_samples, args.repeats) for s in args.sizes]
        print(f"| {name} | " + " | ".join(f"{rate:,.0f}" for rate in rates) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
