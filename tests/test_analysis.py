"""The analyses as functions: residuals (Fig. 6), detection scores, Table 4's NLL, the figures."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from ln_lightning.analysis import (
    SplitPredictions,
    annotator_nll,
    plot_decision_boundary,
    plot_grid_heatmap,
    plot_residual_histograms,
)
from ln_lightning.label_issues import detection_metrics, mislabel_scores
from ln_lightning.losses import functional as LF


def explicit_sigma(scale: torch.Tensor, min_scale: float) -> torch.Tensor:
    """Sigma = (c c^T + lambda I)^2 as a matrix (Eq. 9), for checking the closed form."""
    root = scale[:, :, None] * scale[:, None, :] + min_scale * torch.eye(scale.shape[1])
    return root @ root


def test_residuals_match_the_matrix_forms():
    torch.manual_seed(0)
    mean, scale = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    hparams = {"min_scale": 0.5, "temperature": 0.7, "smoothing": 0.01, "dummy_class": True}
    residual, whitened = LF.logistic_normal_residuals(
        mean, scale, labels, LF.LogisticNormalParams(**hparams)
    )
    target = LF.target_logits(labels, 5, smoothing=0.01, temperature=0.7, dtype=torch.float64)
    r = target - mean
    torch.testing.assert_close(residual, r.square().sum(1))
    sigma = explicit_sigma(scale, 0.5)
    expected = torch.einsum("bi,bij,bj->b", r, torch.linalg.inv(sigma), r)
    torch.testing.assert_close(whitened, expected)
    # The training loss is half the whitened residual plus half log|Sigma| (Eq. 5).
    loss = LF.logistic_normal_loss(mean, scale, labels, LF.LogisticNormalParams(**hparams))
    torch.testing.assert_close(loss, 0.5 * (whitened + torch.logdet(sigma)))
    # Sigma = I: both residuals are the plain squared distance.
    plain, same = LF.logistic_normal_residuals(
        mean, None, labels, LF.LogisticNormalParams(covariance="identity")
    )
    torch.testing.assert_close(plain, same)


def predictions(given, clean, probs, residual=None) -> SplitPredictions:
    return SplitPredictions(
        indices=torch.arange(len(given)) + 100,
        given=torch.tensor(given),
        clean=torch.tensor(clean),
        probs=torch.tensor(probs),
        residual=None if residual is None else torch.tensor(residual),
        whitened_residual=None if residual is None else 2 * torch.tensor(residual),
    )


def test_scores_and_their_detection_metrics():
    p = predictions(
        given=[0, 1, 1, 0], clean=[0, 0, 1, -1],
        probs=[[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.5, 0.5]], residual=[0.1, 5.0, 1.0, 2.0],
    )  # fmt: skip
    torch.testing.assert_close(
        mislabel_scores(p, "self_confidence"), torch.tensor([0.1, 0.8, 0.4, 0.5])
    )
    torch.testing.assert_close(mislabel_scores(p), mislabel_scores(p, "self_confidence"))
    torch.testing.assert_close(mislabel_scores(p, "residual"), p.residual)
    torch.testing.assert_close(mislabel_scores(p, "whitened_residual"), 2 * p.residual)
    assert p.corrupted.tolist() == [False, True, False, False] and p.known.tolist()[3] is False
    found = detection_metrics(mislabel_scores(p), p.corrupted, p.known)
    assert found == {
        "auroc": 1.0, "average_precision": 1.0, "precision_at_n": 1.0,
        "num_corrupted": 1, "num_examples": 3,
    }  # fmt: skip
    reversed_ = detection_metrics(-mislabel_scores(p), p.corrupted, p.known)
    assert reversed_["auroc"] == 0.0 and reversed_["precision_at_n"] == 0.0
    without_ln = predictions([0, 1], [0, 0], [[0.9, 0.1], [0.8, 0.2]])
    with pytest.raises(ValueError, match="LogisticNormalLoss"):
        mislabel_scores(without_ln, "residual")
    with pytest.raises(ValueError, match="score must be one of"):
        mislabel_scores(without_ln, "loss")
    with pytest.raises(ValueError, match="both corrupted and clean"):
        detection_metrics(torch.rand(3), torch.zeros(3, dtype=torch.bool))


def test_label_issues_keep_every_class(tmp_path):
    """A class the model rejects entirely keeps its least suspicious example (cleanlab's
    ``min_examples_per_class``), so a run on the cleaned labels has the same classes."""
    from ln_lightning.label_issues import find_label_issues

    # Class 2's three examples all look like class 0 (p(0) reaches t_0, p(2) is low).
    probs = torch.tensor(
        [[0.6, 0.3, 0.1], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.1, 0.9, 0.0],
         [0.9, 0.0, 0.1], [0.7, 0.0, 0.3], [0.8, 0.0, 0.2]]
    )  # fmt: skip
    given = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    assert find_label_issues(probs, given, 0).is_issue.tolist() == [0, 0, 0, 0, 1, 1, 1]
    issues = find_label_issues(probs, given)
    assert issues.is_issue.tolist() == [0, 0, 0, 0, 1, 0, 1]  # p(2) = 0.3 is kept
    assert issues.suggested.tolist()[4:] == [0, 0, 0]
    two = find_label_issues(probs, given, min_examples_per_class=2).is_issue
    assert two.tolist() == [0, 0, 0, 0, 1, 0, 0]
    assert not find_label_issues(probs, given, 10).is_issue.any()  # more than a class has
    with pytest.raises(ValueError, match="min_examples_per_class must be >= 0; got -1"):
        find_label_issues(probs, given, -1)


def test_label_issues_are_confident_learning_and_written_most_suspicious_first(tmp_path):
    from ln_lightning.label_issues import (
        IssueTable,
        find_label_issues,
        read_label_issues,
        write_cleaned_labels,
        write_label_issues,
    )

    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.7, 0.3], [0.3, 0.7]])
    given = torch.tensor([0, 1, 1, 0, 0])
    issues = find_label_issues(probs, given)
    # t_0 = mean p(0) over labelled 0 = (0.9 + 0.7 + 0.3) / 3, t_1 = (0.2 + 0.6) / 2
    torch.testing.assert_close(issues.thresholds, torch.tensor([1.9 / 3, 0.4]))
    # Example 1 (given 1): p(0) = 0.8 >= t_0 -> confidently 0: an issue, suggested 0.
    # Example 4 (given 0): p(1) = 0.7 >= t_1 and p(0) < t_0 -> an issue, suggested 1.
    assert issues.is_issue.tolist() == [False, True, False, False, True]
    assert issues.suggested.tolist() == [0, 0, 1, 0, 1]

    score = 1 - probs.gather(1, given[:, None])[:, 0]
    table = IssueTable(
        index=torch.tensor([10, 11, 12, 13, 14]), split=["train"] * 4 + ["val"], given=given,
        clean=torch.tensor([0, 0, 1, 0, -1]), probs=probs, score=score,
        paths=[f"/d/{i}.png" for i in range(5)],
    )  # fmt: skip
    path = write_label_issues(table, issues, ["cat", "dog"], tmp_path / "sub" / "issues.csv")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == ["/d/1.png", "/d/4.png", "/d/2.png", "/d/3.png", "/d/0.png"]
    assert rows[0] == {
        "rank": "1", "index": "11", "path": "/d/1.png", "split": "train", "given_label": "dog",
        "suggested_label": "cat", "score": "0.8", "is_issue": "1", "clean_label": "cat",
        "is_noisy": "1", "caution": "", "p_cat": "0.8", "p_dog": "0.2",
    }  # fmt: skip
    assert rows[1]["clean_label"] == "" and rows[1]["is_noisy"] == ""  # unknown truth
    back, names = read_label_issues(path)
    assert names == ["cat", "dog"] and sorted(back.index.tolist()) == table.index.tolist()

    cleaned = write_cleaned_labels(table, issues, ["cat", "dog"], tmp_path / "c.csv")
    lines = cleaned.read_text().splitlines()
    assert lines[0] == "path,label,clean_label" and len(lines) == 1 + 3  # two removed
    relabelled = write_cleaned_labels(
        table, issues, ["cat", "dog"], tmp_path / "r.csv", cleaning="relabel"
    )
    assert "/d/1.png,cat,cat" in relabelled.read_text().splitlines()
    table.paths = None  # arrays: the noisy_labels_file format over the pool
    pool = write_cleaned_labels(table, issues, ["cat", "dog"], tmp_path / "p.csv")
    assert pool.read_text().splitlines()[:3] == [
        "index,clean_label,noisy_label",
        "10,0,0",
        "11,0,0",
    ]


def test_relabeled_labels_take_confident_suggestions_and_drop_or_keep_the_doubtful(tmp_path):
    from ln_lightning.data.pool import read_pool_labels
    from ln_lightning.data.reviewed import reviewed_rows
    from ln_lightning.label_issues import (
        IssueTable,
        Relabeling,
        find_label_issues,
        suggested_probability,
        write_relabeled_labels,
    )

    # Three classes. Example 1 (given 1) is flagged into class 0 at p = 0.8: confident.
    # Example 4 (given 0) is flagged into class 1 at p = 0.48: doubtful at confidence 0.5.
    probs = torch.tensor(
        [[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1],
         [0.32, 0.48, 0.2], [0.1, 0.1, 0.8], [0.05, 0.15, 0.8]]
    )  # fmt: skip
    given = torch.tensor([0, 1, 1, 0, 0, 2, 2])
    issues = find_label_issues(probs, given)
    assert issues.is_issue.tolist() == [False, True, False, False, True, False, False]
    assert issues.suggested[[1, 4]].tolist() == [0, 1]
    table = IssueTable(
        index=torch.arange(7), split=["train"] * 7, given=given,
        clean=torch.tensor([0, 0, 1, 0, 0, 2, 2]), probs=probs, score=1 - probs.max(1).values,
        paths=[f"/d/{i}.png" for i in range(7)],
    )  # fmt: skip
    suggested = suggested_probability(table, issues)[[1, 4]]
    torch.testing.assert_close(suggested, torch.tensor([0.8, 0.48]))
    names = ["cat", "dog", "owl"]
    path = write_relabeled_labels(table, issues, names, tmp_path / "relabeled_labels.csv")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "label", "given_label", "decision", "clean_label"]
    assert [(r["label"], r["decision"]) for r in rows[:5]] == [
        ("cat", ""), ("cat", "accept"), ("dog", ""), ("cat", ""), ("cat", "drop"),
    ]  # fmt: skip
    kept = [row["path"] for _, row in reviewed_rows(rows, path, "path")]
    assert "/d/4.png" not in kept and len(kept) == 6  # what a new run trains on
    keep = Relabeling(confidence=0.4, doubtful="keep")
    write_relabeled_labels(table, issues, names, path, keep)  # 0.48 is now confident
    with path.open() as handle:
        assert [r["decision"] for r in csv.DictReader(handle)][:5] == [
            "",
            "accept",
            "",
            "",
            "accept",
        ]
    write_relabeled_labels(table, issues, names, path, Relabeling(0.9, "keep"))  # both doubtful
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["label"], r["decision"]) for r in rows if r["decision"]] == [
        ("dog", "unsure"), ("cat", "unsure"),
    ]  # fmt: skip
    table.paths = None  # arrays: the pool's file with the decisions, for --data.noisy_labels_file
    write_relabeled_labels(table, issues, names, path)
    clean, noisy, dropped = read_pool_labels(path)
    assert torch.equal(clean, table.clean)
    assert noisy.tolist() == [0, 0, 1, 0, 0, 2, 2] and dropped.nonzero().flatten().tolist() == [4]
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\]; got 0"):
        Relabeling(confidence=0)


def test_cautions_say_when_the_flags_cannot_be_trusted(tmp_path):
    from ln_lightning.label_issues import (
        IssueTable,
        caution_rows,
        caution_text,
        cautions,
        find_label_issues,
        read_label_issues,
        write_label_issues,
    )

    names = ["cat", "dog", "owl", "bee"]
    given = torch.tensor([0] * 150 + [1] * 150 + [2] * 150 + [3] * 150)
    # A trained model, stable at the end, with enough examples of every class: nothing to say.
    assert cautions(given, names, [0.5, 0.7, 0.71, 0.705]) == ([], {})
    assert cautions(given, names) == ([], {})  # no validation history: no claim about it
    # Near chance (0.25 for 4 balanced classes; the bar is 0.25 + 0.75 / 4 = 0.44), improving.
    overall, by_class = cautions(given, names, [0.27, 0.30, 0.33])
    assert overall == [
        "the model is near chance on the noisy validation split (accuracy 0.33, chance 0.25)",
        "it was still improving at the last epoch (noisy validation accuracy 0.30 -> 0.33): "
        "train longer",
    ]
    assert by_class == {}
    # Chance is the majority share when one class dominates: 0.8 is near it at 85% of one class.
    skewed = torch.tensor([0] * 85 + [1] * 15)
    assert "chance 0.85" in cautions(skewed, names[:2], [0.8])[0][0]
    # A class with a handful of examples: its own rows say so.
    few = torch.tensor([0] * 40 + [1] * 40 + [2] * 3)
    overall, by_class = cautions(few, names[:3], [0.9])
    assert overall == [] and by_class == {2: "only 3 labelled examples of 'owl'"}
    rows = caution_rows(few, overall, by_class)
    assert rows[0] == "" and rows[-1] == "only 3 labelled examples of 'owl'"
    assert caution_text(rows) == ". Do not trust these flags yet: only 3 labelled examples of 'owl'"
    assert caution_text(["", ""]) == ""
    # The column goes to label_issues.csv and comes back.
    probs = torch.softmax(torch.randn(len(few), 3, generator=torch.Generator().manual_seed(0)), 1)
    table = IssueTable(
        index=torch.arange(len(few)), split=["train"] * len(few), given=few,
        clean=torch.full((len(few),), -1), probs=probs, score=1 - probs.max(1).values,
        caution=rows,
    )  # fmt: skip
    path = write_label_issues(table, find_label_issues(probs, few), names[:3], tmp_path / "i.csv")
    back, _ = read_label_issues(path)
    assert sorted(back.caution) == sorted(rows)


def test_annotator_nll_averages_annotators_then_examples():
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]])
    labels = torch.tensor([[0, 1, 1], [1, 1, -1]])
    expected = ((-math.log(0.5) - 2 * math.log(0.25)) / 3 + (-2 * math.log(0.8)) / 2) / 2
    assert annotator_nll(probs, labels).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="shape"):
        annotator_nll(probs, labels[:1])


def test_figures_render(tmp_path):
    torch.manual_seed(0)
    n = 200
    clean = torch.randint(0, 2, (n,))
    given = torch.where(torch.rand(n) < 0.2, 1 - clean, clean)
    corrupted = given != clean
    residual = torch.where(corrupted, 20.0, 1.0) * torch.rand(n).add(0.1)
    p = SplitPredictions(
        torch.arange(n), given, clean, torch.full((n, 2), 0.5), residual, residual / 3
    )
    figure = plot_residual_histograms(p, bins=20)
    assert len(figure.axes) == 2
    figure.savefig(tmp_path / "hist.png")
    with pytest.raises(ValueError, match="LogisticNormalLoss"):
        plot_residual_histograms(predictions([0], [0], [[1.0, 0.0]]))

    from ln_lightning import NoisyLabelClassifier

    model = NoisyLabelClassifier(backbone="mlp_2x2000", num_classes=2, input_shape=(2,),
                                 backbone_kwargs={"hidden": (8,)})  # fmt: skip
    inputs = torch.randn(n, 2)
    figure = plot_decision_boundary(model, inputs, given, corrupted, resolution=20)
    figure.savefig(tmp_path / "boundary.png")
    with pytest.raises(ValueError, match="2-D inputs"):
        plot_decision_boundary(model, torch.randn(5, 3), given[:5], corrupted[:5])

    rows = [
        {"t": t, "l": lam, "val": 0.5 + t / 10 + lam / 100, "test": None}
        for t in (0.5, 1.0) for lam in (0.1, 0.5, 1.0)
    ]  # fmt: skip
    figure = plot_grid_heatmap(rows, "l", "t", ["val", "test"])
    assert len(figure.axes) == 4  # two panels and their colour bars
    image = figure.axes[0].images[0].get_array()
    assert image.shape == (2, 3) and image[1, 2] == pytest.approx(100 * (0.5 + 0.1 + 0.01))
    for name in ("hist", "boundary"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000


def test_top_classes_give_the_full_verdict_and_count_the_rows_they_cannot_decide():
    from ln_lightning.label_issues import TopClasses, find_label_issues, summary

    generator = torch.Generator().manual_seed(0)
    truth = torch.randint(0, 50, (3000,), generator=generator)
    wrong = torch.rand(3000, generator=generator) < 0.2
    given = torch.where(wrong, torch.randint(0, 50, (3000,), generator=generator), truth)
    logits = torch.randn(3000, 50, generator=generator)
    logits[torch.arange(3000), truth] += 6.0  # a trained model: peaked on the true class
    probs = torch.softmax(logits, 1)
    full = find_label_issues(probs, given)
    assert full.undecided == 0 and 0 < int(full.is_issue.sum()) < 3000
    top = find_label_issues(TopClasses.from_probs(probs, given, k=5), given)
    assert top.undecided == 0  # the 5th probability is below every threshold: exact
    assert torch.equal(top.is_issue, full.is_issue) and torch.equal(top.suggested, full.suggested)
    torch.testing.assert_close(top.thresholds, full.thresholds)
    # Class 3 is never believed (t_3 = 0.1): beyond each row's top class it still reaches its
    # threshold where the top class does not reach its own.
    hand = torch.tensor(
        [[0.9, 0.05, 0.03, 0.02]] * 2 + [[0.05, 0.9, 0.03, 0.02]] * 2
        + [[0.05, 0.03, 0.9, 0.02]] * 2 + [[0.6, 0.1, 0.2, 0.1], [0.5, 0.3, 0.1, 0.1]]
        + [[0.5, 0.1, 0.1, 0.3]]
    )  # fmt: skip
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 0])
    exact = find_label_issues(hand, labels)
    cut = find_label_issues(TopClasses.from_probs(hand, labels, k=1), labels)
    assert exact.suggested.tolist()[6:] == [3, 3, 3] and exact.is_issue.tolist()[6:] == [0, 0, 1]
    assert cut.suggested.tolist()[6:] == [0, 0, 0] and cut.is_issue.tolist()[6:] == [0, 0, 0]
    assert cut.undecided == 3  # exactly the rows that differ
    assert exact.undecided == 0
    names = ["a", "b", "c", "d"]
    assert "for 3 of them a class beyond the top ones" in summary(cut, names, labels)
    with pytest.raises(ValueError, match="only the top 1 of 4 classes are kept"):
        TopClasses.from_probs(hand, labels, k=1).dense()


def test_top_k_files_name_the_top_classes_read_back_and_write_pred_probs_row_by_row(tmp_path):
    import numpy as np

    from ln_lightning.label_issues import (
        IssueTable,
        PredProbsFile,
        TopClasses,
        find_label_issues,
        read_label_issues,
        write_label_issues,
    )

    generator = torch.Generator().manual_seed(1)
    given = torch.randint(0, 30, (200,), generator=generator)
    probs = torch.softmax(torch.randn(200, 30, generator=generator) * 3, 1)
    names = [f"class {k}" for k in range(30)]
    index = torch.randperm(200, generator=generator) + 1000
    top = TopClasses.from_probs(probs, given, k=3)
    table = IssueTable(
        index=index, split=["train"] * 200, given=given, clean=torch.full((200,), -1),
        probs=top, score=1 - top.given_prob,
    )  # fmt: skip
    issues = find_label_issues(table.probs, given)
    path = write_label_issues(table, issues, names, tmp_path / "label_issues.csv")
    with path.open() as handle:
        header = next(csv.reader(handle))
    assert header[-7:] == [
        "p_given", "top1_label", "top1_p", "top2_label", "top2_p", "top3_label", "top3_p"
    ]  # fmt: skip
    assert not any(column.startswith("p_class") for column in header)  # not 30 columns
    assert (tmp_path / "classes.txt").read_text().splitlines() == names
    back, back_names = read_label_issues(path)
    assert back_names == names and not back.probs.full
    order = back.index.argsort()
    expected = table.index.argsort()
    assert torch.equal(back.probs.classes[order], top.classes[expected])
    torch.testing.assert_close(back.probs.probs[order], top.probs[expected], atol=1e-5, rtol=0)
    torch.testing.assert_close(back.probs.given_prob[order], top.given_prob[expected])
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"keeps only each row's top classes.*classes\.txt"):
        read_label_issues(path)
    # pred_probs.npy, batch by batch and out of order: row i is the i-th smallest index.
    for dtype, tolerance in (("float32", 0.0), ("float16", 1e-3)):
        with PredProbsFile(tmp_path / f"{dtype}.npy", index, 30, dtype) as file:
            for start in range(0, 200, 64):
                file.write(index[start : start + 64], probs[start : start + 64])
        written = np.load(tmp_path / f"{dtype}.npy")
        assert written.dtype == np.dtype(dtype) and written.shape == (200, 30)
        np.testing.assert_allclose(written, probs[index.argsort()].numpy(), atol=tolerance)
    with pytest.raises(ValueError, match="dtype must be float32 or float16"):
        PredProbsFile(tmp_path / "x.npy", index, 30, "float64")
