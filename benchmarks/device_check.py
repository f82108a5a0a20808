"""One prepared check of a GPU machine: precision, memory, throughput, compile, ln-fit end to end.

Made to run on a lent CUDA machine in a few minutes with nothing downloaded (synthetic inputs
and the bundled digits only), as one command, printing a table and writing it as JSON:

1. **Losses under mixed precision**: every loss, forward and backward at K = 10, 1,000 and
   21,843, with its head outputs from a linear layer run under float32, ``bf16-mixed`` and
   ``16-mixed`` autocast: the loss and its gradient must be finite and close to float32's
   (tolerances below); peak CUDA memory of each.
2. **Training-step throughput** of ``wrn28_2`` on 32x32 inputs, batch 128: CE vs LN vs
   Het-tau-Sigma_full, without and with ``torch.compile`` of the backbone (images/s, ratios
   measured in the same run, interleaved).
3. **ln-fit end to end**: ``ln-fit fit --config cli.yaml`` for a few epochs on the GPU under
   ``16-mixed`` and ``bf16-mixed`` (and DDP over every visible GPU when there are two or more),
   reading back ``test/acc`` and checking it is above chance.

Without CUDA it says so in one line and runs the same parts on the CPU (``bf16`` autocast only;
``--tiny`` makes them small enough for the test suite).

    python benchmarks/device_check.py --out device_check.json          # on the GPU machine
    python benchmarks/device_check.py --tiny --out /tmp/check.json     # CPU smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from timing import interleaved_medians

import zoo  # noqa: F401  (registers wrn28_2 and small_cnn in timm)
from ln_lightning import losses as L
from ln_lightning.backbones import build_backbone, feature_dim
from ln_lightning.heads import LinearHeads

ROOT = Path(__file__).resolve().parents[1]

#: Every loss, as the shipped configs build them (Het: the configs' 100 samples).
LOSSES: dict[str, Callable[[], L.NoisyLabelLoss]] = {
    "CE": L.CrossEntropy,
    "LS": lambda: L.LabelSmoothing(0.5),
    "GCE": lambda: L.GeneralizedCrossEntropy(0.7),
    "NAN": lambda: L.NoiseAgainstNoise(0.5),
    "Forward": lambda: L.ForwardCorrection(warmup_epochs=1),
    "Het": lambda: L.Heteroscedastic(num_samples=100),
    "Het-tau": lambda: L.HeteroscedasticTemperature(0.5, num_samples=100),
    "Het-tau-Sigma_full": lambda: L.HeteroscedasticLowRank(0.5, num_factors=2, num_samples=100),
    "LN": lambda: L.LogisticNormalLoss(0.5, 0.5),
}
#: Largest |loss - float32 loss| / |float32 loss| and smallest cosine of the gradient with the
#: float32 gradient that pass, per autocast dtype (bfloat16 keeps 8 bits of mantissa, float16 11).
TOLERANCES = {"bfloat16": (3e-2, 0.99), "float16": (5e-3, 0.999)}


def environment(device: torch.device) -> dict:
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device.type,
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info |= {
            "gpu": torch.cuda.get_device_name(device),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
            "gpus": torch.cuda.device_count(),
            "bf16_supported": torch.cuda.is_bf16_supported(),
        }
    return info


def _loss_and_grad(
    loss: L.NoisyLabelLoss, widths: dict[str, int], layer: torch.nn.Linear, features: torch.Tensor,
    labels: torch.Tensor, dtype: torch.dtype | None,
) -> tuple[float, torch.Tensor]:  # fmt: skip
    """The loss of head outputs from ``layer`` (under autocast with ``dtype``) and its gradient
    with respect to the layer's weight."""
    layer.zero_grad(set_to_none=True)
    device = features.device.type
    with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
        out = layer(features)
        outputs = dict(zip(widths, out.split(list(widths.values()), dim=-1), strict=True))
        value = loss(outputs, labels)
    value.backward()
    return value.item(), layer.weight.grad.detach().float().flatten()


def check_losses(device: torch.device, classes: list[int], batch: int) -> list[dict]:
    """Section 1: every loss at every K and autocast dtype against float32."""
    dtypes = {"bfloat16": torch.bfloat16}
    if device.type == "cuda":
        dtypes["float16"] = torch.float16
    rows = []
    for num_classes in classes:
        generator = torch.Generator().manual_seed(num_classes)
        features = torch.randn(batch, 64, generator=generator).to(device)
        labels = torch.randint(0, num_classes, (batch,), generator=generator).to(device)
        for name, factory in LOSSES.items():
            if name == "Forward" and num_classes > 5_000:
                continue  # T is K x K by definition: 1.9 GB at K = 21,843
            loss = factory()
            loss.setup(num_classes)
            if name == "Forward":  # the corrected phase, with a random row-stochastic T
                matrix = torch.rand(num_classes, num_classes, generator=generator)
                loss.transition_matrix.copy_(matrix / matrix.sum(1, keepdim=True))
                loss.transition_ready.fill_(True)
            loss = loss.to(device)
            widths = loss.head_shapes(num_classes)
            layer = torch.nn.Linear(64, sum(widths.values())).to(device)
            torch.manual_seed(0)
            reference, grad = _loss_and_grad(loss, widths, layer, features, labels, None)
            for dtype_name, dtype in dtypes.items():
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                torch.manual_seed(0)  # the same MC samples as the reference (Het)
                value, mixed = _loss_and_grad(loss, widths, layer, features, labels, dtype)
                error = abs(value - reference) / max(abs(reference), 1e-12)
                cosine = float(torch.nn.functional.cosine_similarity(mixed, grad, dim=0))
                finite = bool(torch.isfinite(mixed).all()) and bool(
                    torch.isfinite(torch.tensor(value))
                )
                limit, min_cosine = TOLERANCES[dtype_name]
                peak = (
                    torch.cuda.max_memory_allocated(device) / 2**20
                    if device.type == "cuda"
                    else None
                )
                rows.append({
                    "K": num_classes, "loss": name, "autocast": dtype_name,
                    "relative_error": error, "grad_cosine": cosine, "finite": finite,
                    "ok": finite and error <= limit and cosine >= min_cosine, "peak_mib": peak,
                })  # fmt: skip
    return rows


def throughput(device: torch.device, backbone: str, shape: tuple, batch: int, repeats: int,
               compile_modes: list[bool]) -> list[dict]:  # fmt: skip
    """Section 2: images/s of a full training step per loss, plain and with a compiled backbone."""
    inputs = torch.randn(batch, *shape, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    rows = []
    for compiled in compile_modes:
        net = build_backbone(backbone, in_chans=shape[0]).to(device)
        width = feature_dim(net.cpu(), shape)
        net = net.to(device)
        if compiled:
            net = torch.compile(net)
        steps, compile_seconds = {}, {}
        for name in ("CE", "LN", "Het-tau-Sigma_full"):
            loss = LOSSES[name]().to(device)
            loss.setup(10)
            heads = LinearHeads(width, loss.head_shapes(10)).to(device)
            parameters = [*net.parameters(), *heads.parameters()]
            optimizer = torch.optim.Adam(parameters, lr=1e-4)

            def step(net=net, heads=heads, loss=loss, optimizer=optimizer) -> None:
                optimizer.zero_grad(set_to_none=True)
                loss(heads(net(inputs)), labels).backward()
                optimizer.step()

            start = time.perf_counter()
            step()  # a compiled backbone compiles here
            if device.type == "cuda":
                torch.cuda.synchronize()
            compile_seconds[name] = time.perf_counter() - start
            steps[name] = step
        medians = interleaved_medians(steps, repeats, warmup=2, device=device)
        for name, seconds in medians.items():
            rows.append({
                "backbone": backbone, "loss": name, "compiled": compiled,
                "images_per_s": batch / seconds, "ratio_to_CE": seconds / medians["CE"],
                "first_step_s": compile_seconds[name],
            })  # fmt: skip
    plain = {r["loss"]: r["images_per_s"] for r in rows if not r["compiled"]}
    for row in rows:
        row["compile_speedup"] = row["images_per_s"] / plain[row["loss"]]
    return rows


def ln_fit_runs(device: torch.device, epochs: int, tiny: bool) -> list[dict]:
    """Section 3: ``ln-fit fit --config cli.yaml`` under each precision, test/acc read back."""
    if device.type == "cuda":
        setups = [("gpu", "16-mixed", 1), ("gpu", "bf16-mixed", 1)]
        if torch.cuda.device_count() >= 2:
            setups.append(("gpu", "bf16-mixed", torch.cuda.device_count()))
    else:
        setups = [("cpu", "bf16-mixed", 1)]
    rows = []
    for accelerator, precision, devices in setups:
        with tempfile.TemporaryDirectory() as folder:
            command = [
                sys.executable, "-m", "ln_lightning.cli", "fit",
                "--config", str(ROOT / "cli.yaml"),
                f"--trainer.accelerator={accelerator}", f"--trainer.precision={precision}",
                f"--trainer.devices={devices}", f"--trainer.max_epochs={epochs}",
                "--trainer.enable_progress_bar=false",
                f"--trainer.logger.init_args.save_dir={folder}",
            ]  # fmt: skip
            if devices > 1:
                command.append("--trainer.strategy=ddp")
            if tiny:
                command += ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
            start = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True, timeout=900)
            seconds = time.perf_counter() - start
            accuracy = None
            for metrics in Path(folder).glob("digits/*/metrics.csv"):
                with metrics.open() as handle:
                    for row in csv.DictReader(handle):
                        accuracy = float(row["test/acc"]) if row.get("test/acc") else accuracy
        rows.append({
            "accelerator": accelerator, "precision": precision, "devices": devices,
            "epochs": epochs, "exit": result.returncode, "test_acc": accuracy,
            # chance is 0.1; two batches (--tiny) only have to run
            "ok": result.returncode == 0 and accuracy is not None and (tiny or accuracy > 0.2),
            "seconds": seconds, "log_tail": (result.stdout + result.stderr)[-1500:],
        })  # fmt: skip
    return rows


def table(rows: list[dict], columns: list[str]) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "-" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("device_check.json"))
    parser.add_argument("--tiny", action="store_true", help="small sizes (CPU smoke runs)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile rows")
    parser.add_argument(
        "--sections", nargs="+", default=["losses", "throughput", "ln_fit"],
        choices=["losses", "throughput", "ln_fit"], help="run only these parts",
    )  # fmt: skip
    parser.add_argument("--backbone", help="throughput backbone (wrn28_2; --tiny: small_cnn)")
    parser.add_argument("--input-shape", type=int, nargs="+", help="e.g. 3 32 32")
    parser.add_argument("--batch-size", type=int, help="throughput batch (128; --tiny: 16)")
    parser.add_argument("--repeats", type=int, help="timed steps per case (20; --tiny: 2)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        print("No CUDA device here: running the CPU parts only (bf16 autocast, no GPU memory).")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    report: dict = {"environment": environment(device)}
    start = time.perf_counter()
    if "losses" in args.sections:
        classes = [10, 100] if args.tiny else [10, 1_000, 21_843]
        report["losses"] = check_losses(device, classes, batch=8 if args.tiny else 64)
    if "throughput" in args.sections:
        compile_modes = [False] if args.no_compile else [False, True]
        backbone = args.backbone or ("small_cnn" if args.tiny else "wrn28_2")
        shape = tuple(args.input_shape or ((1, 8, 8) if args.tiny else (3, 32, 32)))
        batch = args.batch_size or (16 if args.tiny else 128)
        repeats = args.repeats or (2 if args.tiny else 20)
        report["throughput"] = throughput(device, backbone, shape, batch, repeats, compile_modes)
    if "ln_fit" in args.sections:
        report["ln_fit"] = ln_fit_runs(device, epochs=1 if args.tiny else 5, tiny=args.tiny)
    report["seconds"] = time.perf_counter() - start
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["environment"]))
    columns = {
        "losses": ["K", "loss", "autocast", "relative_error", "grad_cosine", "finite", "ok",
                   "peak_mib"],
        "throughput": ["backbone", "loss", "compiled", "images_per_s", "ratio_to_CE",
                       "compile_speedup", "first_step_s"],
        "ln_fit": ["accelerator", "precision", "devices", "epochs", "exit", "test_acc", "ok",
                   "seconds"],
    }  # fmt: skip
    titles = {
        "losses": "Losses under autocast vs float32",
        "throughput": "Training-step throughput",
        "ln_fit": "ln-fit end to end",
    }
    for key, title in titles.items():
        if key in report:
            print(f"\n## {title}\n\n{table(report[key], columns[key])}")
    failed = [r for r in report.get("losses", []) + report.get("ln_fit", []) if not r["ok"]]
    print(f"\n{len(failed)} check(s) failed; {report['seconds']:.0f} s; written {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
