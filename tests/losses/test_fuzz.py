"""Property tests: every loss stays finite, with finite gradients, for extreme head outputs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import LOSSES, with_teacher


@pytest.mark.parametrize("name", LOSSES)
@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16, torch.float64]),
    num_classes=st.integers(2, 40),
    batch=st.integers(1, 16),
    exponent=st.floats(-3, 4),
    seed=st.integers(0, 2**16),
)
def test_losses_are_finite_for_extreme_outputs(name, dtype, num_classes, batch, exponent, seed):
    loss = LOSSES[name]()
    loss.setup(num_classes)
    if name == "forward":  # the corrected loss, with a near-singular estimated matrix
        loss.transition_ready.fill_(True)
    generator = torch.Generator().manual_seed(seed)
    magnitude = 10.0**exponent
    outputs = {
        head: (magnitude * torch.randn(batch, width, generator=generator))
        .to(dtype)
        .requires_grad_()
        for head, width in loss.head_shapes(num_classes).items()
    }
    labels = torch.randint(0, num_classes, (batch,), generator=generator)
    per_example = loss.per_example(with_teacher(loss, outputs), labels)
    assert per_example.shape == (batch,) and per_example.dtype in (torch.float32, torch.float64)
    assert torch.isfinite(per_example).all(), (name, per_example)
    per_example.sum().backward()
    # The loss works in float32: its gradient is finite wherever the input dtype can hold it
    # (a float16 gradient beyond 65504 overflows in any float16 network; AMP skips that step).
    reference = {k: v.detach().float().requires_grad_() for k, v in outputs.items()}
    loss.per_example(with_teacher(loss, reference), labels).sum().backward()
    for head, tensor in outputs.items():
        exact = reference[head].grad
        assert torch.isfinite(exact).all(), (name, head)
        representable = exact.abs() < torch.finfo(dtype).max
        assert torch.isfinite(tensor.grad[representable]).all(), (name, head)
    probs = loss.predict_proba({k: v.detach() for k, v in outputs.items()})
    assert probs.shape == (batch, num_classes) and torch.isfinite(probs).all()
    torch.testing.assert_close(probs.sum(1).float(), torch.ones(batch), atol=1e-3, rtol=0)
