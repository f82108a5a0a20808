"""Look at the labels that look wrong: ``label_issues.html`` and a PNG contact sheet.

The page is one self-contained HTML file (no server, no network): the flagged examples, most
suspicious first, each with its thumbnail, given label, suggested label, score and (LN) the
model's uncertainty; a per-class summary of what was flagged into which class; filters by given
and by suggested class (also from the address: ``label_issues.html#given=cat&page=2``); pages
of 60. Image files are linked relatively (nothing is copied or
decoded, so writing the page for 20,000 images takes a fraction of a second); images held in
memory (tensors, a Hugging Face data set) are embedded as small PNG thumbnails. The page builds
the thumbnails of the visible page only.

Its review mode fixes the labels: for each flagged example a person accepts the suggestion,
keeps the given label, chooses another class, drops the example or marks it unsure (buttons,
keys, or the whole filtered page at once); the decisions stay in the browser's local storage
under the run's folder, and **Download reviewed_labels.csv** writes the whole labels file with
them applied, which ``--data.labels_file`` (``--data.noisy_labels_file`` for data without file
paths) reads back as it is (:mod:`ln_lightning.data.reviewed`).

The contact sheet (``label_issues.png``) shows the first flagged examples in a grid, for papers,
issues and terminals.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ln_lightning.data.reviewed import DECISIONS
from ln_lightning.files import atomic_write, save_figure
from ln_lightning.label_issues.cautions import caution_text
from ln_lightning.label_issues.duplicates import DuplicatePairs
from ln_lightning.label_issues.rule import LabelIssues
from ln_lightning.label_issues.store import IssueTable
from ln_lightning.labels import UNKNOWN

__all__ = [
    "DUPLICATES_SHOWN",
    "THUMBNAIL_SIZE",
    "ImageSource",
    "example_image",
    "flagged_order",
    "write_contact_sheet",
    "write_gallery",
]

#: Longest side of an embedded thumbnail, in pixels.
THUMBNAIL_SIZE = 96
#: Near-duplicate pairs the page shows (all are in ``near_duplicates.csv``).
DUPLICATES_SHOWN = 300
#: What a gallery shows for row ``i`` of an :class:`~ln_lightning.label_issues.IssueTable`: an
#: image file (linked), an image in memory (embedded) or nothing (e.g. a feature vector).
ImageSource = Callable[[int], "Path | Image.Image | None"]


def example_image(item: Any) -> Image.Image | None:
    """An input as a picture: a PIL image as it is; a tensor or array of shape ``(H, W)``,
    ``(C, H, W)`` or ``(H, W, C)`` with ``C`` 1 or 3, scaled to 0-255 per image; ``None`` for
    anything else (feature vectors).

    Example:
        >>> import torch
        >>> example_image(torch.rand(1, 8, 8)).size, example_image(torch.rand(5)) is None
        ((8, 8), True)
    """
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    try:
        array = torch.as_tensor(np.asarray(item), dtype=torch.float32)
    except (TypeError, ValueError):
        return None
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.movedim(0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        return None
    low, high = float(array.min()), float(array.max())
    scaled = ((array - low) / (high - low if high > low else 1.0) * 255).round().byte().numpy()
    return Image.fromarray(scaled)


def _thumbnail_uri(image: Image.Image) -> str:
    picture = image.copy()
    picture.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    if picture.mode not in ("L", "RGB"):
        picture = picture.convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def flagged_order(table: IssueTable, issues: LabelIssues) -> list[int]:
    """Rows of ``table`` whose label is flagged, most suspicious (highest score) first."""
    flagged = torch.nonzero(issues.is_issue).flatten()
    return flagged[table.score[flagged].argsort(descending=True, stable=True)].tolist()


def _class_summary(
    table: IssueTable, issues: LabelIssues, names: Sequence[str], rows: Sequence[int]
) -> list[dict[str, Any]]:
    labelled = Counter(table.given.tolist())
    into: dict[int, Counter] = {}
    for i in rows:
        into.setdefault(int(table.given[i]), Counter())[int(issues.suggested[i])] += 1
    return [
        {
            "class": names[k],
            "labelled": labelled.get(k, 0),
            "flagged": sum(into.get(k, Counter()).values()),
            "into": [[names[j], n] for j, n in into.get(k, Counter()).most_common()],
        }
        for k in range(len(names))
    ]


def write_gallery(
    table: IssueTable,
    issues: LabelIssues,
    class_names: Sequence[str],
    path: str | Path,
    images: ImageSource | None = None,
    title: str = "Labels that look wrong",
    duplicates: DuplicatePairs | None = None,
) -> Path:
    """Write ``label_issues.html`` (see the module docstring) for the flagged rows of ``table``.

    Args:
        table: The scored examples (``label_issues.csv``'s rows).
        issues: Which are flagged and the suggested labels.
        class_names: Name of each class.
        path: Where to write the page; image files are linked relative to its folder.
        images: The picture of row ``i``, if any (:data:`ImageSource`).
        title: The page's heading.
        duplicates: Near-duplicate pairs with different labels, shown side by side (the first
            :data:`DUPLICATES_SHOWN`).

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [str(n) for n in class_names]
    rows = flagged_order(table, issues)
    folder = path.parent.resolve()
    order = table.index.argsort().tolist()  # the review file lists the examples in this order
    position = {row: n for n, row in enumerate(order)}
    records = []
    for rank, i in enumerate(rows, 1):
        source = _source(images, i, folder)
        uncertainty = table.uncertainty[i] if table.uncertainty is not None else None
        records.append(
            {
                "rank": rank,
                "id": _example_id(table, i),
                "index": int(table.index[i]),
                "pos": position[i],
                "split": table.split[i],
                "given": names[int(table.given[i])],
                "suggested": names[int(issues.suggested[i])],
                "score": round(float(table.score[i]), 4),
                "uncertainty": None if uncertainty is None else round(float(uncertainty), 4),
                "src": source,
            }
        )
    data = {
        "title": title,
        "total": len(table.index),
        "caution": caution_text(table.caution).removeprefix(". "),
        "classes": names,
        "summary": _class_summary(table, issues, names, rows),
        "rows": records,
        "decisions": list(DECISIONS),
        "review": _review_data(table, order, folder),
        "duplicates": _duplicate_data(table, names, duplicates, images, folder),
    }
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    with atomic_write(path) as handle:
        handle.write(_PAGE.replace("__TITLE__", html.escape(title)).replace("__DATA__", payload))
    return path


def _example_id(table: IssueTable, row: int) -> str:
    return table.paths[row] if table.paths is not None else str(int(table.index[row]))


def _source(images: ImageSource | None, row: int, folder: Path) -> str | None:
    """What an ``<img>`` shows for ``row``: its file relative to the page, or a thumbnail."""
    picture = images(row) if images is not None else None
    if isinstance(picture, Path):
        return Path(os.path.relpath(picture.resolve(), folder)).as_posix()
    if isinstance(picture, Image.Image):
        return _thumbnail_uri(picture)
    return None


def _duplicate_data(
    table: IssueTable,
    names: list[str],
    duplicates: DuplicatePairs | None,
    images: ImageSource | None,
    folder: Path,
) -> dict[str, Any] | None:
    if duplicates is None:
        return None
    pairs = []
    for a, b, value in zip(duplicates.first.tolist(), duplicates.second.tolist(),
                           duplicates.similarity.tolist(), strict=True):  # fmt: skip
        if len(pairs) == DUPLICATES_SHOWN:
            break
        pairs.append(
            {
                "similarity": round(value, 4),
                "examples": [
                    {
                        "id": _example_id(table, i),
                        "given": names[int(table.given[i])],
                        "src": _source(images, i, folder),
                    }
                    for i in (a, b)
                ],
            }
        )
    return {"total": len(duplicates), "pairs": pairs}


def _review_data(table: IssueTable, order: list[int], folder: Path) -> dict[str, Any]:
    """What the page's review mode needs to write ``reviewed_labels.csv``: every example's id
    (paths as a common prefix and the rest), given and clean class, in the file's order, and
    the key its decisions are kept under in the browser (the run's folder)."""
    ids = (
        [str(table.paths[i]) for i in order]
        if table.paths is not None
        else [str(int(table.index[i])) for i in order]
    )
    # A shared leading string only to keep the page small (not path semantics).
    prefix = os.path.commonprefix(ids) if table.paths is not None and len(ids) > 1 else ""  # noqa: RUF071
    known = bool((table.clean != UNKNOWN).any())
    return {
        "key": f"ln-lightning-review:{folder}",
        "id_column": table.id_column if table.paths is not None else "index",
        "prefix": prefix,
        "ids": [name[len(prefix) :] for name in ids],
        "given": [int(table.given[i]) for i in order],
        "clean": [int(table.clean[i]) for i in order] if known else None,
    }


def _open(picture: Path | Image.Image | None) -> Image.Image | None:
    if picture is None or isinstance(picture, Image.Image):
        return picture
    try:
        with Image.open(picture) as image:
            image.draft("RGB", (THUMBNAIL_SIZE * 2, THUMBNAIL_SIZE * 2))  # JPEG: decode small
            return image.convert("RGB")
    except OSError:
        return None


def write_contact_sheet(
    table: IssueTable,
    issues: LabelIssues,
    class_names: Sequence[str],
    path: str | Path,
    images: ImageSource,
    count: int = 24,
    columns: int = 8,
) -> Path | None:
    """A PNG grid of the ``count`` most suspicious flagged examples with pictures, each titled
    ``given -> suggested`` and its score; ``None`` when no flagged example has a picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = []
    for i in flagged_order(table, issues):
        picture = _open(images(i))
        if picture is not None:
            shown.append((i, picture))
        if len(shown) == count:
            break
    if not shown:
        return None
    columns = min(columns, len(shown))
    rows = -(-len(shown) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.9 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (i, picture) in zip(axes.flat, shown, strict=False):
        axis.imshow(picture, cmap="gray" if picture.mode == "L" else None)
        given, suggested = class_names[int(table.given[i])], class_names[int(issues.suggested[i])]
        axis.set_title(f"{given} -> {suggested}\n{float(table.score[i]):.2f}", fontsize=7)
    figure.suptitle(f"Most suspicious labels ({len(shown)} shown)", fontsize=9)
    figure.tight_layout()
    path = save_figure(figure, path, dpi=100)
    plt.close(figure)
    return path


#: The page: HTML, CSS and script in one file, its data filled in by :func:`write_gallery`.
_PAGE = (Path(__file__).parent / "page.html").read_text(encoding="utf-8")
