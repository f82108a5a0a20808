"""Your own image files: labels files as spreadsheets save them, and labels that look like typos."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from ln_lightning.data import ImageFolderDataModule
from ln_lightning.data.images import (
    CHECK_CHUNK,
    doubtful_classes,
    read_labels_file,
    unreadable_images,
)
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


def _bad_files(folder: Path) -> dict[str, Path]:
    """One file of each kind that set-up must find (or, for ``cut``, that only decoding finds)."""
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(good)
    files = {
        "text": folder / "text.png",
        "empty": folder / "empty.jpg",
        "missing": folder / "missing.png",
        "cut": folder / "cut.png",  # a valid header, the pixels cut short
    }
    files["text"].write_text("not an image")
    files["empty"].write_bytes(b"")
    files["cut"].write_bytes(good.read_bytes()[:120])
    return {"good": good, **files}


def test_the_header_check_finds_what_cannot_be_opened_and_decoding_also_what_is_cut_short(
    tmp_path,
):
    files = _bad_files(tmp_path)
    paths = list(files.values()) * 300  # enough for several chunks of CHECK_CHUNK files
    header = unreadable_images(paths, "header")
    assert {path.name for path, _ in header} == {"text.png", "empty.jpg", "missing.png"}
    decoded = unreadable_images(paths, "decode")
    assert {path.name for path, _ in decoded} == {"text.png", "empty.jpg", "missing.png", "cut.png"}
    assert "truncated" in next(reason for path, reason in decoded if path.name == "cut.png")
    # Worker processes find the same files, in the order given.
    assert unreadable_images(paths, "decode", workers=2) == decoded
    assert len(paths) > 2 * CHECK_CHUNK and len(decoded) == 4 * 300
    assert unreadable_images(paths, "none") == []
    with pytest.raises(ValueError, match=r"check must be one of \('header', 'decode', 'none'\)"):
        unreadable_images(paths, "full")


def test_a_file_cut_short_is_named_when_met_and_check_images_decode_finds_it_first(tmp_path):
    write_image_files(tmp_path / "images", 6)
    circle = tmp_path / "images" / "circle"
    (circle / "cut.png").write_bytes((circle / "circle_000.png").read_bytes()[:60])
    root = str(tmp_path / "images")
    data = ImageFolderDataModule(root=root, image_size=16, augment=False, cache="none")
    data.setup()  # the header is fine
    position = data.example_ids("train").index(str((circle / "cut.png").resolve()))
    with pytest.raises(
        ValueError,
        match=r"cut\.png.*find every such file before training with --data\.check_images decode",
    ):
        data.split("train").inputs[position]
    cached = ImageFolderDataModule(root=root, image_size=16, augment=False)  # cache="auto"
    with pytest.raises(ValueError, match=r"cannot read the image .*cut\.png"):
        cached.setup()  # decoding once into memory finds it at set-up
    checked = ImageFolderDataModule(
        root=str(tmp_path / "images"), check_images="decode", skip_unreadable=True, num_workers=0
    )
    with pytest.warns(UserWarning, match=r"left out 1 unreadable training image.*cut\.png"):
        checked.setup()
    assert len(checked.train_set) + len(checked.val_set) == 18
    with pytest.raises(ValueError, match=r"check_images must be one of"):
        ImageFolderDataModule(root=str(tmp_path / "images"), check_images="all")


class _Strategy:
    def __init__(self, sent):
        self.sent, self.received = sent, []

    def broadcast(self, obj, src=0):
        self.received.append(obj)
        return self.sent if self.sent is not None else obj


def test_only_global_rank_zero_checks_and_every_rank_gets_its_answer_or_its_error(tmp_path):
    write_image_files(tmp_path / "images", 4)
    data = ImageFolderDataModule(root=str(tmp_path / "images"))
    calls = []

    def check():
        calls.append(1)
        return ["found"]

    other = SimpleNamespace(
        world_size=2, is_global_zero=False, strategy=_Strategy((["sent"], None))
    )
    data.trainer = other
    assert data.on_rank_zero(check) == ["sent"] and calls == []  # rank 1 waits for rank 0's
    assert other.strategy.received == [None]
    zero = SimpleNamespace(world_size=2, is_global_zero=True, strategy=_Strategy(None))
    data.trainer = zero
    assert data.on_rank_zero(check) == ["found"] and calls == [1]

    def fail():
        raise FileNotFoundError("gone")

    with pytest.raises(FileNotFoundError, match="gone"):
        data.on_rank_zero(fail)  # sent to the others too, so that no rank waits forever
    error = zero.strategy.received[-1][1]
    other.strategy.sent = (None, error)
    data.trainer = other
    with pytest.raises(FileNotFoundError, match="gone"):
        data.on_rank_zero(check)
