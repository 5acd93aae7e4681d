"""Data-parallel training across processes: torchrun with gloo on the CPU."""

from __future__ import annotations

import textwrap

import torch

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from gancore import (MLPDiscriminator, MLPGenerator, GANLoss, adversarial_steps,
                         init_distributed, is_main_process, make_rngs, train_gan,
                         distributed_context)
    out = sys.argv[1]
    device = init_distributed("cpu")
    rank, world = distributed_context()
    torch.manual_seed(rank)  # different initial weights: rank 0's must win
    rngs = make_rngs(0)
    g, d = MLPGenerator(4, 2, (16,)), MLPDiscriminator(2, (16,))
    d_fn, g_fn = adversarial_steps(g, d, GANLoss("hinge"), latent_dim=4, rngs=rngs)
    data = torch.randn(101, 2, generator=torch.Generator().manual_seed(5))
    seen = []
    def d_loss(batch):
        seen.append(batch[0].shape[0])
        return d_fn(batch)
    history = train_gan(
        generator=g, discriminator=d,
        g_optimizer=torch.optim.Adam(g.parameters(), 1e-3),
        d_optimizer=torch.optim.Adam(d.parameters(), 1e-3),
        d_loss_fn=d_loss, g_loss_fn=g_fn, data=(data,), n_epochs=3, batch_size=16,
        device=device, rngs=rngs, checkpoint_path=f"{out}/run.ckpt",
        checkpoint_every=1,
    )
    torch.save({"g": g.state_dict(), "d": d.state_dict(), "history": history,
                "rows": sum(seen), "main": is_main_process()}, f"{out}/rank{rank}.pt")
    """
)


def test_two_process_gloo_training(tmp_path, torchrun):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    torchrun(script, tmp_path, timeout=180)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    # Both replicas end with the same weights and the same (all-reduced) history.
    for key in ("g", "d"):
        for name, tensor in ranks[0][key].items():
            assert torch.equal(tensor, ranks[1][key][name]), (key, name)
    assert ranks[0]["history"] == ranks[1]["history"]
    # Each rank saw its own shard: 101 rows -> 51 a rank per epoch (padded).
    assert ranks[0]["rows"] == ranks[1]["rows"] == 3 * 51
    assert [r["main"] for r in ranks] == [True, False]
    assert (tmp_path / "run.ckpt").exists()
