"""The training loop: DCGAN and ResNet smoke tests (ADA, lazy R1), resumption,
divergence, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gancore import (
    EMA,
    AdaptiveAugment,
    DCGANDiscriminator,
    DCGANGenerator,
    DiffAugment,
    GANLoss,
    MLPDiscriminator,
    MLPGenerator,
    ResNetDiscriminator,
    ResNetGenerator,
    TrainingDivergedError,
    adversarial_steps,
    load_checkpoint,
    make_rngs,
    train_gan,
)

CPU = torch.device("cpu")


def squares_and_circles(n: int, size: int = 16, seed: int = 0):
    """One-channel images in [-1, 1]: class 0 a filled square, class 1 a disc."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.full((n, 1, size, size), -1.0, dtype=np.float32)
    labels = np.arange(n) % 2
    for i, label in enumerate(labels):
        r = rng.integers(3, 6)
        cy, cx = rng.integers(r, size - r, 2)
        if label == 0:
            mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        images[i, 0][mask] = 1.0
    return torch.from_numpy(images), torch.from_numpy(labels)


def build_dcgan(seed=0, loss="hinge", diffaugment=True, ema=True, n_critic=1):
    torch.manual_seed(seed)  # construction only; training draws from rngs
    rngs = make_rngs(seed)
    g = DCGANGenerator(16, (1, 16, 16), base_channels=8, n_classes=2)
    d = DCGANDiscriminator(
        (1, 16, 16),
        base_channels=8,
        n_classes=2,
        spectral_norm=True,
        normalization=None if loss == "wgan-gp" else "batch",
    )
    d_fn, g_fn = adversarial_steps(
        g,
        d,
        GANLoss(loss),
        latent_dim=16,
        rngs=rngs,
        conditional=True,
        diffaugment=DiffAugment() if diffaugment else None,
    )
    return dict(
        generator=g,
        discriminator=d,
        g_optimizer=torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999)),
        d_optimizer=torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999)),
        d_loss_fn=d_fn,
        g_loss_fn=g_fn,
        rngs=rngs,
        device=CPU,
        n_critic=n_critic,
        ema=EMA(g, 0.9) if ema else None,
    )


@pytest.mark.parametrize("loss", ["hinge", "bce", "wgan-gp"])
def test_tiny_dcgan_trains_on_squares_and_circles(loss):
    images, labels = squares_and_circles(64)
    parts = build_dcgan(loss=loss, n_critic=2 if loss == "wgan-gp" else 1)
    history = train_gan(**parts, data=(images, labels), n_epochs=4, batch_size=16)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    d_losses = [h["d_loss"] for h in history]
    assert all(math.isfinite(v) for v in d_losses)
    assert len(set(d_losses)) == 4  # the discriminator's loss moves
    if loss == "wgan-gp":
        assert "gradient_penalty" in history[0]
    g = parts["ema"].module
    with torch.no_grad():
        fake = g(torch.randn(6, 16), torch.tensor([0, 1, 0, 1, 0, 1]))
    assert fake.shape == (6, 1, 16, 16) and fake.dtype == torch.float32
    assert float(fake.abs().max()) <= 1.0 and torch.isfinite(fake).all()


def test_n_critic_counts_generator_steps():
    images, labels = squares_and_circles(32)
    parts = build_dcgan(n_critic=2, diffaugment=False, ema=False)
    calls = {"g": 0}
    g_fn = parts["g_loss_fn"]

    def counting(batch):
        calls["g"] += 1
        return g_fn(batch)

    parts["g_loss_fn"] = counting
    train_gan(**parts, data=(images, labels), n_epochs=1, batch_size=8)
    assert calls["g"] == 2  # 4 batches, a generator step every second one
    # The count runs across epochs: 3 batches an epoch, n_critic=5 -> 3 in 5 epochs.
    calls["g"] = 0
    parts["n_critic"] = 5
    train_gan(**parts, data=(images[:24], labels[:24]), n_epochs=5, batch_size=8)
    assert calls["g"] == 3


def _weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


class _Killed(Exception):
    pass


def test_resume_equals_an_uninterrupted_run(tmp_path):
    images, labels = squares_and_circles(48)
    data, kwargs = (images, labels), dict(n_epochs=4, batch_size=16)

    reference = build_dcgan(seed=3)
    ref_history = train_gan(**reference, data=data, **kwargs)

    # The same run, killed in the middle of epoch 3, then resumed.
    checkpoint = tmp_path / "run.ckpt"
    first = build_dcgan(seed=3)
    g_fn, calls = first["g_loss_fn"], {"n": 0}

    def dies_in_epoch_3(batch):
        calls["n"] += 1
        if calls["n"] == 8:  # 3 steps per epoch: the 2nd step of epoch 3
            raise _Killed
        return g_fn(batch)

    first["g_loss_fn"] = dies_in_epoch_3
    with pytest.raises(_Killed):
        train_gan(
            **first, data=data, **kwargs, checkpoint_path=checkpoint, checkpoint_every=1
        )
    assert load_checkpoint(checkpoint)["epoch"] == 2

    second = build_dcgan(seed=99)  # different init: everything comes from the file
    history = train_gan(
        **second,
        data=data,
        **kwargs,
        checkpoint_path=checkpoint,
        checkpoint_every=1,
        resume=True,
    )
    assert history == ref_history
    for name in ("generator", "discriminator"):
        ref, got = _weights(reference[name]), _weights(second[name])
        assert ref.keys() == got.keys()
        assert all(torch.equal(ref[k], got[k]) for k in ref), name
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            _weights(reference["ema"].module).values(),
            _weights(second["ema"].module).values(),
            strict=True,
        )
    )
    # Resuming a finished run does nothing more.
    again = train_gan(
        **second, data=data, **kwargs, checkpoint_path=checkpoint, resume=True
    )
    assert again == ref_history


def test_resume_refuses_a_checkpoint_of_another_configuration(tmp_path):
    images, labels = squares_and_circles(16)
    ckpt = tmp_path / "c.ckpt"
    train_gan(
        **build_dcgan(),
        data=(images, labels),
        n_epochs=1,
        batch_size=8,
        checkpoint_path=ckpt,
        checkpoint_every=1,
        checkpoint_meta={"lr": 1},
    )
    with pytest.raises(ValueError, match="another configuration"):
        train_gan(
            **build_dcgan(),
            data=(images, labels),
            n_epochs=2,
            batch_size=8,
            checkpoint_path=ckpt,
            resume=True,
            checkpoint_meta={"lr": 2},
        )


def test_resume_without_a_checkpoint_starts_afresh(tmp_path):
    images, labels = squares_and_circles(16)
    history = train_gan(
        **build_dcgan(),
        data=(images, labels),
        n_epochs=1,
        batch_size=8,
        checkpoint_path=tmp_path / "none.ckpt",
        resume=True,
    )
    assert len(history) == 1


def test_bad_checkpoint_file(tmp_path):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(b"\x80\x04not a checkpoint")
    with pytest.raises(ValueError, match="not a readable gankit checkpoint"):
        load_checkpoint(path)
    torch.save({"some": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a gankit training checkpoint"):
        load_checkpoint(path)


def _mlp_parts(lr, optimizer=torch.optim.SGD):
    torch.manual_seed(0)
    rngs = make_rngs(0)
    g, d = MLPGenerator(4, 2, (16,)), MLPDiscriminator(2, (16,))
    d_fn, g_fn = adversarial_steps(
        g, d, GANLoss("wgan-gp", gp_weight=0), latent_dim=4, rngs=rngs
    )
    return dict(
        generator=g,
        discriminator=d,
        g_optimizer=optimizer(g.parameters(), lr),
        d_optimizer=optimizer(d.parameters(), lr),
        d_loss_fn=d_fn,
        g_loss_fn=g_fn,
        rngs=rngs,
        device=CPU,
    )


def test_a_learning_rate_that_blows_up_stops_with_the_epoch_named(tmp_path):
    data = (torch.randn(64, 2) * 100,)
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(TrainingDivergedError, match=r"diverged in epoch \d+ of 50"):
        train_gan(
            **_mlp_parts(lr=1e12),
            data=data,
            n_epochs=50,
            batch_size=16,
            checkpoint_path=ckpt,
            checkpoint_every=1,
        )
    if ckpt.exists():  # whatever was saved before the divergence is finite
        state = load_checkpoint(ckpt)
        assert all(torch.isfinite(v).all() for v in state["generator"].values())


def test_divergence_in_a_given_epoch_keeps_the_last_good_checkpoint(tmp_path):
    parts = _mlp_parts(lr=1e-3, optimizer=torch.optim.Adam)
    d_fn, calls = parts["d_loss_fn"], {"n": 0}

    def nan_in_epoch_3(batch):
        calls["n"] += 1
        loss = d_fn(batch)
        return loss * float("nan") if calls["n"] > 8 else loss

    parts["d_loss_fn"] = nan_in_epoch_3
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(TrainingDivergedError, match="epoch 3 of 5.*run.ckpt"):
        train_gan(
            **parts,
            data=(torch.randn(64, 2),),
            n_epochs=5,
            batch_size=16,
            checkpoint_path=ckpt,
            checkpoint_every=1,
        )
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in state["generator"].values())


def test_argument_errors():
    parts = _mlp_parts(1e-3)
    with pytest.raises(ValueError, match="batch_size"):
        train_gan(**parts, data=(torch.zeros(4, 2),), n_epochs=1, batch_size=0)
    with pytest.raises(ValueError, match="same first dimension"):
        train_gan(
            **parts, data=(torch.zeros(4, 2), torch.zeros(3)), n_epochs=1, batch_size=2
        )
    with pytest.raises(ValueError, match="checkpoint_path"):
        train_gan(
            **parts,
            data=(torch.zeros(4, 2),),
            n_epochs=1,
            batch_size=2,
            checkpoint_every=1,
        )


def test_wgan_gp_refuses_batch_norm_in_the_discriminator():
    g = DCGANGenerator(4, (1, 8, 8), base_channels=4)
    d = DCGANDiscriminator((1, 8, 8), base_channels=4, normalization="batch")
    with pytest.raises(ValueError, match="batch norm"):
        adversarial_steps(g, d, GANLoss("wgan-gp"), latent_dim=4, rngs=make_rngs(0))


def test_verbose_shows_progress(capsys):
    images, labels = squares_and_circles(16)
    train_gan(
        **build_dcgan(),
        data=(images, labels),
        n_epochs=2,
        batch_size=8,
        verbose=True,
        desc="squares",
    )
    assert "squares" in capsys.readouterr().err


def build_resnet(seed=0, *, ada=True, r1_gamma=1.0, r1_every=3):
    torch.manual_seed(seed)  # construction only; training draws from rngs
    rngs = make_rngs(seed)
    shape, widths = (3, 32, 32), dict(base_channels=4, max_channels=16)
    g = ResNetGenerator(16, shape, n_classes=2, attention_at=16, **widths)
    d = ResNetDiscriminator(shape, n_classes=2, attention_at=16, **widths)
    # p starts at 0.5 and moves by 1/16 at every step (r_t of 4 logits is never
    # 0.6), so it stays in (0, 1) and changes what every step draws.
    augment = AdaptiveAugment(p=0.5, interval=1, ramp_images=64) if ada else None
    d_fn, g_fn = adversarial_steps(
        g,
        d,
        GANLoss("hinge"),
        latent_dim=16,
        rngs=rngs,
        conditional=True,
        diffaugment=augment,
        r1_gamma=r1_gamma,
        r1_every=r1_every,
    )
    return dict(
        generator=g,
        discriminator=d,
        g_optimizer=torch.optim.Adam(g.parameters(), 2e-4, betas=(0.0, 0.99)),
        d_optimizer=torch.optim.Adam(d.parameters(), 2e-4, betas=(0.0, 0.99)),
        d_loss_fn=d_fn,
        g_loss_fn=g_fn,
        rngs=rngs,
        device=CPU,
        ema=EMA(g, 0.9),
    )


def _rgb_shapes(n: int = 8):
    images, labels = squares_and_circles(n, size=32)
    tint = torch.tensor([1.0, 0.5, -0.2]).view(1, 3, 1, 1)
    return (images * tint).clamp(-1, 1), labels


def test_resnets_with_ada_and_lazy_r1_resume_bit_identically(tmp_path):
    data, kwargs = _rgb_shapes(), dict(n_epochs=2, batch_size=4)  # 2 steps an epoch
    reference = build_resnet(seed=5)
    ref_history = train_gan(**reference, data=data, **kwargs)
    assert [h["epoch"] for h in ref_history] == [1, 2]
    assert all(math.isfinite(v) for h in ref_history for v in h.values())
    # R1 on d-steps 0 and 3 (one in each epoch); p logged, and it moved.
    assert all("r1_penalty" in h and "augment_p" in h for h in ref_history)
    assert ref_history[0]["augment_p"] != ref_history[1]["augment_p"]
    ref_state = reference["d_loss_fn"].state_dict()
    assert ref_state["d_steps"] == 4 and ref_state["augment"]["p"] != 0.5
    assert all(0 < h["augment_p"] < 1 for h in ref_history)

    # One epoch, checkpointed; then a run built differently resumes from the file.
    checkpoint = tmp_path / "run.ckpt"
    first = build_resnet(seed=5)
    train_gan(
        **first,
        data=data,
        n_epochs=1,
        batch_size=4,
        checkpoint_path=checkpoint,
        checkpoint_every=1,
    )
    saved = load_checkpoint(checkpoint)["loss_state"]["d_loss_fn"]
    assert saved["d_steps"] == 2 and saved["augment"]["p"] != 0.5
    second = build_resnet(seed=99)
    history = train_gan(
        **second, data=data, **kwargs, checkpoint_path=checkpoint, resume=True
    )
    assert history == ref_history
    assert second["d_loss_fn"].state_dict() == ref_state
    for name in ("generator", "discriminator"):
        ref, got = _weights(reference[name]), _weights(second[name])
        assert ref.keys() == got.keys()
        assert all(torch.equal(ref[k], got[k]) for k in ref), name
    ref, got = _weights(reference["ema"].module), _weights(second["ema"].module)
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_lazy_r1_runs_every_k_steps_scaled_by_k():
    images, labels = _rgb_shapes(4)
    batch = (images, labels)
    with_r1 = build_resnet(seed=1, ada=False, r1_gamma=0.5, r1_every=2)
    without = build_resnet(seed=1, ada=False, r1_gamma=0.0)
    loss, logs = with_r1["d_loss_fn"](batch)
    plain = without["d_loss_fn"](batch)  # the same nets and draws, no penalty
    assert float(logs["r1_penalty"].detach()) > 0
    expected = plain + 2 * logs["r1_penalty"]
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    loss.backward()  # the penalty reaches the discriminator's weights
    assert all(p.grad is not None for p in with_r1["discriminator"].parameters())
    steps = [with_r1["d_loss_fn"](batch) for _ in range(4)]  # d-steps 1 .. 4
    assert ["r1_penalty" in s[1] if isinstance(s, tuple) else False for s in steps] == [
        False,
        True,
        False,
        True,
    ]


def test_plain_steps_keep_no_state_and_bad_r1_options():
    parts = build_dcgan()
    assert not hasattr(parts["d_loss_fn"], "state_dict")  # old checkpoints resume
    g, d = parts["generator"], parts["discriminator"]
    for kwargs in (dict(r1_gamma=-1.0), dict(r1_gamma=1.0, r1_every=0)):
        with pytest.raises(ValueError, match="r1_"):
            adversarial_steps(
                g, d, GANLoss(), latent_dim=16, rngs=make_rngs(0), **kwargs
            )


def test_resume_refuses_a_checkpoint_without_the_loss_state(tmp_path):
    images, labels = squares_and_circles(16)
    ckpt = tmp_path / "c.ckpt"
    common = dict(data=(images, labels), batch_size=8, checkpoint_path=ckpt)
    train_gan(**build_dcgan(), n_epochs=1, checkpoint_every=1, **common)
    parts = build_dcgan()
    parts["d_loss_fn"], parts["g_loss_fn"] = adversarial_steps(
        parts["generator"],
        parts["discriminator"],
        GANLoss("hinge"),
        latent_dim=16,
        rngs=parts["rngs"],
        conditional=True,
        diffaugment=AdaptiveAugment(),
    )
    with pytest.raises(ValueError, match="no state for d_loss_fn"):
        train_gan(**parts, n_epochs=2, resume=True, **common)
