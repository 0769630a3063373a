"""Lecture III: one training iteration of recipes.gan (the discriminator's step on real and
generated images, then the generator's through the frozen discriminator), gpudl beside a
PyTorch twin of the same two networks.

First the answer: the twin gets gpudl's weights and both must give the same generated images
and discriminator outputs (inference mode). Then each runs ``--steps`` timed iterations after
``--warmup`` untimed ones on the same batch size, and the milliseconds per iteration are
printed side by side.

    python benchmarks/bench_gan.py --batch-size 32 --steps 20 --threads 1
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--latent-dim", type=int, default=100)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def torch_twin(gan, torch):
    """The recipe's two networks in PyTorch, holding gpudl's current weights."""
    nn = torch.nn
    g, d = gan.generator, gan.discriminator
    dense, bn1, _, reshape, up1, bn2, _, up2 = g.layers
    conv1, _, drop1, conv2, _, _, _, out = d.layers
    c1, h4, w4 = reshape.target_shape
    tg = nn.Sequential(
        nn.Linear(gan.latent_dim, c1 * h4 * w4, bias=False), nn.BatchNorm1d(c1 * h4 * w4, eps=bn1.epsilon,
                                                                            momentum=1 - bn1.momentum),
        nn.ReLU(), nn.Unflatten(1, (c1, h4, w4)),
        nn.ConvTranspose2d(c1, up1.filters, up1.kernel_size, 2, padding=1, bias=False),
        nn.BatchNorm2d(up1.filters, eps=bn2.epsilon, momentum=1 - bn2.momentum), nn.ReLU(),
        nn.ConvTranspose2d(up1.filters, up2.filters, up2.kernel_size, 2, padding=1), nn.Sigmoid())
    td = nn.Sequential(
        nn.Conv2d(gan.image_shape[0], conv1.filters, conv1.kernel_size, 2, padding=1), nn.LeakyReLU(0.2),
        nn.Dropout(drop1.rate), nn.Conv2d(conv1.filters, conv2.filters, conv2.kernel_size, 2, padding=1),
        nn.LeakyReLU(0.2), nn.Dropout(drop1.rate), nn.Flatten(), nn.Linear(out.W.shape[0], 1))
    t = lambda a: torch.from_numpy(np.ascontiguousarray(gpudl_np(a)))  # noqa: E731
    with torch.no_grad():
        tg[0].weight.copy_(t(dense.W).T)
        for tb, b in ((tg[1], bn1), (tg[5], bn2)):
            tb.weight.copy_(t(b.gamma)), tb.bias.copy_(t(b.beta))
            tb.running_mean.copy_(t(b.moving_mean)), tb.running_var.copy_(t(b.moving_variance))
        tg[4].weight.copy_(t(up1.W))
        tg[7].weight.copy_(t(up2.W)), tg[7].bias.copy_(t(up2.b))
        for tc, c in ((td[0], conv1), (td[3], conv2)):
            tc.weight.copy_(t(c.W)), tc.bias.copy_(t(c.b))
        td[7].weight.copy_(t(out.W).T), td[7].bias.copy_(t(out.b))
    return tg, td


def gpudl_np(a):
    import gpudl
    return gpudl.to_numpy(a.data if hasattr(a, "data") else a)


def main(argv=None) -> int:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import torch

    import gpudl
    from gpudl import recipes
    torch.set_num_threads(args.threads)
    gpudl.set_seed(0)
    torch.manual_seed(0)
    gan = recipes.gan(args.latent_dim).compile()
    tg, td = torch_twin(gan, torch)
    tg.eval(), td.eval()

    # the answer first: the same images and the same verdicts from the same weights
    z = np.random.default_rng(0).standard_normal((8, args.latent_dim)).astype(np.float32)
    ours = gan.sample(z=z)
    with torch.no_grad():
        theirs = tg(torch.from_numpy(z)).numpy()
        verdict = torch.sigmoid(td(torch.from_numpy(ours))).numpy().reshape(-1)
    gap_g = float(np.abs(ours - theirs).max())
    gap_d = float(np.abs(gan.discriminate(ours) - verdict).max())
    print(f"same weights: generator max |gpudl - torch| {gap_g:.2e}, discriminator {gap_d:.2e}")
    if gap_g > 1e-4 or gap_d > 1e-4:
        print("the twins disagree: no timing")
        return 1

    real = np.random.default_rng(1).random((args.batch_size, *gan.image_shape), dtype=np.float32)
    x = gan.check_images(real, "bench")

    def gpudl_iteration():
        gan._step(x)

    bce = torch.nn.BCEWithLogitsLoss()
    opt_d = torch.optim.Adam(td.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-7)
    opt_g = torch.optim.Adam(tg.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-7)
    treal = torch.from_numpy(real)
    m = args.batch_size

    def torch_iteration():
        tg.train(), td.train()
        with torch.no_grad():
            fake = tg(torch.randn(m, args.latent_dim))
        opt_d.zero_grad()
        y = torch.cat([torch.ones(m, 1), torch.zeros(m, 1)])
        bce(td(torch.cat([treal, fake])), y).backward()
        opt_d.step()
        for p in td.parameters():
            p.requires_grad_(False)
        opt_g.zero_grad()
        bce(td(tg(torch.randn(m, args.latent_dim))), torch.ones(m, 1)).backward()
        opt_g.step()
        for p in td.parameters():
            p.requires_grad_(True)

    rows = []
    for name, fn in (("gpudl", gpudl_iteration), (f"PyTorch {torch.__version__}", torch_iteration)):
        for _ in range(args.warmup):
            fn()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fn()
        rows.append((name, 1000 * (time.perf_counter() - t0) / args.steps))
    print(f"one iteration, batch {m} real + {m} generated, 28x28, {args.threads} thread(s):")
    for name, ms in rows:
        print(f"  {name:24s}{ms:9.1f} ms")
    print(f"  gpudl / PyTorch = {rows[0][1] / rows[1][1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
