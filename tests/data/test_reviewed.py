"""Reviewed labels files (label_issues.html's download) read back as they are: drops left out,
decisions applied, and every fault in one line that names the row."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from ln_lightning.data import ArrayDataModule, ImageFolderDataModule
from ln_lightning.data.images import read_labels_file
from ln_lightning.data.pool import read_pool_labels
from ln_lightning.data.reviewed import DECISIONS, reviewed_rows
from ln_lightning.data.synthetic import IMAGE_CLASSES, write_image_files


def write(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def photos(tmp_path) -> tuple[Path, list[Path], list[int]]:
    paths, _, given = write_image_files(tmp_path / "photos", 6, flips=2)
    return tmp_path, paths, given


def reviewed(tmp_path: Path, paths: list[Path], given: list[int], changes: dict) -> Path:
    """``reviewed_labels.csv`` as the page writes it: ``changes`` maps a row to its
    ``(decision, label)``."""
    rows = []
    for i, (path, label) in enumerate(zip(paths, given, strict=True)):
        decision, chosen = changes.get(i, ("", IMAGE_CLASSES[label]))
        rows.append([str(path), chosen, IMAGE_CLASSES[label], decision])
    header = ["path", "label", "given_label", "decision"]
    return write(tmp_path / "reviewed_labels.csv", header, rows)


def test_drops_are_left_out_and_decided_labels_train(photos):
    tmp_path, paths, given = photos
    other = IMAGE_CLASSES[(given[0] + 1) % 3]
    changes = {
        0: ("relabel", other),
        1: ("drop", IMAGE_CLASSES[given[1]]),
        2: ("unsure", IMAGE_CLASSES[given[2]]),
        3: ("keep", IMAGE_CLASSES[given[3]]),
    }
    images = read_labels_file(reviewed(tmp_path, paths, given, changes))
    assert len(images.paths) == len(paths) - 1 and paths[1] not in images.paths
    assert images.labels[0] == other and images.labels[1] == IMAGE_CLASSES[given[2]]
    data = ImageFolderDataModule(labels_file=str(tmp_path / "reviewed_labels.csv"),
                                 image_size=16, augment=False, num_workers=0)  # fmt: skip
    data.setup()
    assert len(data.train_set) + len(data.val_set) == len(paths) - 1
    assert data.class_names == list(IMAGE_CLASSES)


def test_an_ordinary_labels_file_is_read_as_before():
    rows = [{"path": "a.png", "label": "cat"}, {"path": "b.png", "label": "owl"}]
    assert [row for _, row in reviewed_rows(rows, "labels.csv", "path")] == rows


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ((2, "path", None), r"reviewed_labels.csv:4: .* is listed again \(first at line 3\)"),
        ((1, "label", "squircle"), r"reviewed_labels.csv:3: the label 'squircle' is not a class"),
        ((4, "decision", "maybe"), r"reviewed_labels.csv:6: the decision 'maybe' is not one of"),
        ((3, "label", ""), r"reviewed_labels.csv:5: every row needs a path and a label"),
    ],
)
def test_a_bad_row_is_named(photos, change, message):
    tmp_path, paths, given = photos
    file = reviewed(tmp_path, paths, given, {})
    with file.open() as handle:
        rows = list(csv.DictReader(handle))
    row, column, value = change
    rows[row][column] = rows[row - 1][column] if value is None else value
    write(file, list(rows[0]), [list(r.values()) for r in rows])
    with pytest.raises(ValueError, match=message):
        read_labels_file(file)


def test_a_path_that_is_not_there_is_named_with_its_line(photos):
    tmp_path, paths, given = photos
    paths = [*paths[:3], tmp_path / "photos" / "gone.png", *paths[4:]]
    with pytest.raises(FileNotFoundError, match=r"reviewed_labels.csv:5: the image .*gone.png"):
        read_labels_file(reviewed(tmp_path, paths, given, {}))


def test_decisions_are_the_ones_the_page_offers():
    page = (Path(__file__).parents[2] / "ln_lightning/label_issues/page.html").read_text()
    for decision in DECISIONS:
        assert f'"{decision}"' in page


def test_a_pool_file_without_paths_drops_from_both_splits(tmp_path):
    generator = torch.Generator().manual_seed(0)
    inputs, labels = torch.randn(40, 4, generator=generator), torch.arange(40) % 2
    rows = [[i, int(y), int(y), int(y), "drop" if i < 5 else ""] for i, y in enumerate(labels)]
    rows[5][2], rows[5][4] = 1 - int(labels[5]), "relabel"
    header = ["index", "clean_label", "noisy_label", "given_label", "decision"]
    file = write(tmp_path / "reviewed_labels.csv", header, rows)
    clean, noisy, dropped = read_pool_labels(file)
    assert dropped.tolist() == [True] * 5 + [False] * 35 and int(noisy[5]) == 1 - int(labels[5])
    assert torch.equal(clean, labels)
    data = ArrayDataModule.from_arrays(inputs, labels, noisy_labels_file=str(file),
                                       val_fraction=0.25, num_workers=0)  # fmt: skip
    data.setup()
    kept = set(data.train_set.indices.tolist()) | set(data.val_set.indices.tolist())
    assert kept == set(range(5, 40)) and not set(data.train_set.indices.tolist()) & set(
        data.val_set.indices.tolist()
    )
    rows[7][4] = "later"
    with pytest.raises(ValueError, match=r"reviewed_labels.csv:9: the decision 'later'"):
        read_pool_labels(write(file, header, rows))
