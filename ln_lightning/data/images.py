"""Image files on disk: read lazily, labels from folders or a CSV/TSV file, every fault named.

What a user's own data looks like: an ``ImageFolder`` tree (one sub-folder per class) or a
labels file with ``path,label`` columns (optional ``clean_label``), paths relative to the file's
folder. Every problem is raised as a ``ValueError`` (or ``FileNotFoundError``) naming the file,
the row or the class, and what to do.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import struct
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ln_lightning.data.reviewed import reviewed_rows

__all__ = [
    "IMAGE_CHECKS",
    "IMAGE_SUFFIXES",
    "ImageFiles",
    "LabelledImages",
    "doubtful_classes",
    "image_files",
    "read_image",
    "read_labels_file",
    "scan_image_folder",
    "unreadable_images",
]

#: File endings taken as images (torchvision's ``ImageFolder`` list).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SKIP_HINT = (
    "Remove or replace it, or pass --data.skip_unreadable true to leave unreadable files out "
    "(they are counted and named)."
)


class ImageFiles(Dataset):
    """Images read lazily from ``root / key``, converted to ``mode`` (``"RGB"`` or ``"L"``).

    Args:
        root: Folder the keys are relative to (keys may also be absolute paths).
        keys: One path per example.
        mode: PIL mode every image is converted to.

    Example:
        >>> import tempfile
        >>> from ln_lightning.data.synthetic import write_image_files
        >>> root = tempfile.mkdtemp()
        >>> paths, _, _ = write_image_files(root, per_class=2)
        >>> files = ImageFiles(root, [str(p.relative_to(root)) for p in paths], mode="L")
        >>> len(files), files[0].mode, files[0].size
        (6, 'L', (16, 16))
    """

    def __init__(self, root: Path, keys: Sequence[str], mode: str = "RGB") -> None:
        self.root, self.keys, self.mode = Path(root), list(keys), mode

    def __len__(self) -> int:
        return len(self.keys)

    def path(self, index: int) -> Path:
        return self.root / self.keys[index]

    def __getitem__(self, index: int) -> Image.Image:
        return read_image(self.path(index), self.mode)


def read_image(path: str | Path, mode: str) -> Image.Image:
    """The image file decoded and converted to ``mode``, or a ``ValueError`` naming it and what
    to do (a file cut short passes the header check and fails only here)."""
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, struct.error) as error:
        raise ValueError(
            f"cannot read the image {path}: {error}. Remove or replace it, or find every "
            "such file before training with --data.check_images decode (set-up checks only "
            "the headers by default) and leave them out with --data.skip_unreadable true; "
            "--ckpt_path last continues the run from its last checkpoint."
        ) from None


@dataclass
class LabelledImages:
    """Image paths with their labels, as read from a folder tree or a labels file.

    Attributes:
        paths: Absolute path of each image.
        labels: The label each image is given (a class name).
        clean_labels: Its verified label where the file has a ``clean_label`` column (``None``
            for a row without one), else ``None``.

    Example:
        >>> import tempfile
        >>> from ln_lightning.data.synthetic import write_image_files
        >>> root = tempfile.mkdtemp()
        >>> _ = write_image_files(root, per_class=2)
        >>> images = scan_image_folder(root)  # one sub-folder per class
        >>> len(images.paths), sorted(set(images.labels)), images.clean_labels
        (6, ['circle', 'square', 'triangle'], None)
    """

    paths: list[Path]
    labels: list[str]
    clean_labels: list[str | None] | None = None


def scan_image_folder(root: str | Path, option: str = "--data.root") -> LabelledImages:
    """``root/<class>/<image>`` (torchvision's ``ImageFolder`` layout), classes sorted by name.

    Args:
        root: The folder.
        option: The command-line option that gave it, named in the errors (``--data.root``,
            ``--data.test_root``).

    Raises:
        FileNotFoundError: If ``root`` is not a folder.
        ValueError: If it has no class sub-folders, or a class folder holds no image.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"the image folder {root} ({option}) does not exist. Give {option} a folder with "
            "one sub-folder of images per class, or "
            f"{option.replace('root', 'labels_file')} a CSV of path,label rows."
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(
            f"{root} has no class sub-folders: put the images of each class in a folder named "
            "after the class (root/cat/1.png, root/dog/2.png), or use --data.labels_file."
        )
    root = root.resolve()  # once: resolving a million paths one by one takes a minute
    paths, labels = [], []
    for name in classes:
        images = image_files(root / name)
        if not images:
            raise ValueError(
                f"the class folder {root / name} holds no images ({', '.join(IMAGE_SUFFIXES)}): "
                "remove it or add its images."
            )
        paths += images
        labels += [name] * len(images)
    return LabelledImages(paths, labels)


def image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` (searched recursively, by their endings,
    :data:`IMAGE_SUFFIXES`), sorted as ``sorted(paths)`` sorts ``Path`` objects."""
    found = [
        os.path.join(parent, name)
        for parent, _, names in os.walk(folder, followlinks=True)
        for name in names
        if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
    ]
    return [Path(path) for path in sorted(found, key=lambda path: path.split(os.sep))]


def _dialect(path: Path, head: str) -> str:
    if path.suffix.lower() == ".tsv" or ("\t" in head and "," not in head):
        return "excel-tab"
    return "excel"


def read_labels_file(path: str | Path) -> LabelledImages:
    """Read a ``path,label`` CSV (or TSV) file; paths are relative to the file's folder.

    An optional ``clean_label`` column gives verified labels (empty where unknown). Labels are
    class names or integers, kept as text here. A reviewed file (``reviewed_labels.csv`` of
    ``label_issues.html``) is read as it is: its rows decided ``drop`` are left out.

    Raises:
        FileNotFoundError: If the file, or an image it lists, does not exist.
        ValueError: For a missing column, an empty file, an empty label or a path listed twice,
            naming the line; for a reviewed file (a ``decision`` column, written by
            ``label_issues.html``), an unknown decision or a label that is not a class
            (:func:`~ln_lightning.data.reviewed.reviewed_rows`).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"the labels file {path} does not exist.")
    text = path.read_text(encoding="utf-8-sig")  # Excel writes a byte-order mark
    rows = list(csv.DictReader(text.splitlines(), dialect=_dialect(path, text[:1000])))
    columns = set(rows[0]) if rows else set(text.splitlines()[0:1])
    missing = {"path", "label"} - columns
    if missing:
        raise ValueError(
            f"{path} needs the columns path and label (and optionally clean_label); its header "
            f"has {sorted(c for c in columns if c)} (missing {sorted(missing)})."
        )
    if not rows:
        raise ValueError(f"{path} lists no images: add one path,label row per image.")
    folder = path.parent.resolve()
    paths, labels, clean, lines = [], [], [], []
    has_clean = "clean_label" in columns
    first: dict[Path, int] = {}
    for line, row in reviewed_rows(rows, path, "path"):  # a reviewed file's drops left out
        file = Path(os.path.normpath(os.path.join(folder, row["path"].strip())))
        if file in first:
            raise ValueError(
                f"{path}:{line}: {file} is listed again (first at line {first[file]}); give each "
                "image one row."
            )
        first[file] = line
        paths.append(file)
        labels.append(row["label"].strip())
        lines.append(line)
        if has_clean:
            clean.append((row.get("clean_label") or "").strip() or None)
    absent = [(line, p) for line, p in zip(lines, paths, strict=True) if not p.is_file()]
    if absent:
        raise FileNotFoundError(
            f"{path}:{absent[0][0]}: the image {absent[0][1]} does not exist ({len(absent)} "
            f"listed image(s) do not; paths are relative to {folder})."
        )
    return LabelledImages(paths, labels, clean if has_clean else None)


#: How set-up checks that the images can be read: ``header`` opens each file and reads its
#: header (format and size: finds missing, empty, non-image and broken-header files),
#: ``decode`` also decodes every pixel (finds files cut short too, as long as an epoch's
#: decoding), ``none`` checks nothing (a bad file then stops the run when a batch meets it).
IMAGE_CHECKS = ("header", "decode", "none")
#: Files one worker checks at a time.
CHECK_CHUNK = 512


def _unreadable_in(paths: Sequence[Path], decode: bool) -> list[tuple[Path, str]]:
    bad = []
    for path in paths:
        try:
            with Image.open(path) as image:
                if decode:
                    image.load()
        except (OSError, UnidentifiedImageError, ValueError) as error:
            bad.append((Path(path), str(error) or type(error).__name__))
    return bad


def unreadable_images(
    paths: Sequence[Path], check: str = "header", workers: int = 0
) -> list[tuple[Path, str]]:
    """The images PIL cannot open (``check="header"``) or decode (``"decode"``), with the
    reason, in the order given.

    With two or more ``workers`` the files are checked in chunks by that many forked processes
    (on Linux, as DataLoader workers are; elsewhere in this process): reading a header is
    mostly Python, so threads would wait on each other.

    Args:
        paths: The image files.
        check: One of :data:`IMAGE_CHECKS` (``"none"`` returns ``[]``).
        workers: Processes (0 or 1: check in this process).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from ln_lightning.data.synthetic import write_image_files
        >>> root = Path(tempfile.mkdtemp())
        >>> paths, _, _ = write_image_files(root, per_class=2)
        >>> _ = (root / "notes.png").write_text("not an image")
        >>> bad = unreadable_images([*paths, root / "notes.png"], check="decode", workers=2)
        >>> [(path.name, reason.split(" ")[0]) for path, reason in bad]
        [('notes.png', 'cannot')]
    """
    if check not in IMAGE_CHECKS:
        raise ValueError(f"check must be one of {IMAGE_CHECKS}; got {check!r}.")
    if workers < 0:
        raise ValueError(f"workers must be >= 0; got {workers}.")
    if check == "none":
        return []
    decode = check == "decode"
    chunks = [paths[i : i + CHECK_CHUNK] for i in range(0, len(paths), CHECK_CHUNK)]
    if workers < 2 or len(chunks) < 2 or sys.platform != "linux":
        return _unreadable_in(paths, decode)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context) as pool:
        found = pool.map(_unreadable_in, chunks, [decode] * len(chunks))
        return [item for chunk in found for item in chunk]


def _within_edits(first: str, second: str, limit: int) -> bool:
    """Whether ``first`` becomes ``second`` in at most ``limit`` insertions, deletions or
    substitutions (Levenshtein distance, one row at a time)."""
    if abs(len(first) - len(second)) > limit:
        return False
    previous = list(range(len(second) + 1))
    for i, a in enumerate(first, 1):
        current = [i]
        for j, b in enumerate(second, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        if min(current) > limit:
            return False
        previous = current
    return previous[-1] <= limit


def doubtful_classes(counts: Mapping[str, int]) -> dict[str, str]:
    """Classes that look like label typos, each with a sentence saying why (empty when none
    does).

    A label written two ways (``Bag`` and ``bag``, ``sneakr`` and ``sneaker``) becomes two
    classes, and the model then learns, and suggests, a class nobody meant. Named here:

    * two names equal but for case;
    * a name within one edit (two for names longer than 6 characters) of another class at
      least 10 times its size;
    * a tiny class: at most 2 images, or under 5% of the median class size.

    Args:
        counts: Images per class name.
    """
    sizes = sorted(counts.values())
    typical = median(sizes) if sizes else 0
    doubts: dict[str, str] = {}
    for name, count in sorted(counts.items(), key=lambda item: item[1]):
        twin = next(
            (
                other
                for other in sorted(counts, key=counts.get, reverse=True)
                if other != name
                and (
                    other.casefold() == name.casefold()
                    or (
                        counts[other] >= 10 * count
                        and min(len(name), len(other)) >= 4
                        and _within_edits(
                            name.casefold(), other.casefold(), 2 if len(name) > 6 else 1
                        )
                    )
                )
            ),
            None,
        )
        plural = "image" if count == 1 else "images"
        if twin is not None and twin not in doubts:
            how = "only in case" if twin.casefold() == name.casefold() else "by a letter or two"
            doubts[name] = (
                f"the class {name!r} ({count} {plural}) differs from {twin!r} "
                f"({counts[twin]}) {how}"
            )
        elif count <= 2 or count < 0.05 * typical:
            doubts[name] = f"the class {name!r} has only {count} {plural}"
    return doubts
