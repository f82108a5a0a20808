"""Look at the labels that look wrong: ``label_issues.html`` and a PNG contact sheet.

The page is one self-contained HTML file (no server, no network): the flagged examples, most
suspicious first, each with its thumbnail, given label, suggested label, score and (LN) the
model's uncertainty; a per-class summary of what was flagged into which class; filters by given
and by suggested class (also from the address: ``label_issues.html#given=cat&page=2``); pages
of 60. Image files are linked relatively (nothing is copied or
decoded, so writing the page for 20,000 images takes a fraction of a second); images held in
memory (tensors, a Hugging Face data set) are embedded as small PNG thumbnails. The page builds
the thumbnails of the visible page only.

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

from ln_lightning.files import atomic_write, save_figure
from ln_lightning.label_issues.cautions import caution_text
from ln_lightning.label_issues.rule import LabelIssues
from ln_lightning.label_issues.store import IssueTable

__all__ = [
    "THUMBNAIL_SIZE",
    "ImageSource",
    "example_image",
    "flagged_order",
    "write_contact_sheet",
    "write_gallery",
]

#: Longest side of an embedded thumbnail, in pixels.
THUMBNAIL_SIZE = 96
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
) -> Path:
    """Write ``label_issues.html`` (see the module docstring) for the flagged rows of ``table``.

    Args:
        table: The scored examples (``label_issues.csv``'s rows).
        issues: Which are flagged and the suggested labels.
        class_names: Name of each class.
        path: Where to write the page; image files are linked relative to its folder.
        images: The picture of row ``i``, if any (:data:`ImageSource`).
        title: The page's heading.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [str(n) for n in class_names]
    rows = flagged_order(table, issues)
    folder = path.parent.resolve()
    records = []
    for rank, i in enumerate(rows, 1):
        picture = images(i) if images is not None else None
        if isinstance(picture, Path):
            source = Path(os.path.relpath(picture.resolve(), folder)).as_posix()
        elif isinstance(picture, Image.Image):
            source = _thumbnail_uri(picture)
        else:
            source = None
        uncertainty = table.uncertainty[i] if table.uncertainty is not None else None
        records.append(
            {
                "rank": rank,
                "id": table.paths[i] if table.paths is not None else str(int(table.index[i])),
                "index": int(table.index[i]),
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
    }
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    with atomic_write(path) as handle:
        handle.write(_PAGE.replace("__TITLE__", html.escape(title)).replace("__DATA__", payload))
    return path


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


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.4rem;margin:0 0 .3rem}
.caution{background:#fff3cd;border:1px solid #e0c36c;padding:.6rem .8rem;margin:.8rem 0}
.controls{display:flex;gap:1rem;align-items:center;flex-wrap:wrap;margin:.8rem 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:.7rem}
.card{border:1px solid #ddd;border-radius:6px;padding:.4rem;font-size:.8rem;margin:0}
.thumb{width:100%;height:110px;object-fit:contain;background:#f4f4f4;image-rendering:pixelated}
.noimage{height:110px;display:flex;align-items:center;justify-content:center;background:#f4f4f4}
.given{color:#b00020}.suggested{color:#006400}.meta{color:#666}.id{color:#666;word-break:break-all}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1rem}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}
</style></head>
<body>
<h1>__TITLE__</h1>
<p id="counts"></p>
<div id="caution" class="caution" hidden></div>
<details><summary>Per class: how many were flagged, and into which classes</summary>
<table id="summary"><thead><tr><th>given label</th><th>labelled</th><th>flagged</th>
<th>suggested instead (count)</th></tr></thead><tbody></tbody></table></details>
<div class="controls">
<label>given <select id="given"><option value="">all</option></select></label>
<label>suggested <select id="suggested"><option value="">all</option></select></label>
<button id="previous">previous</button><span id="page"></span><button id="next">next</button>
</div>
<div id="grid" class="grid"></div>
<script id="data" type="application/json">__DATA__</script>
<script>
const data = JSON.parse(document.getElementById("data").textContent);
const perPage = 60;
let page = 0;
const text = (tag, value, cls) => {
  const node = document.createElement(tag);
  node.textContent = value;
  if (cls) node.className = cls;
  return node;
};
document.getElementById("counts").textContent =
  `${data.rows.length} of ${data.total} labels look wrong, most suspicious first ` +
  "(red: the label given, green: the label the model suggests).";
if (data.caution) {
  const box = document.getElementById("caution");
  box.hidden = false;
  box.textContent = data.caution;
}
const body = document.querySelector("#summary tbody");
for (const row of data.summary) {
  const tr = document.createElement("tr");
  const into = row.into.map(([name, n]) => `${name} (${n})`).join(", ");
  for (const value of [row.class, row.labelled, row.flagged, into]) tr.append(text("td", value));
  body.append(tr);
}
// The filters and the page can be set in the address: label_issues.html#given=cat&page=2
const wanted = new URLSearchParams(location.hash.slice(1));
for (const id of ["given", "suggested"]) {
  const select = document.getElementById(id);
  for (const name of data.classes) select.append(new Option(name, name));
  if (data.classes.includes(wanted.get(id))) select.value = wanted.get(id);
  select.addEventListener("change", () => { page = 0; render(); });
}
page = Math.max(0, (parseInt(wanted.get("page"), 10) || 1) - 1);
const chosen = () => {
  const given = document.getElementById("given").value;
  const suggested = document.getElementById("suggested").value;
  return data.rows.filter(r => (!given || r.given === given) &&
                               (!suggested || r.suggested === suggested));
};
function render() {
  const rows = chosen();
  const pages = Math.max(1, Math.ceil(rows.length / perPage));
  page = Math.min(Math.max(page, 0), pages - 1);
  document.getElementById("page").textContent = ` page ${page + 1} of ${pages} `;
  const grid = document.getElementById("grid");
  grid.replaceChildren();
  for (const row of rows.slice(page * perPage, (page + 1) * perPage)) {
    const card = document.createElement("figure");
    card.className = "card";
    if (row.src) {
      const img = document.createElement("img");
      img.className = "thumb";
      img.loading = "lazy";
      img.src = row.src;
      img.alt = row.id;
      card.append(img);
    } else {
      card.append(text("div", "no image", "noimage"));
    }
    const caption = document.createElement("figcaption");
    caption.append(text("span", row.given, "given"), " \u2192 ",
                   text("span", row.suggested, "suggested"));
    caption.append(text("div", `#${row.rank}, score ${row.score}`, "meta"));
    if (row.uncertainty !== null) {
      caption.append(text("div", `uncertainty ${row.uncertainty}`, "meta"));
    }
    caption.append(text("div", row.id, "id"));
    card.append(caption);
    grid.append(card);
  }
}
document.getElementById("previous").addEventListener("click", () => { page -= 1; render(); });
document.getElementById("next").addEventListener("click", () => { page += 1; render(); });
render();
</script>
</body></html>
"""
