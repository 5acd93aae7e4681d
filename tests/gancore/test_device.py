"""Device choice and local random number generators."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gancore import autocast, make_grad_scaler, make_rngs, resolve_device


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="not a device"):
        resolve_device("tpu-please")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA|none is present"):
        resolve_device("cuda")


def test_cpu_runs_in_full_precision():
    cpu = torch.device("cpu")
    with autocast(cpu):
        out = torch.nn.Linear(2, 2)(torch.ones(1, 2))
    assert out.dtype == torch.float32
    assert not make_grad_scaler(cpu).is_enabled()


def test_rngs_are_local_and_reproducible():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    np_before = np.random.get_state()[1].copy()  # noqa: NPY002
    a, b = make_rngs(7), make_rngs(7)
    assert torch.equal(
        torch.rand(4, generator=a.torch_cpu), torch.rand(4, generator=b.torch_cpu)
    )
    assert torch.equal(
        torch.randn(4, generator=a.torch_device),
        torch.randn(4, generator=b.torch_device),
    )
    assert np.array_equal(a.numpy.random(3), b.numpy.random(3))
    # the three streams differ from one another
    c = make_rngs(7)
    assert not torch.equal(
        torch.rand(4, generator=c.torch_cpu), torch.rand(4, generator=c.torch_device)
    )
    # global state untouched
    assert torch.equal(torch.random.get_rng_state(), before)
    assert np.array_equal(np.random.get_state()[1], np_before)  # noqa: NPY002


def test_random_state_forms():
    assert torch.equal(
        torch.rand(2, generator=make_rngs(np.random.RandomState(3)).torch_cpu),
        torch.rand(2, generator=make_rngs(np.random.RandomState(3)).torch_cpu),
    )
    make_rngs(np.random.default_rng(0))
    unseeded = [torch.rand(2, generator=make_rngs(None).torch_cpu) for _ in range(2)]
    assert not torch.equal(*unseeded)
    with pytest.raises(ValueError, match="non-negative"):
        make_rngs(-1)
    with pytest.raises(TypeError, match="random_state"):
        make_rngs("seed")


def test_rng_state_round_trip():
    rngs = make_rngs(5)
    state = rngs.state_dict()
    first = (torch.rand(3, generator=rngs.torch_cpu), rngs.numpy.random(3))
    rngs.load_state_dict(state)
    second = (torch.rand(3, generator=rngs.torch_cpu), rngs.numpy.random(3))
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
