"""Per-step time of every loss relative to cross-entropy on the same batch.

For each shipped loss config (``zoo/configs/losses/*.yaml``) this builds the same
``NoisyLabelClassifier`` (same backbone, heads as the loss declares) and times, on one fixed
batch:

* ``step``: a full training step (forward, loss, backward, Adam update);
* ``loss``: the loss alone, forward and backward, on fixed head outputs.

Medians over ``--repeats`` rounds after ``--warmup`` untimed ones; each round runs every loss
once (interleaved), and ratios are to CE in the same run.

    python benchmarks/loss_step_time.py                        # digits batch, small_cnn, CPU
    python benchmarks/loss_step_time.py --backbone lenet5 --input-shape 1 28 28 --losses ce ln
    python benchmarks/loss_step_time.py --backbone wrn28_2 --input-shape 3 32 32 --losses ce ln
    python benchmarks/loss_step_time.py --losses ce ln --label-check     # the check's cost

``--label-check`` adds, for every loss, the same step with the losses' check of the label
values switched off (``check_labels(values=False)``, what they do for labels on a GPU, where
reading the range back would synchronise the device), interleaved with the checked one.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import torch
import yaml
from jsonargparse import ArgumentParser
from timing import interleaved_medians

from ln_lightning import NoisyLabelClassifier, NoisyLabelLoss
from ln_lightning.losses.functional import forward as F_FORWARD
from ln_lightning.losses.functional import heteroscedastic as F_HET
from ln_lightning.losses.functional import logistic_normal as F_LN
from ln_lightning.losses.functional import softmax as F_SOFTMAX

CONFIGS = Path(__file__).resolve().parents[1] / "zoo" / "configs" / "losses"
#: The modules whose ``check_labels`` the losses call.
FUNCTIONAL = [F_LN, F_SOFTMAX, F_FORWARD, F_HET]
ORDER = ["ce", "ls", "gce", "nan", "forward", "het", "het_tau", "het_tau_full", "ln"]


def load_loss(path: Path) -> NoisyLabelLoss:
    """Instantiate the loss of a loss config with jsonargparse, as the CLI does."""
    parser = ArgumentParser()
    parser.add_argument("--loss", type=NoisyLabelLoss)
    config = {"loss": yaml.safe_load(path.read_text())["model"]["init_args"]["loss"]}
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    return instantiate(parser.parse_object(config)).loss


def train_step(model: NoisyLabelClassifier, optimizer, inputs, labels) -> None:
    optimizer.zero_grad(set_to_none=True)
    model.loss(model(inputs), labels).backward()
    optimizer.step()


def loss_step(loss: NoisyLabelLoss, fixed: dict, labels) -> None:
    outputs = {k: v.clone().requires_grad_() for k, v in fixed.items()}
    loss(outputs, labels).backward()


def unchecked(step) -> None:
    """Run ``step`` with the losses' label-value check off (as for labels on a GPU)."""
    from ln_lightning.losses.functional import _common

    original = _common.check_labels
    for module in FUNCTIONAL:
        module.check_labels = partial(original, values=False)
    try:
        step()
    finally:
        for module in FUNCTIONAL:
            module.check_labels = original


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--input-shape", type=int, nargs="+", default=[1, 8, 8])
    parser.add_argument("--losses", nargs="+", default=ORDER, choices=ORDER)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--label-check", action="store_true", help="time the label check too")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(args.batch_size, *args.input_shape, generator=gen).to(device)
    labels = torch.randint(0, args.num_classes, (args.batch_size,), generator=gen).to(device)

    names = ["ce", *(name for name in args.losses if name != "ce")]
    step_fns, loss_fns = {}, {}
    for name in names:
        loss = load_loss(CONFIGS / f"{name}.yaml")
        torch.manual_seed(0)
        model = NoisyLabelClassifier(
            backbone=args.backbone,
            loss=loss,
            num_classes=args.num_classes,
            input_shape=args.input_shape,
        ).to(device)
        if name == "forward":  # time the corrected loss, not the CE warm-up
            loss.transition_ready.fill_(True)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        with torch.no_grad():
            fixed = {k: v.detach() for k, v in model(inputs).items()}
        step_fns[name] = partial(train_step, model, optimizer, inputs, labels)
        loss_fns[name] = partial(loss_step, model.loss, fixed, labels)
    if args.label_check:
        for name in names:
            step_fns[f"{name} (no label check)"] = partial(unchecked, step_fns[name])
            loss_fns[f"{name} (no label check)"] = partial(unchecked, loss_fns[name])
        names = list(step_fns)
    step_s = interleaved_medians(step_fns, args.repeats, args.warmup, device)
    loss_s = interleaved_medians(loss_fns, args.repeats, args.warmup, device)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{where}, backbone={args.backbone}, batch={args.batch_size}, "
        f"K={args.num_classes}, input={tuple(args.input_shape)}, "
        f"threads={torch.get_num_threads()}, median of {args.repeats} (interleaved)\n"
    )
    print("| loss | step (ms) | step / CE | loss fwd+bwd (ms) | loss / CE |")
    print("| --- | --- | --- | --- | --- |")
    for name in names:
        print(
            f"| {name} | {1e3 * step_s[name]:.2f} | {step_s[name] / step_s['ce']:.3f} | "
            f"{1e3 * loss_s[name]:.3f} | {loss_s[name] / loss_s['ce']:.2f} |"
        )


if __name__ == "__main__":
    main()
