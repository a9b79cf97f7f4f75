"""train_val_split: stratified, disjoint, deterministic, seed-dependent."""

from __future__ import annotations

import pytest
import torch

from pcd_core.data import train_val_split


def _labels() -> torch.Tensor:
    # unbalanced classes: 50, 30, 20, 7, 1 samples, interleaved
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate((50, 30, 20, 7, 1))])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(3))]


def test_split_disjoint_sorted_complete():
    labels = _labels()
    train, val = train_val_split(labels, 0.2, seed=0)
    assert train.dtype == val.dtype == torch.int64
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(len(labels)))
    assert len(val) == round(0.2 * len(labels))


def test_split_stratified():
    labels = _labels()
    _, val = train_val_split(labels, 0.2, seed=5)
    counts = torch.bincount(labels[val], minlength=5).tolist()
    assert counts[:3] == [10, 6, 4]
    assert counts[3] in (1, 2) and counts[4] == 0  # a singleton class stays in train


def test_split_deterministic_and_seed_dependent():
    labels = _labels()
    a = train_val_split(labels, 0.25, seed=1)
    b = train_val_split(labels.clone(), 0.25, seed=1)
    c = train_val_split(labels, 0.25, seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    assert len(a[1]) == len(c[1])


def test_split_zero_and_validation():
    labels = _labels()
    train, val = train_val_split(labels, 0.0)
    assert val.numel() == 0 and val.dtype == torch.int64
    assert torch.equal(train, torch.arange(len(labels)))
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="val_fraction"):
            train_val_split(labels, bad)
    with pytest.raises(ValueError):
        train_val_split(torch.zeros(2, 2, dtype=torch.int64))
