"""Near-duplicates with conflicting labels: the streaming k-nearest-neighbour search against a
brute-force one, the pairs, the file, and the run that writes them."""

from __future__ import annotations

import csv

import pytest
import torch

from ln_lightning.label_issues import (
    DuplicateSearch,
    conflicting_pairs,
    nearest_neighbours,
    write_near_duplicates,
)


@pytest.mark.parametrize("block", [3, 7, 4096])
def test_the_blocked_search_is_the_brute_force_one(block):
    features = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    similarity, index = nearest_neighbours(features, k=4, block=block)
    unit = torch.nn.functional.normalize(features, dim=1)
    full = unit @ unit.T
    full.fill_diagonal_(-2.0)  # not oneself
    expected, expected_index = full.topk(4, dim=1)
    torch.testing.assert_close(similarity, expected)
    assert torch.equal(index, expected_index)


def test_pairs_are_listed_once_above_the_threshold_with_different_labels(tmp_path):
    base = torch.randn(6, 8, generator=torch.Generator().manual_seed(1))
    features = torch.cat([base, base[:3] + 1e-4])  # rows 6, 7, 8 copy rows 0, 1, 2
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 1, 1, 2])  # 6 and 7 conflict; 8 agrees with 2
    similarity, index = nearest_neighbours(features, k=3)
    pairs = conflicting_pairs(similarity, index, labels, threshold=0.999)
    assert sorted(zip(pairs.first.tolist(), pairs.second.tolist(), strict=True)) == [(0, 6)]
    assert float(pairs.similarity[0]) > 0.999
    ids = [f"/d/{i}.png" for i in range(9)]
    clean = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    path = write_near_duplicates(pairs, ids, labels, ["a", "b", "c"], tmp_path / "n.csv", clean)
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [{
        "similarity": f"{float(pairs.similarity[0]):.4f}", "first": "/d/0.png",
        "first_label": "a", "second": "/d/6.png", "second_label": "b",
        "first_clean_label": "a", "second_clean_label": "a",
    }]  # fmt: skip


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match=r"similarity must be in \(0, 1\]; got 0"):
        DuplicateSearch(similarity=0)
    with pytest.raises(ValueError, match="neighbours must be >= 1; got 0"):
        DuplicateSearch(neighbours=0)
    with pytest.raises(ValueError, match=r"features must be \(N, D\) with N >= 2"):
        nearest_neighbours(torch.zeros(1, 3), k=1)
