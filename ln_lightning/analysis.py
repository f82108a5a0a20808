"""The paper's analyses, as plain functions: the annotators' NLL and the figures.

The callbacks in :mod:`ln_lightning.callbacks` call these at the end of training on the model's
:meth:`~ln_lightning.module.NoisyLabelClassifier.split_predictions`; they work as well on any
trained model. The scores of mislabelled examples (``mislabel_scores``,
``detection_metrics``) moved to :mod:`ln_lightning.label_issues`; their old names here are
deprecated aliases, gone in the next release.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ln_lightning.deprecation import moved_names
from ln_lightning.inference import SplitPredictions

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ln_lightning.module import NoisyLabelClassifier

__all__ = [
    "annotator_nll",
    "plot_decision_boundary",
    "plot_grid_heatmap",
    "plot_memorisation",
    "plot_residual_histograms",
]


def annotator_nll(probs: Tensor, annotator_labels: Tensor) -> Tensor:
    """Mean NLL of the predictions against several annotators' labels per example (Table 4).

    ``mean_i mean_a -log p(label_{i,a} | x_i)``; labels ``-1`` (missing annotation) are skipped.

    Args:
        probs: ``(N, K)`` predicted probabilities.
        annotator_labels: ``(N, A)`` integer labels, one column per annotator.
    """
    if annotator_labels.ndim != 2 or len(annotator_labels) != len(probs):
        raise ValueError(
            f"annotator_labels must have shape (N, A) with N = {len(probs)}; got "
            f"{tuple(annotator_labels.shape)}."
        )
    present = annotator_labels >= 0
    picked = probs.gather(1, annotator_labels.clamp_min(0)).clamp_min(1e-12)
    per_example = (-picked.log() * present).sum(1) / present.sum(1).clamp_min(1)
    return per_example[present.any(1)].mean()


# ------------------------------------------------------------------------------- figures
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_residual_histograms(predictions: SplitPredictions, bins: int = 50) -> Figure:
    """Fig. 6: squared residuals of clean vs corrupted labels, Sigma = I and Sigma_theta.

    Raises:
        ValueError: If the predictions carry no LN residuals.
    """
    if predictions.residual is None or predictions.whitened_residual is None:
        raise ValueError("residual histograms need a model trained with LogisticNormalLoss.")
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    corrupted, clean = predictions.corrupted, predictions.known & ~predictions.corrupted
    for ax, values, title in (
        (axes[0], predictions.residual, r"$\Sigma = I$: $r^\top r$"),
        (axes[1], predictions.whitened_residual, r"$\Sigma = \Sigma_\theta$: $r^\top\Sigma^{-1}r$"),
    ):
        values = values.clamp_min(1e-6).log10()
        edges = torch.linspace(float(values.min()), float(values.max()) + 1e-6, bins + 1).numpy()
        ax.hist(values[clean].numpy(), bins=edges, alpha=0.6, label=f"clean ({int(clean.sum())})")
        ax.hist(
            values[corrupted].numpy(),
            bins=edges,
            alpha=0.6,
            label=f"noisy ({int(corrupted.sum())})",
        )
        ax.set_xlabel(r"$\log_{10}$ squared residual")
        ax.set_title(title)
        ax.legend()
    axes[0].set_ylabel("training examples")
    figure.tight_layout()
    return figure


@torch.no_grad()
def plot_decision_boundary(
    model: NoisyLabelClassifier,
    inputs: Tensor,
    given: Tensor,
    corrupted: Tensor,
    resolution: int = 200,
    title: str | None = None,
) -> Figure:
    """Fig. 3: the predicted class over the plane, with the training points and their labels.

    Args:
        model: A classifier of two-dimensional inputs.
        inputs: ``(N, 2)`` training inputs.
        given: Their (noisy) labels.
        corrupted: Which labels are wrong (drawn as crosses).
        resolution: Grid points per axis.
        title: Figure title (default: the loss class).
    """
    if inputs.ndim != 2 or inputs.shape[1] != 2:
        raise ValueError(f"decision boundaries need 2-D inputs; got shape {tuple(inputs.shape)}.")
    plt = _pyplot()
    low, high = inputs.min(0).values, inputs.max(0).values
    margin = 0.15 * (high - low)
    xs = torch.linspace(float(low[0] - margin[0]), float(high[0] + margin[0]), resolution)
    ys = torch.linspace(float(low[1] - margin[1]), float(high[1] + margin[1]), resolution)
    grid_x, grid_y = torch.meshgrid(xs, ys, indexing="xy")
    grid = torch.stack([grid_x.flatten(), grid_y.flatten()], 1)
    was_training = model.training
    model.eval()
    try:
        probs = torch.cat(
            [model.predict_proba(chunk.to(model.device)).cpu() for chunk in grid.split(8192)]
        )
    finally:
        model.train(was_training)
    figure, ax = plt.subplots(figsize=(5, 4.5))
    predicted = probs.argmax(1).reshape(resolution, resolution)
    ax.contourf(grid_x.numpy(), grid_y.numpy(), predicted.numpy(), alpha=0.25, cmap="coolwarm")
    ax.contour(grid_x.numpy(), grid_y.numpy(), predicted.numpy(), colors="k", linewidths=0.8)
    clean = ~corrupted
    ax.scatter(
        *inputs[clean].T.numpy(), c=given[clean].numpy(), cmap="coolwarm", s=8, vmin=0, vmax=1
    )
    ax.scatter(
        *inputs[corrupted].T.numpy(), c=given[corrupted].numpy(), cmap="coolwarm", s=30,
        marker="x", vmin=0, vmax=1, label="wrong label",
    )  # fmt: skip
    ax.legend(loc="upper right")
    ax.set_title(title or type(model.loss).__name__)
    figure.tight_layout()
    return figure


def plot_grid_heatmap(
    rows: Sequence[dict[str, Any]], x_key: str, y_key: str, value_keys: Sequence[str]
) -> Figure:
    """Fig. 5: one heat map per value (e.g. noisy val and clean test accuracy) over a 2-D grid.

    Args:
        rows: Dicts holding ``x_key``, ``y_key`` and each of ``value_keys`` (``None`` = missing).
        x_key, y_key: The two grid axes (e.g. lambda and tau).
        value_keys: Values to draw, one panel each; means over rows with the same grid point.
    """
    plt = _pyplot()
    xs = sorted({r[x_key] for r in rows})
    ys = sorted({r[y_key] for r in rows})
    figure, axes = plt.subplots(1, len(value_keys), figsize=(4.2 * len(value_keys), 3.4))
    axes = [axes] if len(value_keys) == 1 else list(axes)
    for ax, key in zip(axes, value_keys, strict=True):
        table = torch.full((len(ys), len(xs)), float("nan"))
        for j, y in enumerate(ys):
            for i, x in enumerate(xs):
                values = [
                    r[key] for r in rows if r[x_key] == x and r[y_key] == y and r[key] is not None
                ]
                if values:
                    table[j, i] = 100 * sum(values) / len(values)
        image = ax.imshow(table.numpy(), cmap="viridis", origin="lower", aspect="auto")
        middle = float(table.nan_to_num(float("inf")).min() + table.nan_to_num(-1.0).max()) / 2
        for j in range(len(ys)):
            for i in range(len(xs)):
                if not table[j, i].isnan():
                    colour = "k" if table[j, i] > middle else "w"  # readable on viridis
                    ax.text(i, j, f"{table[j, i]:.1f}", ha="center", va="center", color=colour)
        ax.set_xticks(range(len(xs)), [str(x) for x in xs])
        ax.set_yticks(range(len(ys)), [str(y) for y in ys])
        ax.set_xlabel(x_key.rsplit(".", 1)[-1])
        ax.set_ylabel(y_key.rsplit(".", 1)[-1])
        ax.set_title(key)
        figure.colorbar(image, ax=ax)
    figure.tight_layout()
    return figure


def plot_memorisation(curves: dict[str, dict[str, list[tuple[int, float]]]]) -> Figure:
    """Fig. 4: the share of wrong training labels each method fits, per epoch.

    Args:
        curves: Setting -> method -> ``(epoch, train/acc_corrupted_vs_noisy)`` points.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for ax, (setting, methods) in zip(axes[0], curves.items(), strict=True):
        for method, points in methods.items():
            epochs, values = zip(*points, strict=True)
            ax.plot([e + 1 for e in epochs], [100 * v for v in values], label=method)
        ax.set_title(setting)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("wrong training labels fitted (%)")
    axes[0][-1].legend()
    figure.tight_layout()
    return figure


#: Names that moved to :mod:`ln_lightning.label_issues` (deprecated aliases, for one release).
__getattr__ = moved_names(
    __name__,
    dict.fromkeys(("SCORES", "detection_metrics", "mislabel_scores"), "ln_lightning.label_issues"),
)
