"""Loss forward + backward time against the number of classes: LN vs CE vs a distributions NLL.

For K in ``--classes`` at batch ``--batch-size``, on random head outputs, times (medians of
``--repeats`` after ``--warmup`` runs, same process, ratios to CE of the same K and dtype):

* ``CE``: ``F.cross_entropy`` on ``(B, K)`` logits;
* ``LN``: ``logistic_normal_loss`` (full covariance, dummy class: ``(B, K)`` mean and factor);
* ``LN via LowRankMVN``: the same negative log-likelihood through
  ``torch.distributions.LowRankMultivariateNormal`` (Sigma = lambda^2 I + (|c|^2 + 2 lambda) c c^T,
  a rank-1 factor), the generic way to write it;
* ``Het-tau-Sigma_full`` with 10 and 100 samples (R = 2), for the cost of sampling.

``--dtype bfloat16`` feeds bf16 head outputs (what a ``bf16-mixed`` network produces); the
losses upcast to float32 inside. CUDA is used when available (``--device``).

    python benchmarks/loss_scaling.py                      # CPU, float32 and bfloat16
    python benchmarks/loss_scaling.py --device cuda --classes 10 100 1000 10000 21843
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ln_lightning.losses import functional as LF


def lowrank_mvn_nll(mean: torch.Tensor, scale: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LN's Eq. 5 loss written with ``torch.distributions`` (lambda = 1, tau = 1, t = 0.01)."""
    min_scale = 1.0
    mean, scale = mean.float(), scale.float()
    target = LF.target_logits(labels, mean.shape[1], smoothing=0.01)
    weight = (scale.square().sum(1, keepdim=True) + 2 * min_scale).sqrt()
    normal = torch.distributions.LowRankMultivariateNormal(
        mean, cov_factor=(weight * scale)[:, :, None],
        cov_diag=torch.full_like(mean, min_scale**2),
    )  # fmt: skip
    return -normal.log_prob(target) - 0.5 * mean.shape[1] * torch.log(torch.tensor(2 * torch.pi))


def timed(step: Callable[[], torch.Tensor], device: str, warmup: int, repeats: int) -> float:
    """Median milliseconds of ``step().sum().backward()``."""

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    times = []
    for i in range(warmup + repeats):
        sync()
        start = time.perf_counter()
        step().sum().backward()
        sync()
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def measure(k: int, dtype: torch.dtype, args: argparse.Namespace) -> dict[str, float]:
    """Median ms of every loss for ``k`` classes and head outputs of ``dtype``."""

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=args.device).to(dtype).requires_grad_()

    b = args.batch_size
    logits, mean, scale = leaf(b, k), leaf(b, k), leaf(b, k)
    std, factor = leaf(b, k), leaf(b, k, 2)
    labels = torch.randint(0, k, (b,), device=args.device)

    def het(samples: int) -> Callable[[], torch.Tensor]:
        return lambda: LF.heteroscedastic_loss(
            mean, F.softplus(std.float()) + 1e-3, labels, num_samples=samples,
            temperature=0.5, factor=factor, share_samples=True,
        )  # fmt: skip

    runs = {
        "CE": lambda: F.cross_entropy(logits.float(), labels, reduction="none"),
        "LN": lambda: LF.logistic_normal_loss(mean, scale, labels),
        "MVN": lambda: lowrank_mvn_nll(mean, scale, labels),
        "het10": het(10),
        "het100": het(100),
    }
    return {name: timed(run, args.device, args.warmup, args.repeats) for name, run in runs.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(f"device {args.device}, batch {args.batch_size}, threads {torch.get_num_threads()}")
    print("| K | dtype | CE (ms) | LN (ms) | LN / CE | LowRankMVN (ms) | MVN / LN | "
          "Het-tau-Sigma_full S=10 / CE | S=100 / CE |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for k in args.classes:
        for dtype_name in args.dtype:
            ms = measure(k, getattr(torch, dtype_name), args)
            print(
                f"| {k} | {dtype_name} | {ms['CE']:.3f} | {ms['LN']:.3f} | "
                f"{ms['LN'] / ms['CE']:.2f} | {ms['MVN']:.3f} | {ms['MVN'] / ms['LN']:.1f} | "
                f"{ms['het10'] / ms['CE']:.1f} | {ms['het100'] / ms['CE']:.1f} |"
            )


if __name__ == "__main__":
    main()
