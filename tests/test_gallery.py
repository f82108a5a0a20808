"""label_issues.html, label_issues.png and the cleanlab inputs: what they hold, in a browser."""

from __future__ import annotations

import csv
import html.parser
import json
import re
import shutil
import subprocess
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from ln_lightning import NoisyLabelClassifier
from ln_lightning.callbacks import MislabelReport
from ln_lightning.data import ImageFolderDataModule
from ln_lightning.data.synthetic import IMAGE_CLASSES, write_image_files
from ln_lightning.label_issues import IssueTable, find_label_issues
from ln_lightning.label_issues.gallery import example_image, write_contact_sheet, write_gallery

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser", "google-chrome")
     if (found := shutil.which(name))),
    None,
)  # fmt: skip


def page_data(path: Path) -> dict:
    """The rows, summary and caution a page carries (its JSON island)."""
    found = re.search(r'<script id="data" type="application/json">(.*?)</script>', path.read_text())
    assert found, "the page carries no data"
    return json.loads(found.group(1).replace("<\\/", "</"))


def scored(n: int = 200, classes: int = 3, seed: int = 0, **extra) -> tuple:
    """A table of ``n`` examples whose first tenth is labelled with the next class."""
    generator = torch.Generator().manual_seed(seed)
    truth = torch.arange(n) % classes
    given = truth.clone()
    given[: n // 10] = (given[: n // 10] + 1) % classes
    logits = 4 * torch.nn.functional.one_hot(truth, classes) + torch.randn(
        n, classes, generator=generator
    )
    probs = logits.softmax(1)
    table = IssueTable(
        index=torch.arange(n), split=["train"] * n, given=given, clean=truth, probs=probs,
        score=1 - probs[torch.arange(n), given], **extra,
    )  # fmt: skip
    return table, find_label_issues(probs, given)


def test_the_page_holds_the_flagged_rows_most_suspicious_first(tmp_path):
    table, issues = scored(uncertainty=torch.linspace(1, 2, 200))
    names = ["cat", "dog", "owl"]
    page = write_gallery(table, issues, names, tmp_path / "label_issues.html",
                         lambda i: example_image(torch.rand(1, 8, 8)))  # fmt: skip
    data = page_data(page)
    rows = data["rows"]
    assert len(rows) == int(issues.is_issue.sum()) > 0 and data["total"] == 200
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    for row in rows:  # each row says what the table and the flags say
        i = row["index"]
        assert bool(issues.is_issue[i]) and row["given"] == names[int(table.given[i])]
        assert row["suggested"] == names[int(issues.suggested[i])] != row["given"]
        assert row["uncertainty"] == pytest.approx(float(table.uncertainty[i]), abs=1e-4)
        assert row["src"].startswith("data:image/png;base64,")  # drawn from the tensor
    summary = {entry["class"]: entry for entry in data["summary"]}
    assert sum(e["flagged"] for e in summary.values()) == len(rows)
    assert sum(e["labelled"] for e in summary.values()) == 200
    cat_into = dict(summary["cat"]["into"])
    assert sum(cat_into.values()) == summary["cat"]["flagged"] and "cat" not in cat_into
    assert data["caution"] == ""


def test_files_are_linked_relatively_and_the_page_stays_small(tmp_path):
    """20,000 image files: linked, not copied or decoded; under 300 bytes of page per flagged
    row, and under 30 per example for the review's labels file (the paths' shared prefix once)."""
    table, issues = scored(n=20_000, seed=1)
    table.paths = [str(tmp_path / "data" / f"img{i:05d}.jpg") for i in range(20_000)]
    page = write_gallery(table, issues, ["a", "b", "c"], tmp_path / "run" / "label_issues.html",
                         lambda i: Path(table.paths[i]))  # fmt: skip
    rows = page_data(page)["rows"]
    assert len(rows) == int(issues.is_issue.sum()) > 1000
    assert all(re.fullmatch(r"\.\./data/img\d{5}\.jpg", r["src"]) for r in rows)
    assert page.stat().st_size < 300 * len(rows) + 30 * 20_000 + 30_000
    review = page_data(page)["review"]
    assert review["prefix"] == str(tmp_path / "data" / "img") and len(review["ids"]) == 20_000


def test_the_caution_shows_and_feature_vectors_have_no_picture(tmp_path):
    table, issues = scored(n=60)
    table.caution = ["the model is near chance on the noisy validation split"] * 60
    page = write_gallery(table, issues, ["a", "b", "c"], tmp_path / "p.html",
                         lambda i: example_image(torch.rand(5)))  # fmt: skip
    data = page_data(page)
    assert data["caution"].startswith("Do not trust these flags yet: the model is near chance")
    assert all(r["src"] is None for r in data["rows"])


def test_example_image_draws_tensors_and_leaves_vectors():
    assert example_image(torch.rand(3, 10, 12)).size == (12, 10)
    assert example_image(torch.rand(10, 12, 3)).mode == "RGB"
    grey = example_image(torch.arange(64.0).view(1, 8, 8))
    assert grey.mode == "L" and grey.getextrema() == (0, 255)  # scaled per image
    assert example_image(np.zeros((28, 28), np.uint8)).size == (28, 28)
    assert example_image(torch.rand(16)) is None and example_image("text") is None


def test_the_contact_sheet_shows_the_first_flagged(tmp_path):
    table, issues = scored()
    names = ["a", "b", "c"]
    pictures = lambda i: example_image(torch.rand(8, 8))  # noqa: E731
    sheet = write_contact_sheet(table, issues, names, tmp_path / "s.png", pictures, 12, 6)
    with Image.open(sheet) as image:
        assert image.size[0] > 2 * image.size[1]  # two rows of six
    assert (
        write_contact_sheet(table, issues, ["a", "b", "c"], tmp_path / "n.png", lambda i: None)
        is None
    )


# ------------------------------------------------------------------ a real run, in a browser
@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """Two epochs on 3 x 24 PNGs, 4 of each class filed under the next class."""
    root = tmp_path_factory.mktemp("gallery")
    write_image_files(root / "photos", 24, flips=4, in_given_folder=True)
    return fit_with_report(root)


def fit_with_report(root: Path) -> Path:
    """Two epochs of a small CNN on the class folders of ``root / "photos"``, with the
    label-issue report; the run's folder."""
    data = ImageFolderDataModule(root=str(root / "photos"), image_size=16, augment=False,
                                 batch_size=16, num_workers=0)  # fmt: skip
    model = NoisyLabelClassifier(backbone="small_cnn", num_classes=3, input_shape=data.input_shape)
    trainer = pl.Trainer(max_epochs=2, default_root_dir=root / "run", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[MislabelReport()])  # fmt: skip
    trainer.fit(model, datamodule=data)
    return root / "run"


def test_a_run_writes_the_page_the_sheet_and_cleanlabs_inputs(image_run):
    with (image_run / "label_issues.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    flagged = [r for r in rows if r["is_issue"] == "1"]
    data = page_data(image_run / "label_issues.html")
    assert [Path(image_run, r["src"]).resolve() for r in data["rows"]] == [
        Path(r["path"]) for r in flagged
    ]  # the flagged files, linked, in the CSV's order
    assert (image_run / "label_issues.png").stat().st_size > 5_000
    probs, labels = np.load(image_run / "pred_probs.npy"), np.load(image_run / "labels.npy")
    by_index = sorted(rows, key=lambda r: int(r["index"]))
    assert probs.shape == (72, 3) and labels.dtype == np.int64
    assert labels.tolist() == [IMAGE_CLASSES.index(r["given_label"]) for r in by_index]
    expected = [[float(r[f"p_{c}"]) for c in IMAGE_CLASSES] for r in by_index]
    np.testing.assert_allclose(probs, expected, atol=1e-5)


class _Cards(html.parser.HTMLParser):
    """The thumbnails and the labels on the rendered page."""

    def __init__(self) -> None:
        super().__init__()
        self.thumbnails, self.given, self.suggested, self._into = [], [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and attrs.get("class") == "thumb":
            self.thumbnails.append(attrs["src"])
        if tag == "span" and attrs.get("class") in ("given", "suggested"):
            self._into = getattr(self, attrs["class"])

    def handle_data(self, data):
        if self._into is not None:
            self._into.append(data)
            self._into = None


def browse(url: str, *flags: str) -> str:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", *flags, url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian: apt-get install chromium)")
def test_the_page_renders_in_a_browser(image_run, tmp_path):
    page = (image_run / "label_issues.html").resolve()
    flagged = page_data(page)["rows"]
    cards = _Cards()
    cards.feed(browse(page.as_uri(), "--dump-dom"))
    assert len(cards.thumbnails) == min(60, len(flagged)) > 0  # one page of pictures
    assert cards.given == [r["given"] for r in flagged][:60]
    assert cards.suggested == [r["suggested"] for r in flagged][:60]
    chosen = flagged[0]["given"]
    filtered = _Cards()
    filtered.feed(browse(f"{page.as_uri()}#given={chosen}", "--dump-dom"))
    assert filtered.given and set(filtered.given) == {chosen}
    assert len(filtered.given) == sum(r["given"] == chosen for r in flagged)
    shot = tmp_path / "page.png"
    browse(page.as_uri(), f"--screenshot={shot}", "--window-size=1000,800")
    with Image.open(shot) as image:
        grey = image.convert("L")
        top = grey.crop((0, 0, 1000, 60)).getextrema()
        cards_area = np.asarray(grey.crop((0, 200, 1000, 800)))
    assert top[0] < 100  # the heading's dark text
    assert (cards_area < 80).mean() > 0.02  # the pictures' dark pixels
