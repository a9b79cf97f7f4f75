"""DeviceLoader / streaming loader: determinism, coverage, augmentation semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pcd_core.data import (
    DatasetError,
    DeviceLoader,
    ImageData,
    StreamingImageFolder,
    StreamingLoader,
    as_augment,
    default_augment,
    load_dataset,
    make_epoch_plan,
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
    assert default_augment("cifar100") == default_augment("cifar10") == "crop+flip"
    # unknown data: labels may depend on orientation, so nothing is flipped or cropped
    assert default_augment("image_folder") == "none"
    assert default_augment("digits") == default_augment("mnist") == "none"
    assert default_augment("fashion_mnist") == "none"
    with pytest.raises(ValueError):
        default_augment("imagenet")


def test_augment_names_and_old_booleans():
    assert as_augment(True) == "crop+flip" and as_augment(False) == "none"
    assert as_augment(" Crop ") == "crop" and as_augment("flip+crop") == "crop+flip"
    with pytest.raises(ValueError, match="none, crop, flip, crop\\+flip"):
        as_augment("rotate")
    # crop+flip draws what True drew: its batches are unchanged
    old, new = (make_epoch_plan(20, 3, 1, shuffle=True, augment=a) for a in (True, "crop+flip"))
    assert torch.equal(old.offsets, new.offsets) and torch.equal(old.flips, new.flips)


def test_crop_only_never_flips_and_flip_only_never_shifts():
    crop = make_epoch_plan(200, 0, 0, shuffle=True, augment="crop")
    assert not crop.flips.any() and len(set(crop.offsets.flatten().tolist())) > 3
    flip = make_epoch_plan(200, 0, 0, shuffle=True, augment="flip")
    assert (flip.offsets == 4).all() and 50 < int(flip.flips.sum()) < 150
    data = _data(mean=(0.0,) * 3, std=(1.0,) * 3)
    (batch,) = _batches(DeviceLoader(data, None, 50, shuffle=True, augment="crop", seed=0), 0)
    mirrored = 0
    for img, i in zip(_raw(batch.images), batch.index, strict=True):
        padded = F.pad(data.images[i], (4, 4, 4, 4))
        windows = [padded[:, r : r + 8, c : c + 8] for r in range(9) for c in range(9)]
        assert any(torch.equal(img, w) for w in windows)  # an unflipped window
        mirrored += torch.equal(img, torch.flip(data.images[i], [-1]))
    assert mirrored == 0


def _asymmetric_folder(root, size=(28, 28)):
    """train/test folders of one class holding images whose left half is white."""
    arr = np.zeros((size[0], size[1]), dtype=np.uint8)
    arr[:, : size[1] // 2] = 255
    arr[3, 1] = 17  # and not symmetric top/bottom either
    for split in ("train", "test"):
        for cls in ("left", "right"):
            d = root / split / cls
            d.mkdir(parents=True)
            img = arr if cls == "left" else arr[:, ::-1]
            for i in range(4):
                Image.fromarray(np.ascontiguousarray(img)).save(d / f"{i}.png")
    return arr


def test_image_folder_is_not_flipped_unless_asked(tmp_path):
    arr = torch.from_numpy(_asymmetric_folder(tmp_path))
    data = load_dataset("image_folder", "train", tmp_path)
    data.mean, data.std = (0.0,), (1.0,)
    stored = data.images
    kw = dict(shuffle=True, seed=0)
    default = default_augment("image_folder")
    (plain,) = _batches(DeviceLoader(data, None, 8, augment=default, **kw), 0)
    assert torch.equal(_raw(plain.images), stored[plain.index])  # the images as stored
    (flipped,) = _batches(DeviceLoader(data, None, 8, augment="flip", **kw), 0)
    pairs = list(zip(_raw(flipped.images), stored[flipped.index], strict=True))
    mirrors = [torch.equal(x, torch.flip(orig, [-1])) for x, orig in pairs]
    same = [torch.equal(x, orig) for x, orig in pairs]
    assert all(m != s for m, s in zip(mirrors, same, strict=True))  # mirrored or as stored
    assert any(mirrors) and any(same)
    assert torch.equal(stored[0, 0], arr)  # kept at 28x28, pixels untouched


def test_image_folder_keeps_its_size_unless_asked(tmp_path, folder_writer):
    folder_writer(tmp_path, per_class=2, size=(28, 28), gray=True)
    data = load_dataset("image_folder", "train", tmp_path)
    assert data.image_size == (28, 28)
    stream = StreamingImageFolder(tmp_path, "train")
    assert stream.size == (28, 28) and tuple(stream[0][0].shape) == (1, 28, 28)
    batch = next(DeviceLoader(data, None, 4, shuffle=False, augment="none", seed=0).epoch(0))
    assert batch.images.shape == (4, 1, 28, 28)
    assert load_dataset("image_folder", "test", tmp_path, image_size=32).image_size == (32, 32)


def test_image_folder_of_mixed_sizes_asks_for_image_size(tmp_path, folder_writer):
    folder_writer(tmp_path, per_class=2, size=(28, 28))
    odd = tmp_path / "train" / "cat" / "odd.png"
    Image.fromarray(np.zeros((30, 28, 3), dtype=np.uint8)).save(odd)
    with pytest.raises(DatasetError, match=r"odd\.png.*30x28.*--image-size N"):
        load_dataset("image_folder", "train", tmp_path)
    assert load_dataset("image_folder", "train", tmp_path, image_size=20).image_size == (20, 20)


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


def test_test_images_are_held_to_the_train_images_size(tmp_path, folder_writer):
    folder_writer(tmp_path, per_class=2, size=(28, 28))
    Image.fromarray(np.zeros((30, 28, 3), dtype=np.uint8)).save(tmp_path / "test/dog/odd.png")
    stream = StreamingImageFolder(tmp_path, "test")
    assert stream.size == (28, 28)  # the training images' size
    odd = stream.files.index(tmp_path / "test/dog/odd.png")
    with pytest.raises(DatasetError, match=r"odd\.png: image is 30x28"):
        stream[odd]
    with pytest.raises(DatasetError, match=r"odd\.png: image is 30x28"):
        load_dataset("image_folder", "test", tmp_path)
