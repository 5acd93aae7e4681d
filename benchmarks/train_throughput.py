"""Images per second of one DCGAN training step: gancore vs. plain PyTorch vs. MONAI.

Three loops train the same task side by side in one run -- 64x64 one-channel
images, batch 64, non-saturating BCE loss, Adam(2e-4, 0.5, 0.999):

* ``gancore``  -- :func:`gancore.train_gan` with gancore's DCGAN nets;
* ``pytorch``  -- the loop of the PyTorch DCGAN example, written out here, with the
  example's ``netG``/``netD`` (ngf = ndf = 64, nc = 1);
* ``monai``    -- MONAI's ``GanTrainer`` with MONAI ``Generator``/``Discriminator``
  of comparable size (channels 512-256-128-64 / 64-128-256-512, no residual
  units; kernel 3, since MONAI's same-padding convolutions need an odd kernel, so
  these nets do about half the FLOPs of the kernel-4 DCGAN nets);
* ``monai-loop+gancore-nets`` -- MONAI's ``GanTrainer`` around gancore's nets, the
  fair comparison of the two loops.

The loops run in interleaved rounds (A, B, C, A, B, C, ...) so that a noisy,
shared machine slows them alike; the median of the rounds is reported, with ratios
to the PyTorch example loop. On CUDA, gancore runs with its mixed precision
(bf16 autocast, channels-last); the reference loops run as written (fp32).

Run::

    python benchmarks/train_throughput.py              # CPU, or CUDA if present
    python benchmarks/train_throughput.py --device cpu --steps 6 --rounds 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn

from gancore import (
    DCGANDiscriminator,
    DCGANGenerator,
    GANLoss,
    adversarial_steps,
    make_rngs,
    resolve_device,
    train_gan,
)

LATENT, SIZE, BATCH = 100, 64, 64


def make_data(n: int) -> torch.Tensor:
    return torch.rand(n, 1, SIZE, SIZE) * 2 - 1


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# -- (a) the PyTorch DCGAN example, as written there ------------------------------
class ExampleGenerator(nn.Module):
    def __init__(self, nz=LATENT, ngf=64, nc=1):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z):
        return self.main(z)


class ExampleDiscriminator(nn.Module):
    def __init__(self, ndf=64, nc=1):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


def pytorch_example_runner(device, data):
    net_g, net_d = ExampleGenerator().to(device), ExampleDiscriminator().to(device)
    criterion = nn.BCELoss()
    opt_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True)

    def run(steps: int) -> None:
        done = 0
        while done < steps:
            for real in loader:
                real = real.to(device)
                b = real.size(0)
                net_d.zero_grad()
                label = torch.full((b,), 1.0, device=device)
                err_real = criterion(net_d(real), label)
                err_real.backward()
                fake = net_g(torch.randn(b, LATENT, 1, 1, device=device))
                label.fill_(0.0)
                err_fake = criterion(net_d(fake.detach()), label)
                err_fake.backward()
                opt_d.step()
                net_g.zero_grad()
                label.fill_(1.0)
                err_g = criterion(net_d(fake), label)
                err_g.backward()
                opt_g.step()
                done += 1
                if done == steps:
                    break
        sync(device)

    return run


# -- gancore ---------------------------------------------------------------------
def gancore_runner(device, data):
    rngs = make_rngs(0, device)
    g = DCGANGenerator(LATENT, (1, SIZE, SIZE), base_channels=64)
    d = DCGANDiscriminator((1, SIZE, SIZE), base_channels=64)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_fn, g_fn = adversarial_steps(g, d, GANLoss("bce"), latent_dim=LATENT, rngs=rngs)

    def run(steps: int) -> None:
        train_gan(
            generator=g,
            discriminator=d,
            g_optimizer=opt_g,
            d_optimizer=opt_d,
            d_loss_fn=d_fn,
            g_loss_fn=g_fn,
            data=(data[: steps * BATCH],),
            n_epochs=1,
            batch_size=BATCH,
            device=device,
            rngs=rngs,
        )
        sync(device)

    return run


# -- MONAI GanTrainer ------------------------------------------------------------
def monai_runner(device, data, own_nets=False):
    from monai.networks.nets import Discriminator, Generator

    if own_nets:
        # MONAI's loop around gancore's nets: the same FLOPs as the gancore arm,
        # so the ratio measures the loops alone.
        g = DCGANGenerator(LATENT, (1, SIZE, SIZE), base_channels=64).to(device)
        d = DCGANDiscriminator((1, SIZE, SIZE), base_channels=64).to(device)
        return _monai_loop(device, data, g, d)
    g = Generator(
        latent_shape=(LATENT,),
        start_shape=(512, 4, 4),
        channels=(256, 128, 64, 1),
        strides=(2, 2, 2, 2),
        kernel_size=3,
        num_res_units=0,
        norm="BATCH",
        act="RELU",
    ).to(device)
    d = Discriminator(
        in_shape=(1, SIZE, SIZE),
        channels=(64, 128, 256, 512),
        strides=(2, 2, 2, 2),
        kernel_size=3,
        num_res_units=0,
        norm="BATCH",
        act="LEAKYRELU",
        dropout=None,
        last_act=None,
    ).to(device)
    return _monai_loop(device, data, g, d)


def _monai_loop(device, data, g, d):
    from monai.engines import GanTrainer

    bce = nn.BCEWithLogitsLoss()

    def d_loss(fake, real):
        real = real[0] if isinstance(real, (tuple, list)) else real  # (image, label)
        real_logits, fake_logits = d(real), d(fake.detach())
        return bce(real_logits, torch.ones_like(real_logits)) + bce(
            fake_logits, torch.zeros_like(fake_logits)
        )

    def g_loss(fake):
        logits = d(fake)
        return bce(logits, torch.ones_like(logits))

    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def run(steps: int) -> None:
        loader = torch.utils.data.DataLoader(
            data[: steps * BATCH], batch_size=BATCH, shuffle=True
        )
        trainer = GanTrainer(
            device=device,
            max_epochs=1,
            train_data_loader=loader,
            g_network=g,
            g_optimizer=opt_g,
            g_loss_function=g_loss,
            d_network=d,
            d_optimizer=opt_d,
            d_loss_function=d_loss,
            latent_shape=LATENT,
            decollate=False,
        )
        trainer.run()
        sync(device)

    return run


def count_parameters(module_pairs) -> str:
    return ", ".join(
        f"{name} {sum(p.numel() for p in m.parameters()) / 1e6:.2f}M"
        for name, m in module_pairs
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=8, help="training steps a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--loops", default="gancore,pytorch,monai,monai-loop+gancore-nets"
    )
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    torch.manual_seed(0)
    data = make_data(args.steps * BATCH)
    builders = {
        "gancore": gancore_runner,
        "pytorch": pytorch_example_runner,
        "monai": monai_runner,
        "monai-loop+gancore-nets": lambda dev, x: monai_runner(dev, x, own_nets=True),
    }
    runners = {name: builders[name](device, data) for name in args.loops.split(",")}
    for run in runners.values():  # warm-up: allocator, cuDNN autotuning, imports
        run(2)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            sync(device)
            start = time.perf_counter()
            run(args.steps)
            times[name].append(time.perf_counter() - start)

    machine = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = machine
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    print(f"device={device} cpu={cpu} cores={torch.get_num_threads()} gpu={gpu}")
    print(
        f"64x64x1, batch {BATCH}, {args.steps} steps x {args.rounds} rounds, "
        "median round\n"
    )
    rate = {
        name: args.steps * BATCH / statistics.median(t) for name, t in times.items()
    }
    ref = rate.get("pytorch")
    print("| loop | images/s | ratio to PyTorch example |")
    print("|---|---:|---:|")
    for name, value in rate.items():
        ratio = f"{value / ref:.2f}" if ref else "n/a"
        print(f"| {name} | {value:.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
