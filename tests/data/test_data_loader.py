"""DeviceLoader / streaming loader: determinism, coverage, augmentation semantics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pcd_core.data import (
    DeviceLoader,
    ImageData,
    StreamingImageFolder,
    StreamingLoader,
    default_augment,
    load_dataset,
)


def _data(n: int = 50, c: int = 3, size: int = 8, mean=None, std=None) -> ImageData:
    g = torch.Generator().manual_seed(0)
    return ImageData(
        images=torch.randint(1, 256, (n, c, size, size), generator=g, dtype=torch.uint8),
        labels=torch.arange(n) % 5,
        num_classes=5,
        class_names=[str(i) for i in range(5)],
        mean=mean or (0.5,) * c,
        std=std or (0.25,) * c,
        name="synthetic",
    )


def _raw(batch_images: torch.Tensor) -> torch.Tensor:
    """Undo a mean=0/std=1 normalisation back to uint8."""
    return (batch_images * 255).round().to(torch.uint8)


def _batches(loader: DeviceLoader, epoch: int) -> list:
    return list(loader.epoch(epoch))


def test_same_seed_epoch_identical_batches():
    data = _data()
    kw = dict(shuffle=True, augment=True, seed=7)
    a = _batches(DeviceLoader(data, None, 16, **kw), 3)
    b = _batches(DeviceLoader(data, None, 16, **kw), 3)
    assert len(a) == len(b) == 4
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.images, y.images) and torch.equal(x.index, y.index)
        assert torch.equal(x.labels, y.labels) and x.step == y.step
    c = _batches(DeviceLoader(data, None, 16, **kw), 4)
    assert not torch.equal(torch.cat([x.index for x in a]), torch.cat([x.index for x in c]))
    d = _batches(DeviceLoader(data, None, 16, shuffle=True, augment=True, seed=8), 3)
    assert not torch.equal(torch.cat([x.index for x in a]), torch.cat([x.index for x in d]))


def test_each_index_once_per_epoch_and_lengths():
    data = _data(n=50)
    loader = DeviceLoader(data, None, 16, shuffle=True, augment=False, seed=0)
    assert len(loader) == 4
    batches = _batches(loader, 0)
    assert [b.step for b in batches] == [0, 1, 2, 3]
    assert [len(b.index) for b in batches] == [16, 16, 16, 2]
    seen = torch.cat([b.index for b in batches])
    assert sorted(seen.tolist()) == list(range(50))
    for b in batches:
        assert b.labels.dtype == torch.int64 and b.index.dtype == torch.int64
        assert torch.equal(b.labels, data.labels[b.index])
    dropped = DeviceLoader(data, None, 16, shuffle=True, augment=False, seed=0, drop_last=True)
    assert len(dropped) == 3 and sum(len(b.index) for b in dropped.epoch(0)) == 48
    ordered = DeviceLoader(data, None, 16, shuffle=False, augment=False, seed=0)
    assert torch.cat([b.index for b in ordered.epoch(5)]).tolist() == list(range(50))


def test_subset_indices():
    data = _data(n=50)
    subset = torch.tensor([3, 10, 11, 40, 41, 49])
    loader = DeviceLoader(data, subset, 4, shuffle=True, augment=False, seed=1)
    assert len(loader) == 2
    seen = torch.cat([b.index for b in loader.epoch(0)])
    assert sorted(seen.tolist()) == subset.tolist()
    with pytest.raises(ValueError):
        DeviceLoader(data, torch.tensor([50]), 4, shuffle=False, augment=False, seed=0)


def test_no_augment_is_plain_normalisation():
    data = _data(mean=(0.1, 0.2, 0.3), std=(0.2, 0.3, 0.4))
    loader = DeviceLoader(data, None, 64, shuffle=True, augment=False, seed=0)
    (batch,) = _batches(loader, 0)
    assert batch.images.dtype == torch.float32 and batch.images.shape == (50, 3, 8, 8)
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)
    expected = (data.images[batch.index].float() / 255 - mean) / std
    torch.testing.assert_close(batch.images, expected, rtol=1e-5, atol=1e-5)


def test_flip_only_matches_torch_flip():
    data = _data(mean=(0.0,) * 3, std=(1.0,) * 3)
    loader = DeviceLoader(data, None, 50, shuffle=True, augment=True, seed=0, pad=0)
    (batch,) = _batches(loader, 0)
    flipped = 0
    for img, i in zip(_raw(batch.images), batch.index, strict=True):
        orig = data.images[i]
        if torch.equal(img, orig):
            continue
        assert torch.equal(img, torch.flip(orig, dims=[-1]))
        flipped += 1
    assert 10 <= flipped <= 40  # p = 0.5 over 50 images


def test_crop_is_a_window_of_the_padded_original():
    data = _data(mean=(0.0,) * 3, std=(1.0,) * 3)
    loader = DeviceLoader(data, None, 25, shuffle=True, augment=True, seed=3)
    changed = 0
    flips = 0
    for batch in loader.epoch(1):
        assert batch.images.shape == (25, 3, 8, 8)
        for img, i in zip(_raw(batch.images), batch.index, strict=True):
            padded = F.pad(data.images[i], (4, 4, 4, 4))
            hits = [
                (r, c, f)
                for r in range(9)
                for c in range(9)
                for f in (False, True)
                if torch.equal(
                    img,
                    torch.flip(padded[:, r : r + 8, c : c + 8], [-1])
                    if f
                    else padded[:, r : r + 8, c : c + 8],
                )
            ]
            assert hits, f"augmented image {int(i)} is not a (flipped) crop of its padded original"
            changed += not torch.equal(img, data.images[i])
            flips += any(f for _, _, f in hits) and not any(not f for _, _, f in hits)
    assert changed >= 40 and flips >= 10
    # zero padding: shifted images bring in zero pixels
    assert any((_raw(b.images) == 0).any() for b in loader.epoch(1))


def test_channels_last_and_device_string():
    data = _data()
    loader = DeviceLoader(
        data, None, 8, shuffle=True, augment=True, seed=0, device="cpu", channels_last=True
    )
    batch = next(loader.epoch(0))
    assert batch.images.is_contiguous(memory_format=torch.channels_last)
    plain = DeviceLoader(data, None, 8, shuffle=True, augment=True, seed=0)
    other = next(plain.epoch(0))
    assert other.images.is_contiguous()
    assert torch.equal(batch.images, other.images)


def test_default_augment():
    assert default_augment("cifar100") and default_augment("cifar10")
    assert default_augment("image_folder")
    assert not default_augment("digits") and not default_augment("mnist")
    assert not default_augment("fashion_mnist")
    with pytest.raises(ValueError):
        default_augment("imagenet")


def test_digits_loader_runs():
    data = load_dataset("digits", "train")
    loader = DeviceLoader(data, None, 256, shuffle=True, augment=False, seed=0)
    total = sum(b.images.shape[0] for b in loader.epoch(0))
    assert total == len(data)


@pytest.mark.parametrize("workers", [0, 1])
def test_streaming_folder_matches_device_loader(tmp_path, folder_writer, workers):
    folder_writer(tmp_path, per_class=5, size=(12, 10))
    data = load_dataset("image_folder", "train", tmp_path, image_size=16)
    stream = StreamingImageFolder(tmp_path, "train", image_size=16)
    assert len(stream) == len(data) and stream.mean == data.mean and stream.std == data.std
    assert stream.class_names == data.class_names
    subset = torch.arange(1, 15)
    dev = DeviceLoader(data, subset, 4, shuffle=True, augment=True, seed=2)
    lazy = StreamingLoader(
        stream, subset, 4, shuffle=True, augment=True, seed=2, num_workers=workers
    )
    assert len(dev) == len(lazy) == 4
    for epoch in (0, 1):
        pairs = list(zip(dev.epoch(epoch), lazy.epoch(epoch), strict=True))
        for a, b in pairs:
            assert torch.equal(a.index, b.index) and torch.equal(a.labels, b.labels)
            assert torch.equal(a.images, b.images) and a.step == b.step
