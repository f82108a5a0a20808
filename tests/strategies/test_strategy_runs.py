"""Every strategy through ``ln-fit`` as a user runs it: killed with SIGKILL mid-epoch and resumed
with ``--ckpt_path last`` (the same weights and per-sample state as an uninterrupted run), and
on two DDP processes (the same state on both ranks). Slow: ``pytest -m slow``."""

from __future__ import annotations

import pytest
import torch

from tests.test_ddp import run_ddp
from tests.test_resume import finish, last_checkpoint, ln_fit, steps

pytestmark = pytest.mark.slow

FORWARD_OR_COTEACHING = (
    "--config", "zoo/configs/strategies/forward_or_coteaching.yaml",
    "--model.strategy.decision_epochs=1", "--model.loss.init_args.warmup_epochs=3",
    "--model.strategy.gradual_epochs=2", "--model.strategy.min_spread=0",
    "--model.strategy.forget_rate=0.3", "--trainer.max_epochs=4",
)  # fmt: skip
#: ForwardOrCoTeaching's cases -> the choice the run must end with (its buffer ``choice``): the
#: model is near chance after one epoch of digits (the decision waits), decides at epoch 2.
CHOSEN = {"forward_or_coteaching": 1, "forward_or_coteaching_forward": 0}
#: Under DDP each rank sees half of each epoch: two more epochs before the decision can come.
LONGER = ("--trainer.max_epochs=6", "--model.loss.init_args.warmup_epochs=5")
#: strategy -> (its ln-fit arguments, checkpoint every n steps, SIGKILL after this step). SOP
#: optimises by hand with two optimisers: Lightning counts two steps a batch.
CASES = {
    "elr": (("--config", "zoo/configs/strategies/elr.yaml"), 4, 15),
    "sop": (("--config", "zoo/configs/strategies/sop.yaml", "--model.strategy.lr_v=100"), 8, 30),
    "dividemix": (
        ("--config", "zoo/configs/strategies/dividemix.yaml", "--model.strategy.warmup_epochs=1"),
        4,
        15,
    ),
    "coteaching": (
        ("--config", "zoo/configs/strategies/coteaching.yaml", "--model.strategy.gradual_epochs=2"),
        4,
        15,
    ),
    # decided at epoch 2's start (step 22), before the kill; min_spread 0: Co-teaching
    "forward_or_coteaching": (FORWARD_OR_COTEACHING, 4, 26),
    # the other branch: the peer set aside (under DDP a zero reaches its parameters)
    "forward_or_coteaching_forward": (
        (*FORWARD_OR_COTEACHING[:-3], "--model.strategy.min_share=0.99", "--trainer.max_epochs=4"),
        4,
        26,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights_and_state(name, tmp_path):
    args, every, kill_at = CASES[name]
    whole = ln_fit(tmp_path, "whole", every=every, loss=args)
    killed = ln_fit(tmp_path, "resumed", every=every, kill_at=kill_at, loss=args)
    (code, log), (killed_code, killed_log) = finish(whole), finish(killed)
    assert code == 0, log[-3000:]
    assert killed_code == -9, killed_log[-3000:]
    killed_steps = steps(tmp_path / "steps_resumed.jsonl")
    assert 0 < killed_steps[-1]["batch_idx"] < 10  # mid-epoch
    code, resumed_log = finish(
        ln_fit(tmp_path, "resumed", "--ckpt_path", "last", every=every, loss=args)
    )
    assert code == 0, resumed_log[-3000:]
    resumed_steps = steps(tmp_path / "steps_resumed.jsonl")[len(killed_steps) :]
    whole_steps = steps(tmp_path / "steps_whole.jsonl")
    assert [s["index"] for s in resumed_steps] == [
        s["index"] for s in whole_steps[-len(resumed_steps) :]
    ]  # the same batches from the checkpoint on
    expected = torch.load(last_checkpoint(tmp_path, "whole"), weights_only=False)
    got = torch.load(last_checkpoint(tmp_path, "resumed"), weights_only=False)
    assert got["global_step"] == expected["global_step"]
    state = expected["state_dict"]
    assert any(key.startswith("strategy.") for key in state)  # its state is compared too
    for key, value in state.items():
        torch.testing.assert_close(got["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    if name in CHOSEN:
        assert int(state["strategy.choice"]) == CHOSEN[name]


@pytest.mark.parametrize("name", list(CASES))
def test_two_ddp_processes_keep_the_same_strategy_state(name, tmp_path):
    args, _, _ = CASES[name]
    out, (rank0, rank1), _ = run_ddp(tmp_path, *args, *(LONGER if name in CHOSEN else ()))
    assert rank0["strategy"] is not None and rank0["strategy"] == rank1["strategy"]
    assert rank0["network"] == rank1["network"]
    assert rank0["metrics"]["val/acc_noisy"] == rank1["metrics"]["val/acc_noisy"]
    if name in ("elr", "dividemix"):  # each rank saw half of each epoch (and computed half of
        # DivideMix's pass); both hold every example's ELR target, every example's division
        training = len(set(rank0["seen"]["0"]) | set(rank1["seen"]["0"]))
        assert rank0["rows_updated"] == rank1["rows_updated"] == training
    if name in CHOSEN:  # the branch was taken, on both ranks alike (the digests above)
        last = max(out.glob("steps/*.ckpt"), key=lambda path: path.stat().st_mtime_ns)
        state = torch.load(last, weights_only=False)["state_dict"]
        assert int(state["strategy.choice"]) == CHOSEN[name]
