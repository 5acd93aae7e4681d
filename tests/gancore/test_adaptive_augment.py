"""Adaptive discriminator augmentation: the operations and the controller of p."""

from __future__ import annotations

import io

import pytest
import torch

from gancore import AdaptiveAugment

OPS = ("xflip", "rotate90", "translation", "brightness", "contrast", "saturation")
ALL = ",".join((*OPS, "cutout"))


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 16, channels: int = 3, height: int = 16, width: int = 16):
    return torch.randn(n, channels, height, width, generator=_seeded(123))


def test_p_zero_is_the_identity_and_draws_nothing():
    augment = AdaptiveAugment(ALL)
    x, generator = _images(), _seeded()
    state = generator.get_state()
    assert augment(x, generator) is x
    assert torch.equal(generator.get_state(), state)


@pytest.mark.parametrize("op", [*OPS, "cutout"])
def test_p_one_applies_each_operation(op):
    augment = AdaptiveAugment(op, p=1.0, target=None)
    x = _images()
    out = augment(x, _seeded())
    assert out.shape == x.shape and out.dtype == x.dtype
    changed = [not torch.equal(a, b) for a, b in zip(out, x, strict=True)]
    if op in ("xflip", "rotate90", "translation"):  # "keep" is one of the draws
        assert len(x) // 4 < sum(changed) < len(x)
    else:
        assert all(changed)


def test_each_operation_does_what_it_says():
    x = _images(n=32)
    candidates = {
        "xflip": [x, x.flip(3)],
        "rotate90": [torch.rot90(x, k, dims=(2, 3)) for k in range(4)],
    }
    for op, outcomes in candidates.items():
        out = AdaptiveAugment(op, p=1.0)(x, _seeded())
        for i in range(len(x)):  # every image is one of the outcomes, all occur
            assert any(torch.equal(out[i], o[i]) for o in outcomes), op
        for o in outcomes:
            assert any(torch.equal(out[i], o[i]) for i in range(len(x))), op
    out = AdaptiveAugment("brightness", p=1.0)(x, _seeded())
    offset = (out - x).flatten(1)
    assert torch.allclose(offset, offset[:, :1].expand_as(offset), atol=1e-5)
    out = AdaptiveAugment("contrast", p=1.0)(x, _seeded())
    assert torch.allclose(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-5)
    out = AdaptiveAugment("saturation", p=1.0)(x, _seeded())
    assert torch.allclose(out.mean(dim=1), x.mean(dim=1), atol=1e-5)  # grey kept
    grey = _images(channels=1)
    assert torch.equal(AdaptiveAugment("saturation", p=1.0)(grey, _seeded()), grey)
    ones = torch.ones(32, 1, 16, 16)
    out = AdaptiveAugment("cutout", p=1.0)(ones, _seeded())
    zeros = (out == 0).flatten(1).sum(1)
    assert (zeros > 0).all() and (zeros <= 8 * 8).all()  # half of each side at most
    assert (zeros == 8 * 8).any()


def test_translation_shifts_with_reflection():
    x = torch.arange(16.0).view(1, 1, 1, 16).expand(64, 1, 16, 16).contiguous()
    out = AdaptiveAugment("translation", p=1.0)(x, _seeded())
    # Shifts of up to 1/8 of the side (2 pixels), the edge reflected into the gap.
    expected = {
        0: list(range(16)),
        1: [1, *range(15)],
        2: [2, 1, *range(14)],
        -1: [*range(1, 16), 14],
        -2: [*range(2, 16), 14, 13],
    }
    seen = set()
    for image in out:
        row = image[0, 0].tolist()
        assert all(r == row for r in image[0].tolist())  # rows never move here
        (shift,) = [s for s, values in expected.items() if values == row]
        seen.add(shift)
    assert seen == set(expected)


def test_non_square_images_turn_by_half_turns_only():
    x = _images(n=32, height=8, width=12)
    out = AdaptiveAugment("rotate90", p=1.0)(x, _seeded())
    assert out.shape == x.shape
    half_turn = torch.rot90(x, 2, dims=(2, 3))
    for i in range(len(x)):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], half_turn[i])


def test_probability_is_per_image_and_per_operation():
    x = torch.zeros(4000, 1, 4, 4)
    out = AdaptiveAugment("brightness", p=0.3)(x, _seeded())
    fraction = float((out.flatten(1)[:, 0] != 0).float().mean())
    assert fraction == pytest.approx(0.3, abs=0.03)


def test_gradients_flow_through_every_operation():
    x = _images().requires_grad_(True)
    out = AdaptiveAugment(ALL + ",rotate90", p=1.0)(x, _seeded())
    weights = torch.randn(out.shape, generator=_seeded(1))
    (out * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert float(x.grad.abs().sum()) > 0


def test_deterministic_for_a_fixed_generator():
    x = _images()
    augment = AdaptiveAugment(ALL, p=0.5)
    assert torch.equal(augment(x, _seeded(7)), augment(x, _seeded(7)))
    assert not torch.equal(augment(x, _seeded(7)), augment(x, _seeded(8)))


def test_controller_moves_p_towards_the_target():
    augment = AdaptiveAugment(interval=2, ramp_images=80)
    positive, negative = torch.full((8,), 3.0), torch.full((8,), -0.5)
    augment.update(positive)
    assert augment.p == 0.0 and augment.r_t is None  # not yet: every 2 updates
    augment.update(positive)
    assert augment.r_t == 1.0 and augment.p == pytest.approx(16 / 80)
    for _ in range(20):  # the discriminator keeps overfitting: p rises to max_p
        augment.update(positive)
    assert augment.p == 0.8
    for _ in range(4):
        augment.update(negative)
    assert augment.r_t == -1.0 and augment.p == pytest.approx(0.8 - 2 * 16 / 80)
    for _ in range(40):
        augment.update(negative)
    assert augment.p == 0.0  # clamped at 0
    # At the target, p stays: 8 of 10 positive gives r_t = 0.6.
    augment.p = 0.5
    mixed = torch.tensor([1.0] * 8 + [-1.0] * 2)
    augment.update(mixed)
    augment.update(mixed)
    assert augment.r_t == pytest.approx(0.6) and augment.p == 0.5


def test_fixed_p_and_max_p_options():
    fixed = AdaptiveAugment(p=0.3, target=None, interval=1)
    for _ in range(5):
        fixed.update(torch.ones(4))
    assert fixed.p == 0.3 and fixed.r_t is None
    capped = AdaptiveAugment(interval=1, ramp_images=4, max_p=0.25)
    capped.update(torch.ones(4))
    assert capped.p == 0.25
    low_target = AdaptiveAugment(target=-0.5, interval=1, ramp_images=40)
    low_target.update(torch.tensor([-1.0, -1.0, -1.0, 1.0]))  # r_t = -0.5 + 0
    assert low_target.p == 0.0
    low_target.update(torch.tensor([-1.0, 1.0, 1.0, 1.0]))  # r_t = 0.5 > -0.5
    assert low_target.p == pytest.approx(0.1)


def test_state_round_trips_mid_interval():
    augment = AdaptiveAugment(interval=3, ramp_images=50)
    rng = _seeded(3)
    logits = [torch.randn(6, generator=rng) + 1.5 for _ in range(10)]
    for batch in logits[:4]:  # one adjustment, then one update into the next
        augment.update(batch)
    buffer = io.BytesIO()
    torch.save(augment.state_dict(), buffer)
    buffer.seek(0)
    restored = AdaptiveAugment(interval=3, ramp_images=50)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.p == augment.p and restored.r_t == augment.r_t
    for batch in logits[4:]:
        augment.update(batch)
        restored.update(batch)
        assert restored.p == augment.p and restored.r_t == augment.r_t
    assert augment.p > 0


def test_errors_and_repr():
    with pytest.raises(ValueError, match="unknown AdaptiveAugment ops"):
        AdaptiveAugment("xflip,yflip")
    with pytest.raises(ValueError, match="max_p"):
        AdaptiveAugment(max_p=1.0)
    with pytest.raises(ValueError, match="p <= 1"):
        AdaptiveAugment(p=1.5)
    with pytest.raises(ValueError, match="target"):
        AdaptiveAugment(target=2.0)
    with pytest.raises(ValueError, match="interval"):
        AdaptiveAugment(interval=0)
    with pytest.raises(ValueError, match="ramp_images"):
        AdaptiveAugment(ramp_images=0)
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        AdaptiveAugment(p=0.5)(torch.zeros(2, 8, 8))
    assert "translation" in repr(AdaptiveAugment())
