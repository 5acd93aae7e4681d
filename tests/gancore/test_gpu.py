"""CUDA paths: mixed precision and channels-last (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from gancore import (
    AdaptiveAugment,
    DCGANDiscriminator,
    DCGANGenerator,
    GANLoss,
    ResNetDiscriminator,
    ResNetGenerator,
    adversarial_steps,
    autocast,
    make_grad_scaler,
    make_rngs,
    resolve_device,
    train_gan,
)

pytestmark = pytest.mark.gpu


def test_autocast_dtype_and_scaler_on_cuda():
    device = resolve_device("cuda")
    with autocast(device):
        out = torch.nn.Linear(4, 4).to(device)(torch.ones(2, 4, device=device))
    bf16 = torch.cuda.is_bf16_supported()
    assert out.dtype == (torch.bfloat16 if bf16 else torch.float16)
    assert make_grad_scaler(device).is_enabled() == (not bf16)


def test_dcgan_trains_on_cuda_with_amp_and_channels_last():
    device = resolve_device("cuda")
    rngs = make_rngs(0, device)
    g = DCGANGenerator(16, (1, 32, 32), base_channels=8, n_classes=2)
    d = DCGANDiscriminator((1, 32, 32), base_channels=8, n_classes=2)
    d_fn, g_fn = adversarial_steps(
        g, d, GANLoss("hinge"), latent_dim=16, rngs=rngs, conditional=True
    )
    images = torch.rand(64, 1, 32, 32) * 2 - 1
    labels = torch.arange(64) % 2
    history = train_gan(
        generator=g,
        discriminator=d,
        g_optimizer=torch.optim.Adam(g.parameters(), 2e-4),
        d_optimizer=torch.optim.Adam(d.parameters(), 2e-4),
        d_loss_fn=d_fn,
        g_loss_fn=g_fn,
        data=(images, labels),
        n_epochs=2,
        batch_size=16,
        device=device,
        rngs=rngs,
    )
    assert len(history) == 2
    conv = next(m for m in d.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert next(g.parameters()).device.type == "cuda"


def test_resnets_train_on_cuda_with_amp_ada_r1_and_channels_last():
    device = resolve_device("cuda")
    rngs = make_rngs(0, device)
    widths = dict(base_channels=8, max_channels=32, attention_at=16)
    g = ResNetGenerator(16, (3, 64, 64), n_classes=2, **widths)
    d = ResNetDiscriminator((3, 64, 64), n_classes=2, **widths)
    augment = AdaptiveAugment(p=0.5, interval=1, ramp_images=1000)
    d_fn, g_fn = adversarial_steps(
        g,
        d,
        GANLoss("hinge"),
        latent_dim=16,
        rngs=rngs,
        conditional=True,
        diffaugment=augment,
        r1_gamma=0.1,
        r1_every=2,
    )
    images = torch.rand(64, 3, 64, 64) * 2 - 1
    labels = torch.arange(64) % 2
    history = train_gan(
        generator=g,
        discriminator=d,
        g_optimizer=torch.optim.Adam(g.parameters(), 2e-4, betas=(0.0, 0.99)),
        d_optimizer=torch.optim.Adam(d.parameters(), 2e-4, betas=(0.0, 0.99)),
        d_loss_fn=d_fn,
        g_loss_fn=g_fn,
        data=(images, labels),
        n_epochs=2,
        batch_size=16,
        device=device,
        rngs=rngs,
    )
    assert len(history) == 2
    assert all("r1_penalty" in h and "augment_p" in h for h in history)
    assert augment.p != 0.5 and augment.r_t is not None
    conv = next(m for m in d.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.parametrizations.weight.original.is_contiguous(
        memory_format=torch.channels_last
    )
    with torch.no_grad(), autocast(device):
        fake = g(
            torch.randn(4, 16, device=device), torch.tensor([0, 1, 0, 1], device=device)
        )
    assert fake.shape == (4, 3, 64, 64) and torch.isfinite(fake).all()
