"""The Logistic-Normal loss against dense linear algebra and the paper's identities."""

from __future__ import annotations

import math

import pytest
import torch

from ln_lightning.losses import functional as LF

COVARIANCES = ["identity", "isotropic", "diagonal", "full"]


def dense_covariance(scale: torch.Tensor | None, covariance: str, min_scale: float, dim: int):
    """Sigma per example as a (B, D, D) float64 matrix, built the obvious way."""
    eye = torch.eye(dim, dtype=torch.float64)
    if covariance == "identity":
        return eye.expand(1, dim, dim)
    scale = scale.double()
    if covariance == "isotropic":
        return ((min_scale + scale[:, :1] ** 2) ** 2)[:, :, None] * eye
    if covariance == "diagonal":
        return torch.diag_embed((min_scale + scale**2) ** 2)
    root = scale[:, :, None] * scale[:, None, :] + min_scale * eye  # Sigma^{1/2}, Eq. 9
    return root @ root


def dense_loss(mean, scale, labels, *, covariance, min_scale, temperature, smoothing, dummy):
    num_classes = LF.num_classes_from_logit_dim(mean.shape[-1], dummy)
    q = LF.smoothed_target(labels, num_classes, smoothing, dummy, dtype=torch.float64)
    target = temperature * LF.inverse_softmax_centered(q)
    residual = (target - mean.double()).unsqueeze(-1)
    sigma = dense_covariance(scale, covariance, min_scale, mean.shape[-1])
    sigma = sigma.expand(mean.shape[0], -1, -1)
    mahalanobis = (residual.transpose(1, 2) @ torch.linalg.solve(sigma, residual)).flatten()
    return 0.5 * (mahalanobis + torch.linalg.slogdet(sigma).logabsdet), sigma, residual


def random_case(num_classes: int, covariance: str, dummy: bool, seed: int):
    gen = torch.Generator().manual_seed(seed)
    dim = LF.logit_dim(num_classes, dummy)
    batch = 6
    mean = 3 * torch.randn(batch, dim, generator=gen)
    width = LF.scale_dim(covariance, dim)
    scale = 0.7 * torch.randn(batch, width, generator=gen) if width else None
    labels = torch.randint(0, num_classes, (batch,), generator=gen)
    min_scale = float(torch.empty(1).uniform_(0.1, 1.5, generator=gen))
    temperature = float(torch.empty(1).uniform_(0.3, 2.0, generator=gen))
    return mean, scale, labels, min_scale, temperature


@pytest.mark.parametrize("covariance", COVARIANCES)
@pytest.mark.parametrize("num_classes", [2, 10, 100])
@pytest.mark.parametrize("dummy", [True, False])
def test_closed_form_matches_dense(covariance, num_classes, dummy):
    for seed in range(3):
        mean, scale, labels, min_scale, temperature = random_case(
            num_classes, covariance, dummy, seed
        )
        hparams = dict(
            covariance=covariance, min_scale=min_scale, temperature=temperature, smoothing=0.01
        )
        got = LF.logistic_normal_loss(
            mean, scale, labels, LF.LogisticNormalParams(dummy_class=dummy, **hparams)
        )
        want, _, _ = dense_loss(mean, scale, labels, dummy=dummy, **hparams)
        assert got.dtype == torch.float32 and got.shape == (len(labels),)
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_full_covariance_matches_papers_expanded_formula():
    mean, c, labels, lam, tau = random_case(10, "full", True, seed=7)
    r = LF.target_logits(labels, 10, temperature=tau) - mean
    c_sq, c_r = (c**2).sum(-1), (c * r).sum(-1)
    paper = ((r**2).sum(-1) - (c_sq + 2 * lam) * c_r**2 / (lam + c_sq) ** 2) / lam**2
    mahalanobis, logdet = LF.gaussian_terms(r, c, covariance="full", min_scale=lam)
    torch.testing.assert_close(mahalanobis, paper, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(logdet, 2 * 9 * math.log(lam) + 2 * torch.log(lam + c_sq))


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_gradient_wrt_mean_is_minus_precision_times_residual(covariance):
    """Eq. 6: dL/dmu = -Sigma^{-1} r."""
    mean, scale, labels, lam, tau = random_case(10, covariance, True, seed=3)
    mean = mean.double().requires_grad_()
    scale = None if scale is None else scale.double()
    LF.logistic_normal_loss(
        mean,
        scale,
        labels,
        LF.LogisticNormalParams(covariance=covariance, min_scale=lam, temperature=tau),
    ).sum().backward()
    _, sigma, residual = dense_loss(
        mean.detach(), scale, labels, covariance=covariance, min_scale=lam, temperature=tau,
        smoothing=0.01, dummy=True,
    )  # fmt: skip
    want = -torch.linalg.solve(sigma, residual).squeeze(-1)
    torch.testing.assert_close(mean.grad, want, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("min_scale", [0.1, 0.5, 1.0])
def test_one_dimensional_threshold_of_min_scale(min_scale):
    """App. B.4: at the optimal c, sigma^2 = max(lambda^2, r^2) and r^2/sigma^2 <= 1."""
    residual = torch.tensor([0.02, 0.3, 0.8, 2.0, 5.0], dtype=torch.float64)[:, None]
    c = torch.full_like(residual, 1.0, requires_grad=True)
    optimizer = torch.optim.LBFGS([c], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15)

    def closure():
        optimizer.zero_grad()
        mahalanobis, logdet = LF.gaussian_terms(residual, c, covariance="full", min_scale=min_scale)
        loss = 0.5 * (mahalanobis + logdet).sum()
        loss.backward()
        return loss

    for _ in range(5):
        optimizer.step(closure)
    sigma_sq = (min_scale + c.detach() ** 2).square().flatten()
    r_sq = residual.flatten() ** 2
    torch.testing.assert_close(sigma_sq, torch.clamp(r_sq, min=min_scale**2), rtol=1e-3, atol=1e-6)
    ratio = r_sq / sigma_sq
    torch.testing.assert_close(
        ratio, torch.minimum(torch.ones_like(r_sq), r_sq / min_scale**2), rtol=1e-3, atol=1e-6
    )


@pytest.mark.parametrize("smoothing", [0.01, 0.1, 0.5])
@pytest.mark.parametrize("num_classes", [2, 10, 100])
def test_target_logits_are_C_times_one_hot(num_classes, smoothing):
    labels = torch.arange(num_classes)
    for dummy, categories in ((True, num_classes + 1), (False, num_classes)):
        c_value = math.log(((1 - smoothing) * categories + smoothing) / smoothing)  # App. B.5
        assert LF.target_logit_scale(categories, smoothing) == pytest.approx(c_value)
        for tau in (0.5, 1.0, 2.0):
            target = LF.target_logits(
                labels, num_classes, smoothing=smoothing, dummy_class=dummy, temperature=tau
            )
            q = LF.smoothed_target(labels, num_classes, smoothing, dummy)
            torch.testing.assert_close(target, tau * LF.inverse_softmax_centered(q))
            if dummy:
                want = tau * c_value * torch.eye(num_classes)
            else:  # the last class is the reference category of S_C
                want = (
                    tau
                    * c_value
                    * torch.cat([torch.eye(num_classes - 1), -torch.ones(1, num_classes - 1)])
                )
            torch.testing.assert_close(target, want)


def test_softmax_centered_roundtrip():
    z = torch.randn(5, 7, dtype=torch.float64)
    probs = LF.softmax_centered(z)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(LF.inverse_softmax_centered(probs), z)


@pytest.mark.parametrize("covariance", COVARIANCES)
@pytest.mark.parametrize("dummy", [True, False])
def test_exact_nll_is_the_logistic_normal_density(covariance, dummy):
    """Eq. 16: change of variables q -> tau S_C^{-1}(q), Jacobian taken by autograd."""
    num_classes = 5
    mean, scale, labels, lam, tau = random_case(num_classes, covariance, dummy, seed=11)
    mean, scale = mean.double(), None if scale is None else scale.double()
    params = LF.LogisticNormalParams(
        covariance=covariance, min_scale=lam, temperature=tau, smoothing=0.05, dummy_class=dummy
    )
    got = LF.logistic_normal_nll(mean, scale, labels, params)
    q = LF.smoothed_target(labels, num_classes, 0.05, dummy, dtype=torch.float64)
    sigma = dense_covariance(scale, covariance, lam, mean.shape[-1]).expand(len(labels), -1, -1)

    def to_logits(q_free):  # the first D coordinates of q determine the rest
        return tau * (torch.log(q_free) - torch.log(1 - q_free.sum()))

    for i in range(len(labels)):
        z = to_logits(q[i, :-1])
        gaussian = torch.distributions.MultivariateNormal(mean[i], covariance_matrix=sigma[i])
        jacobian = torch.autograd.functional.jacobian(to_logits, q[i, :-1])
        want = -(gaussian.log_prob(z) + torch.linalg.slogdet(jacobian).logabsdet)
        torch.testing.assert_close(got[i], want, rtol=1e-9, atol=1e-9)


def test_mean_probabilities_exclude_the_dummy_class():
    mean = torch.randn(4, 10)
    probs = LF.mean_probabilities(mean, dummy_class=True)
    torch.testing.assert_close(probs, torch.softmax(mean, -1))
    s_c = LF.softmax_centered(mean)
    torch.testing.assert_close(probs, s_c[:, :-1] / s_c[:, :-1].sum(-1, keepdim=True))
    no_dummy = LF.mean_probabilities(mean[:, :9], dummy_class=False)
    assert no_dummy.shape == (4, 10)
    torch.testing.assert_close(no_dummy.sum(-1), torch.ones(4))


@pytest.mark.parametrize("dummy_class", [True, False])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_mean_probabilities_invert_the_target_at_a_perfect_fit(temperature, dummy_class):
    """Sec. 3.3: predicting with the bijector S_C(mu / tau) gives back the smoothed target."""
    num_classes, smoothing = 10, 0.01
    labels = torch.tensor([0, 3, 9, 5], dtype=torch.long)
    target = LF.target_logits(
        labels, num_classes, smoothing=smoothing, dummy_class=dummy_class,
        temperature=temperature, dtype=torch.float64,
    )  # fmt: skip
    probs = LF.mean_probabilities(target, dummy_class, temperature)  # mu = the target
    q = LF.smoothed_target(labels, num_classes, smoothing, dummy_class, dtype=torch.float64)
    real = q[:, :num_classes] / q[:, :num_classes].sum(-1, keepdim=True)
    torch.testing.assert_close(probs, real)  # q over the real classes (all of q without dummy)
    assert (probs.gather(1, labels[:, None]) > 0.99).all()
    # the bijector itself, renormalised over the real classes
    s_c = LF.softmax_centered(target / temperature)[:, :num_classes]
    torch.testing.assert_close(probs, s_c / s_c.sum(-1, keepdim=True))
    if temperature != 1.0:  # the softmax of mu alone is what the bug gave
        wrong = LF.mean_probabilities(target, dummy_class)
        assert not torch.allclose(wrong, probs, atol=1e-3)


def test_ln_predict_proba_uses_the_temperature():
    from ln_lightning import LogisticNormalLoss

    loss = LogisticNormalLoss(temperature=0.5, min_scale=0.5)
    labels = torch.tensor([2, 7])
    mean = LF.target_logits(labels, 10, temperature=0.5)
    probs = loss.predict_proba({"mean": mean, "scale": torch.zeros(2, 10)})
    # 0.786 before the fix (softmax of tau C e_y), the smoothed target 0.99 after
    assert probs.gather(1, labels[:, None]).min() > 0.99
    torch.testing.assert_close(probs.argmax(1), labels)


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_float32_and_finite_under_bf16_autocast(covariance):
    layer = torch.nn.Linear(16, 20)
    features = torch.randn(8, 16)
    labels = torch.randint(0, 10, (8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(features)
        assert out.dtype == torch.bfloat16
        width = LF.scale_dim(covariance, 10)
        scale = out[:, 10 : 10 + width] if width else None
        loss = LF.logistic_normal_loss(
            out[:, :10], scale, labels, LF.LogisticNormalParams(covariance=covariance)
        )
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss).all()
    loss.mean().backward()
    assert torch.isfinite(layer.weight.grad).all()


@pytest.mark.parametrize("covariance", COVARIANCES)
@pytest.mark.parametrize("magnitude", [1.0, 1e2, 1e4])
def test_finite_for_extreme_means_and_scales(covariance, magnitude):
    gen = torch.Generator().manual_seed(0)
    mean = (magnitude * torch.randn(16, 10, generator=gen)).requires_grad_()
    width = LF.scale_dim(covariance, 10)
    scale = (magnitude * torch.randn(16, width, generator=gen)).requires_grad_() if width else None
    labels = torch.randint(0, 10, (16,), generator=gen)
    loss = LF.logistic_normal_loss(
        mean, scale, labels, LF.LogisticNormalParams(covariance=covariance, min_scale=0.1)
    )
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(mean.grad).all()
    if scale is not None:
        assert torch.isfinite(scale.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "name", "allowed"),
    [
        ({"min_scale": 0.0}, "min_scale", "> 0"),
        ({"min_scale": -1.0}, "min_scale", "> 0"),
        ({"smoothing": 0.0}, "smoothing", "(0, 1)"),
        ({"smoothing": 1.0}, "smoothing", "(0, 1)"),
        ({"temperature": 0.0}, "temperature", "> 0"),
        ({"temperature": float("inf")}, "temperature", "> 0"),
        ({"covariance": "low-rank"}, "covariance", "identity"),
    ],
)
def test_invalid_hyper_parameters_name_the_parameter(kwargs, name, allowed):
    with pytest.raises(ValueError, match=name) as info:
        LF.logistic_normal_loss(
            torch.zeros(2, 3),
            torch.zeros(2, 3),
            torch.tensor([0, 1]),
            LF.LogisticNormalParams(**kwargs),
        )
    assert allowed in str(info.value)


def test_hyper_parameters_are_checked_once_not_on_every_forward(monkeypatch):
    from ln_lightning import LogisticNormalLoss

    checks = []
    original = LF.LogisticNormalParams.__post_init__
    monkeypatch.setattr(
        LF.LogisticNormalParams, "__post_init__", lambda self: checks.append(1) or original(self)
    )
    loss = LogisticNormalLoss(temperature=0.5, min_scale=0.5)
    outputs = {"mean": torch.randn(4, 10), "scale": torch.randn(4, 10)}
    for _ in range(3):
        loss(outputs, torch.tensor([0, 3, 9, 1]))
        loss.negative_log_density(outputs, torch.tensor([0, 3, 9, 1]))
    assert len(checks) == 1


@pytest.mark.parametrize("labels", [[0, 3], [-1, 0], [0, 10]])
def test_labels_outside_range_raise(labels):
    mean, scale = torch.zeros(2, 3), torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        LF.logistic_normal_loss(mean, scale, torch.tensor(labels))
    with pytest.raises(ValueError, match="integer"):
        LF.logistic_normal_loss(mean, scale, torch.tensor([0.0, 1.0]))


def test_cross_entropy_matches_torch():
    logits, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    torch.testing.assert_close(
        LF.cross_entropy(logits, labels),
        torch.nn.functional.cross_entropy(logits, labels, reduction="none"),
    )
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        LF.cross_entropy(logits, torch.tensor([0, 1, 2, 3, 4]))


def test_ln_loss_equals_the_lowrank_gaussian_of_torch_distributions():
    """Eq. 5 is a Gaussian NLL with Sigma = lambda^2 I + (|c|^2 + 2 lambda) c c^T (rank one)."""
    torch.manual_seed(0)
    mean = torch.randn(8, 10, dtype=torch.float64)
    factor = 0.3 * torch.randn(8, 10, dtype=torch.float64)
    labels = torch.randint(0, 10, (8,))
    min_scale, temperature = 0.7, 0.5
    target = LF.target_logits(
        labels, 10, smoothing=0.01, temperature=temperature, dtype=torch.float64
    )
    weight = (factor.square().sum(1, keepdim=True) + 2 * min_scale).sqrt()
    normal = torch.distributions.LowRankMultivariateNormal(
        mean, cov_factor=(weight * factor)[:, :, None],
        cov_diag=torch.full_like(mean, min_scale**2),
    )  # fmt: skip
    expected = -normal.log_prob(target) - 0.5 * 10 * math.log(2 * math.pi)
    loss = LF.logistic_normal_loss(
        mean, factor, labels, LF.LogisticNormalParams(min_scale=min_scale, temperature=temperature)
    )
    torch.testing.assert_close(loss, expected)


def whitened_full_loss(mean, scale, labels, params):
    """Eq. 5 by autograd through the whitened residual of ``gaussian_terms`` (the reference)."""
    num_classes = LF.num_classes_from_logit_dim(mean.shape[-1], params.dummy_class)
    target = LF.target_logits(
        labels, num_classes, temperature=params.temperature, dummy_class=params.dummy_class,
        dtype=mean.dtype,
    )  # fmt: skip
    mahalanobis, logdet = LF.gaussian_terms(
        target - mean, scale, covariance="full", min_scale=params.min_scale
    )
    return 0.5 * (mahalanobis + logdet)


@pytest.mark.parametrize("dummy", [True, False])
@pytest.mark.parametrize("num_classes", [2, 7])
def test_full_covariance_closed_form_gradient_passes_gradcheck(dummy, num_classes):
    """The hand-written backward of the full-covariance loss against finite differences."""
    mean, scale, _, lam, tau = random_case(num_classes, "full", dummy, seed=5)
    labels = torch.arange(6) % num_classes  # every class, the reference class included
    mean, scale = mean.double().requires_grad_(), scale.double().requires_grad_()

    def loss(mean, scale):
        return LF.logistic_normal_loss(
            mean,
            scale,
            labels,
            LF.LogisticNormalParams(min_scale=lam, temperature=tau, dummy_class=dummy),
        )

    assert torch.autograd.gradcheck(loss, (mean, scale))


@pytest.mark.parametrize("dummy", [True, False])
@pytest.mark.parametrize("min_scale", [0.1, 1.0])
def test_full_covariance_value_and_gradients_equal_autograd_through_whitening(dummy, min_scale):
    gen = torch.Generator().manual_seed(2)
    mean = 3 * torch.randn(32, 50, generator=gen, dtype=torch.float64)
    scale = torch.randn(32, 50, generator=gen, dtype=torch.float64)
    scale[:8] *= 100.0  # large factors: Sigma far from isotropic
    labels = torch.randint(0, LF.num_classes_from_logit_dim(50, dummy), (32,), generator=gen)
    if not dummy:
        labels[:3] = 50  # the reference class of S_C
    weights = torch.rand(32, generator=gen, dtype=torch.float64)
    grads = []
    for fn in (LF.logistic_normal_loss, whitened_full_loss):
        leaves = (mean.clone().requires_grad_(), scale.clone().requires_grad_())
        params = LF.LogisticNormalParams(min_scale=min_scale, temperature=0.7, dummy_class=dummy)
        value = fn(*leaves, labels, params)
        grads.append((value, *torch.autograd.grad((weights * value).sum(), leaves)))
    for got, want in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_full_covariance_float32_error_is_bounded_near_the_target():
    """Rounding of the reductions costs at most ~eps (|mu|^2 + |t|^2) / lambda^2 in the value; the
    Mahalanobis term stays within its bounds and the gradient (no cancellation) stays exact."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 100, (64,), generator=gen)
    target = LF.target_logits(labels, 100, dtype=torch.float64)
    mean = target + 1e-3 * torch.randn(64, 100, generator=gen, dtype=torch.float64)
    scale = 100 * torch.randn(64, 100, generator=gen, dtype=torch.float64)
    lam = 0.1
    want = LF.logistic_normal_loss(mean, scale, labels, LF.LogisticNormalParams(min_scale=lam))
    mean32, scale32 = mean.float().requires_grad_(), scale.float().requires_grad_()
    got = LF.logistic_normal_loss(mean32, scale32, labels, LF.LogisticNormalParams(min_scale=lam))
    eps = torch.finfo(torch.float32).eps
    bound = 4 * eps * (mean.square().sum(-1) + target.square().sum(-1)) / lam**2
    assert ((got.double() - want).abs() <= bound + 1e-6 * want.abs()).all()
    constant = 99 * math.log(lam) + torch.log(lam + scale.square().sum(-1))
    assert (got.double() - constant >= -1e-4).all()  # 0.5 r^T Sigma^-1 r >= 0
    got.sum().backward()
    mean64 = mean.clone().requires_grad_()
    LF.logistic_normal_loss(
        mean64, scale, labels, LF.LogisticNormalParams(min_scale=lam)
    ).sum().backward()
    torch.testing.assert_close(mean32.grad.double(), mean64.grad, rtol=1e-4, atol=1e-3)


def test_full_covariance_needs_matching_scale_width():
    with pytest.raises(ValueError, match=r"as wide as the mean.*\(2, 1\)"):
        LF.logistic_normal_loss(torch.zeros(2, 3), torch.zeros(2, 1), torch.tensor([0, 1]))


@pytest.mark.parametrize("covariance", ["isotropic", "diagonal", "full"])
def test_largest_standard_deviation_is_the_top_eigenvalue_of_the_square_root(covariance):
    torch.manual_seed(0)
    dim, lam = 6, 0.3
    scale = torch.randn(4, 1 if covariance == "isotropic" else dim, dtype=torch.float64)
    got = LF.largest_standard_deviation(scale, covariance=covariance, min_scale=lam)
    if covariance == "full":
        root = scale[:, :, None] * scale[:, None, :] + lam * torch.eye(dim, dtype=torch.float64)
    else:
        root = torch.diag_embed((lam + scale.square()).expand(-1, dim))
    sigma = root @ root
    want = torch.linalg.eigvalsh(sigma)[:, -1].sqrt()  # largest standard deviation
    torch.testing.assert_close(got, want)
    assert LF.largest_standard_deviation(None, covariance="identity", min_scale=lam) is None


def test_ln_uncertainty_grows_with_the_attenuated_residual():
    from ln_lightning import LogisticNormalLoss

    loss = LogisticNormalLoss(min_scale=0.5)
    scale = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    got = loss.uncertainty({"mean": torch.zeros(2, 3), "scale": scale})
    torch.testing.assert_close(got, torch.tensor([0.5, 2.5]))  # lambda, lambda + |c|^2
