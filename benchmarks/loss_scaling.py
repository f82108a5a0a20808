"""Loss forward + backward time and peak memory against the number of classes.

For K in ``--classes`` at batch ``--batch-size``, on random head outputs, measures

* ``CE``: ``F.cross_entropy`` on ``(B, K)`` logits;
* ``LN``: ``logistic_normal_loss`` (full covariance, dummy class: ``(B, K)`` mean and factor), the
  closed-form forward and backward of ``functional._FullCovarianceLN``;
* ``LN autograd``: the same loss by autograd through the whitened residual of
  ``functional.gaussian_terms`` (what ``logistic_normal_loss`` did before the closed form);
* ``LowRankMVN``: the same negative log-likelihood through
  ``torch.distributions.LowRankMultivariateNormal`` (Sigma = lambda^2 I + (|c|^2 + 2 lambda) c c^T,
  a rank-1 factor), the generic way to write it;
* ``Het-tau-Sigma_full`` with 10 and 100 samples (R = 2), for the cost of sampling.

Times are medians of ``--repeats`` rounds after ``--warmup``; each round runs CE, LN, LN autograd
and LowRankMVN once (Het-tau-Sigma_full in rounds of its own), so the ratios compare losses timed
side by side in the same process. Peak memory is what the
forward and backward allocate on top of the inputs (gradients included): CUDA's allocator
statistics on GPU, a dispatch-mode tracker of live tensor storage on CPU.

``--dtype bfloat16`` feeds bf16 head outputs (what a ``bf16-mixed`` network produces); the
losses upcast to float32 inside. CUDA is used when available (``--device``).

    python benchmarks/loss_scaling.py                      # CPU, float32 and bfloat16
    python benchmarks/loss_scaling.py --device cuda --classes 10 100 1000 10000 21843
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timing import interleaved_medians
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ln_lightning.losses import functional as LF

MIN_SCALE = 1.0


def lowrank_mvn_nll(mean: torch.Tensor, scale: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LN's Eq. 5 loss written with ``torch.distributions`` (lambda = 1, tau = 1, t = 0.01)."""
    mean, scale = mean.float(), scale.float()
    target = LF.target_logits(labels, mean.shape[1], smoothing=0.01)
    weight = (scale.square().sum(1, keepdim=True) + 2 * MIN_SCALE).sqrt()
    normal = torch.distributions.LowRankMultivariateNormal(
        mean, cov_factor=(weight * scale)[:, :, None],
        cov_diag=torch.full_like(mean, MIN_SCALE**2),
    )  # fmt: skip
    return -normal.log_prob(target) - 0.5 * mean.shape[1] * torch.log(torch.tensor(2 * torch.pi))


def ln_autograd(mean: torch.Tensor, scale: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LN's Eq. 5 loss by autograd through the whitened residual (``gaussian_terms``)."""
    target = LF.target_logits(labels, mean.shape[1], smoothing=0.01)
    mahalanobis, logdet = LF.gaussian_terms(
        target - mean.float(), scale, covariance="full", min_scale=MIN_SCALE
    )
    return 0.5 * (mahalanobis + logdet)


class LiveStorage(TorchDispatchMode):
    """Peak bytes of tensor storage created inside the mode and still alive (CPU or any device)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                ref = StorageWeakRef(storage)
                self.live.setdefault(ref.cdata, (ref, storage.nbytes()))
        self.live = {key: value for key, value in self.live.items() if not value[0].expired()}
        self.peak = max(self.peak, sum(size for _, size in self.live.values()))
        return out


def peak_mib(step: Callable[[], torch.Tensor], device: str) -> float:
    """MiB allocated at the peak of ``step().sum().backward()`` beyond what existed before."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step().sum().backward()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    with LiveStorage() as tracker:
        step().sum().backward()
    return tracker.peak / 2**20


def median_ms(
    runs: dict[str, Callable[[], torch.Tensor]], device: str, warmup: int, repeats: int
) -> dict[str, float]:
    """Median milliseconds of ``run().sum().backward()`` per run, the runs interleaved."""
    steps = {name: (lambda run=run: run().sum().backward()) for name, run in runs.items()}
    seconds = interleaved_medians(steps, repeats, warmup, device)
    return {name: 1000 * value for name, value in seconds.items()}


def losses(k: int, dtype: torch.dtype, args: argparse.Namespace) -> dict[str, Callable]:
    """Every loss for ``k`` classes on fresh leaves of ``dtype`` (gradients reset per call)."""

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=args.device).to(dtype).requires_grad_()

    b = args.batch_size
    logits, mean, scale = leaf(b, k), leaf(b, k), leaf(b, k)
    std, factor = leaf(b, k), leaf(b, k, 2)
    labels = torch.randint(0, k, (b,), device=args.device)

    def fresh(fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:  # like a training step: no gradient to accumulate into
            for tensor in (logits, mean, scale, std, factor):
                tensor.grad = None
            return fn()

        return run

    def het(samples: int) -> Callable[[], torch.Tensor]:
        return lambda: LF.heteroscedastic_loss(
            mean, F.softplus(std.float()) + 1e-3, labels, num_samples=samples,
            temperature=0.5, factor=factor, share_samples=True,
        )  # fmt: skip

    runs = {
        "CE": lambda: F.cross_entropy(logits.float(), labels, reduction="none"),
        "LN": lambda: LF.logistic_normal_loss(
            mean, scale, labels, LF.LogisticNormalParams(min_scale=MIN_SCALE)
        ),
        "LN autograd": lambda: ln_autograd(mean, scale, labels),
        "MVN": lambda: lowrank_mvn_nll(mean, scale, labels),
    }
    for samples in (10, 100):  # B x S x K logits per call: skip what would take minutes
        if b * samples * k <= args.max_het_elements:
            runs[f"het{samples}"] = het(samples)
    return {name: fresh(run) for name, run in runs.items()}


def ratio(ms: dict[str, float], name: str) -> str:
    """``ms[name] / ms["CE"]`` as a table cell, ``-`` where ``name`` was skipped."""
    return f"{ms[name] / ms['CE']:.1f}" if name in ms else "-"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--max-het-elements", type=float, default=3e7,
        help="skip Het-tau-Sigma_full where batch x samples x K exceeds this",
    )  # fmt: skip
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"{name}, torch {torch.__version__}, batch {args.batch_size}, "
          f"threads {torch.get_num_threads()}, median of {args.repeats}\n")  # fmt: skip
    print("| K | dtype | CE (ms) | LN (ms) | LN / CE | LN autograd (ms) | LowRankMVN (ms) | "
          "MVN / LN | Het S=10 / CE | Het S=100 / CE |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    memory = {}
    for k in args.classes:
        for dtype_name in args.dtype:
            runs = losses(k, getattr(torch, dtype_name), args)
            # Het's large sample tensors disturb the allocator: time them in their own rounds.
            het = {name: run for name, run in runs.items() if name.startswith("het")}
            core = {name: run for name, run in runs.items() if name not in het}
            ms = median_ms(core, args.device, args.warmup, args.repeats)
            ms |= median_ms(het, args.device, args.warmup, args.repeats)
            memory[k, dtype_name] = {name: peak_mib(run, args.device) for name, run in runs.items()}
            print(
                f"| {k} | {dtype_name} | {ms['CE']:.3f} | {ms['LN']:.3f} | "
                f"{ms['LN'] / ms['CE']:.2f} | {ms['LN autograd']:.3f} | {ms['MVN']:.3f} | "
                f"{ms['MVN'] / ms['LN']:.1f} | {ratio(ms, 'het10')} | {ratio(ms, 'het100')} |"
            )
    print("\nPeak memory above the inputs (MiB, forward + backward, gradients included)\n")
    print("| K | dtype | CE | LN | LN autograd | LowRankMVN | Het S=10 | Het S=100 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (k, dtype_name), mib in memory.items():
        cells = " | ".join(
            f"{mib[name]:.2f}" if name in mib else "-"
            for name in ("CE", "LN", "LN autograd", "MVN", "het10", "het100")
        )
        print(f"| {k} | {dtype_name} | {cells} |")


if __name__ == "__main__":
    main()
