"""Near-duplicates with conflicting labels: the same picture (or nearly) given two classes.

Each labelled example is described by the trained network's features (its backbone's output)
and, for images, its input averaged down to a small thumbnail: a classifier's features make
every confident example of a class look alike (a LeNet-5 trained 20 epochs on Fashion-MNIST
gave 1.9% of the images a neighbour at cosine 0.999 or more that is not a copy), the thumbnail
tells the pictures apart (:func:`signature`: the similarity of two examples is the mean of the
two cosines). The signatures are searched for each example's ``k`` most similar others, a block of
queries against a block of keys at a time, keeping a running top ``k``: memory O(N k) beyond
the features themselves, never an N x N matrix. A pair above ``threshold`` whose given labels
differ is a conflict: at least one of the two labels is wrong, or the classes overlap.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ln_lightning.files import atomic_write

__all__ = [
    "THUMBNAIL",
    "DuplicatePairs",
    "DuplicateSearch",
    "conflicting_pairs",
    "nearest_neighbours",
    "signature",
    "write_near_duplicates",
]

#: Side of the thumbnail (per channel) an image's signature adds to its features.
THUMBNAIL = 8

#: Queries and keys compared at a time: a block of ``BLOCK x BLOCK`` similarities (64 MB).
BLOCK = 4096


def signature(features: Tensor, thumbnails: Tensor | None = None) -> Tensor:
    """What two examples are compared by: their unit feature vectors and, with ``thumbnails``,
    their mean-centred unit thumbnails, side by side and scaled so that the cosine similarity
    of two signatures is the mean of the two cosines.

    Example:
        >>> import torch
        >>> same_class = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # features alike
        >>> pictures = torch.tensor([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]])  # not alike
        >>> s = signature(same_class, pictures)
        >>> abs(round(float(s[0] @ s[1]), 3))  # (1 + -1) / 2
        0.0
    """
    unit = torch.nn.functional.normalize(features.float(), dim=1)
    if thumbnails is None:
        return unit
    centred = thumbnails.float() - thumbnails.float().mean(1, keepdim=True)
    picture = torch.nn.functional.normalize(centred, dim=1)
    return torch.cat([unit, picture], 1) / 2**0.5


@dataclass(frozen=True)
class DuplicateSearch:
    """How near-duplicates are searched, checked once when made.

    Attributes:
        similarity: The similarity of two examples' signatures (:func:`signature`) from which
            they count as near-duplicates, in (0, 1].
        neighbours: Most similar examples looked at per example, >= 1.

    Example:
        >>> DuplicateSearch(similarity=1.5)
        Traceback (most recent call last):
        ...
        ValueError: similarity must be in (0, 1]; got 1.5.
    """

    similarity: float = 0.999
    neighbours: int = 5

    def __post_init__(self) -> None:
        if not 0 < self.similarity <= 1:
            raise ValueError(f"similarity must be in (0, 1]; got {self.similarity}.")
        if self.neighbours < 1:
            raise ValueError(f"neighbours must be >= 1; got {self.neighbours}.")


def nearest_neighbours(features: Tensor, k: int, block: int = BLOCK) -> tuple[Tensor, Tensor]:
    """Each row's ``k`` most cosine-similar other rows of ``features`` ``(N, D)``.

    Returns:
        ``(similarity, index)``, both ``(N, min(k, N - 1))``, most similar first.

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> similarity, index = nearest_neighbours(x, k=1)
        >>> index.flatten().tolist(), [round(s, 3) for s in similarity.flatten().tolist()]
        ([1, 0, 1], [0.994, 0.994, 0.11])
    """
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features must be (N, D) with N >= 2; got {tuple(features.shape)}.")
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}.")
    n = len(features)
    k = min(k, n - 1)
    unit = torch.nn.functional.normalize(features.float(), dim=1)
    best_similarity = torch.full((n, k), -2.0)
    best_index = torch.zeros((n, k), dtype=torch.long)
    for start in range(0, n, block):
        queries = unit[start : start + block]
        rows = torch.arange(start, start + len(queries))
        top_similarity, top_index = best_similarity[rows], best_index[rows]
        for key_start in range(0, n, block):
            similarity = queries @ unit[key_start : key_start + block].T
            keys = torch.arange(key_start, key_start + similarity.shape[1])
            similarity[rows[:, None] == keys[None, :]] = -2.0  # not oneself
            merged = torch.cat([top_similarity, similarity], 1)
            candidates = torch.cat([top_index, keys.expand(len(queries), -1)], 1)
            top_similarity, where = merged.topk(k, dim=1)
            top_index = candidates.gather(1, where)
        best_similarity[rows], best_index[rows] = top_similarity, top_index
    return best_similarity, best_index


@dataclass
class DuplicatePairs:
    """Pairs of rows ``(first, second)`` (``first < second``) with their cosine similarity,
    most similar first.

    Example:
        >>> import torch
        >>> pairs = DuplicatePairs(torch.tensor([0]), torch.tensor([3]), torch.tensor([0.9995]))
        >>> len(pairs), pairs.second.tolist()
        (1, [3])
    """

    first: Tensor
    second: Tensor
    similarity: Tensor

    def __len__(self) -> int:
        return len(self.first)


def conflicting_pairs(
    similarity: Tensor, index: Tensor, labels: Tensor, threshold: float
) -> DuplicatePairs:
    """The neighbour pairs (from :func:`nearest_neighbours`) at or above ``threshold`` whose
    ``labels`` differ, each pair once.

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
        >>> pairs = conflicting_pairs(*nearest_neighbours(x, 1), torch.tensor([0, 1, 2, 2]), 0.99)
        >>> pairs.first.tolist(), pairs.second.tolist()  # 2 and 3 agree: no conflict
        ([0], [1])
    """
    if not -1 <= threshold <= 1:
        raise ValueError(f"threshold is a cosine similarity in [-1, 1]; got {threshold}.")
    rows = torch.arange(len(index))[:, None].expand_as(index)
    keep = (similarity >= threshold) & (labels[rows] != labels[index])
    first = torch.minimum(rows[keep], index[keep])
    second = torch.maximum(rows[keep], index[keep])
    values = similarity[keep]
    key, where = torch.unique(first * len(index) + second, return_inverse=True)
    best = torch.full((len(key),), -2.0).scatter_reduce(0, where, values, "amax")
    order = best.argsort(descending=True, stable=True)
    n = len(index)
    return DuplicatePairs(key[order] // n, key[order] % n, best[order])


def write_near_duplicates(
    pairs: DuplicatePairs,
    ids: Sequence[str],
    given: Tensor,
    class_names: Sequence[str],
    path: str | Path,
    clean: Tensor | None = None,
) -> Path:
    """``near_duplicates.csv``: one row per pair, most similar first: ``similarity``, each
    example's id (path, row or index) and given label (and true label where known)."""
    path = Path(path)
    known = clean is not None and bool((clean >= 0).any())
    with atomic_write(path, newline="") as handle:
        writer = csv.writer(handle)
        header = ["similarity", "first", "first_label", "second", "second_label"]
        writer.writerow(header + (["first_clean_label", "second_clean_label"] if known else []))
        for a, b, value in zip(pairs.first.tolist(), pairs.second.tolist(),
                               pairs.similarity.tolist(), strict=True):  # fmt: skip
            row = [f"{value:.4f}", ids[a], class_names[int(given[a])], ids[b],
                   class_names[int(given[b])]]  # fmt: skip
            if known:
                row += [class_names[int(clean[i])] if int(clean[i]) >= 0 else "" for i in (a, b)]
            writer.writerow(row)
    return path
