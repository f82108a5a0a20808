"""Your own image files: labels files as spreadsheets save them, and labels that look like typos."""

from __future__ import annotations

import json
import re

import pytest

from ln_lightning.data import ImageFolderDataModule
from ln_lightning.data.images import doubtful_classes, read_labels_file
from ln_lightning.data.synthetic import IMAGE_CLASSES, write_image_files, write_labels_file


def test_a_labels_file_saved_by_excel_with_a_byte_order_mark_is_read(tmp_path):
    paths, _, given = write_image_files(tmp_path / "images", 4)
    labels = write_labels_file(tmp_path / "labels.csv", paths, given)
    labels.write_text(labels.read_text(), encoding="utf-8-sig")  # Excel's "CSV UTF-8"
    assert labels.read_bytes().startswith(b"\xef\xbb\xbf")
    read = read_labels_file(labels)
    assert len(read.paths) == 12 and set(read.labels) == set(IMAGE_CLASSES)
    assert ImageFolderDataModule(labels_file=str(labels)).class_names == list(IMAGE_CLASSES)


def test_doubtful_classes_name_typos_case_twins_and_tiny_classes():
    counts = {"sneaker": 150, "sneakr": 1, "bag": 150, "Bag": 1, "shirt": 150, "skirt": 140}
    doubts = doubtful_classes(counts)
    assert set(doubts) == {"sneakr", "Bag"}  # shirt and skirt: two real classes of a size
    assert "differs from 'sneaker' (150) by a letter or two" in doubts["sneakr"]
    assert "differs from 'bag' (150) only in case" in doubts["Bag"]
    assert doubtful_classes({"Ankle boot": 100, "Ankle bot": 3}).keys() == {"Ankle bot"}
    assert doubtful_classes({"cat": 100, "car": 2, "dog": 90}) == {
        "car": "the class 'car' has only 2 images"
    }
    assert doubtful_classes({"a": 3, "b": 3}) == {}  # a small data set, evenly split
    assert doubtful_classes({"cat": 100, "car": 100}) == {}


def test_a_label_typo_is_warned_about_and_points_to_data_classes(tmp_path):
    paths, _, given = write_image_files(tmp_path / "images", 12)
    labels = write_labels_file(tmp_path / "labels.csv", paths, given)
    lines = labels.read_text().splitlines()
    lines[1] = lines[1].replace(",circle", ",Circle")  # one row typed with a capital
    lines[2] = lines[2].replace(",circle", ",cirle")  # and one misspelt
    labels.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="A typo in a label makes a class of its own") as caught:
        data = ImageFolderDataModule(labels_file=str(labels))
    message = str(caught[0].message)
    assert "'Circle' (1 image) differs from 'circle' (10) only in case" in message
    assert "'cirle' (1 image) differs from 'circle' (10) by a letter or two" in message
    meant = json.loads(re.search(r"--data.classes '(\[.*?\])'", message).group(1))
    assert meant == sorted(IMAGE_CLASSES)
    assert "Circle" in data.class_names  # still trained as given: the user decides
    # Listing the classes, as the warning says, names the typos instead of training them.
    with pytest.raises(ValueError, match=r"the label\(s\) \['Circle', 'cirle'\] are not classes"):
        ImageFolderDataModule(labels_file=str(labels), classes=meant)
