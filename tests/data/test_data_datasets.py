"""Loaders: CIFAR pickles, IDX files, image folders, digits, dispatch and error messages."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch

from pcd_core.data import (
    DATASET_NAMES,
    DatasetError,
    ImageData,
    load_dataset,
    read_idx,
)

# ---------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_loads_shapes_and_labels(tmp_path, cifar_writer, name, classes):
    folder = cifar_writer(tmp_path, name, n_train=50, n_test=20)
    train = load_dataset(name, "train", tmp_path)
    test = load_dataset(name, "test", folder)  # the folder itself is accepted too
    assert isinstance(train, ImageData)
    assert train.images.shape == (50, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (20, 3, 32, 32)
    assert train.labels.dtype == torch.int64 and train.labels.shape == (50,)
    assert train.num_classes == classes and len(train.class_names) == classes
    assert train.name == name and test.split == "test"
    assert len(train.mean) == 3 and len(train.std) == 3
    if name == "cifar100":
        assert train.labels.tolist() == [(i * 7) % 100 for i in range(50)]
        assert train.class_names[3] == "fine3"
        # pixel layout: row-major 3x32x32 from the 3072-byte rows
        raw = pickle.loads((folder / "train").read_bytes(), encoding="bytes")
        assert torch.equal(train.images[5], torch.from_numpy(raw[b"data"][5].reshape(3, 32, 32)))
    else:
        assert train.labels[:10].tolist() == [(i + 1) % 10 for i in range(10)]
        assert train.class_names[0] == "class0"


def test_cifar_missing_folder_mentions_download(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar100", "train", tmp_path)
    msg = str(err.value)
    assert "cifar-100-python" in msg and "pcd data download cifar100 --root" in msg
    assert "\n" not in msg


def test_cifar_missing_file(tmp_path, cifar_writer):
    folder = cifar_writer(tmp_path, "cifar10")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3") as err:
        load_dataset("cifar10", "train", tmp_path)
    assert "pcd data download cifar10" in str(err.value)
    load_dataset("cifar10", "test", tmp_path)  # the other split still loads


def test_cifar_truncated_pickle(tmp_path, cifar_writer):
    folder = cifar_writer(tmp_path, "cifar100")
    raw = (folder / "train").read_bytes()
    (folder / "train").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match=r"train.*truncated or corrupt"):
        load_dataset("cifar100", "train", tmp_path)


def test_cifar_garbage_pickle(tmp_path, cifar_writer):
    folder = cifar_writer(tmp_path, "cifar100")
    (folder / "test").write_bytes(b"this is not a pickle at all")
    with pytest.raises(DatasetError, match="test"):
        load_dataset("cifar100", "test", tmp_path)


def test_cifar_refuses_code_in_pickle(tmp_path, cifar_writer):
    folder = cifar_writer(tmp_path, "cifar100")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "test").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DatasetError, match="refusing to load global"):
        load_dataset("cifar100", "test", tmp_path)


def test_cifar_labels_out_of_range(tmp_path, cifar_writer):
    folder = cifar_writer(tmp_path, "cifar100")
    d = pickle.loads((folder / "test").read_bytes(), encoding="bytes")
    d[b"fine_labels"][3] = 100
    (folder / "test").write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(DatasetError, match=r"cifar-100-python/test: label 100 out of range"):
        load_dataset("cifar100", "test", tmp_path)


def test_cifar_wrong_layout(tmp_path, cifar_writer):
    folder = cifar_writer(tmp_path, "cifar100")
    d = pickle.loads((folder / "train").read_bytes(), encoding="bytes")
    (folder / "train").write_bytes(pickle.dumps({b"data": d[b"data"][:, :100]}, protocol=2))
    with pytest.raises(DatasetError, match="fine_labels"):
        load_dataset("cifar100", "train", tmp_path)
    d[b"data"] = d[b"data"][:, :100]
    (folder / "train").write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(DatasetError, match=r"shape \(50, 100\)"):
        load_dataset("cifar100", "train", tmp_path)
    d = pickle.loads((folder / "test").read_bytes(), encoding="bytes")
    d[b"fine_labels"] = d[b"fine_labels"][:-1]
    (folder / "test").write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(DatasetError, match="size mismatch"):
        load_dataset("cifar100", "test", tmp_path)
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [b"a"]}))
    with pytest.raises(DatasetError, match="meta"):
        load_dataset("cifar100", "test", tmp_path)


# ---------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_idx_mnist_gz_and_plain(tmp_path, idx_writer, gz):
    idx_writer(tmp_path, "train", 30, gz=gz)
    idx_writer(tmp_path, "t10k", 12, gz=gz, seed=1)
    train = load_dataset("mnist", "train", tmp_path)
    test = load_dataset("fashion_mnist", "test", tmp_path)
    assert train.images.shape == (30, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (12, 1, 28, 28)
    assert train.labels.tolist() == [i % 10 for i in range(30)]
    assert test.class_names[0] == "T-shirt/top" and train.class_names[0] == "0"
    rng = np.random.default_rng(0)
    assert torch.equal(
        train.images[:, 0], torch.from_numpy(rng.integers(0, 256, (30, 28, 28), dtype=np.uint8))
    )


def test_idx_torchvision_raw_layout(tmp_path, idx_writer):
    idx_writer(tmp_path / "FashionMNIST" / "raw", "train", 10, gz=True)
    assert len(load_dataset("fashion_mnist", "train", tmp_path)) == 10


def test_idx_wrong_magic(tmp_path, idx_writer, idx_encoder):
    img, _ = idx_writer(tmp_path, "train", 10, gz=False)
    img.write_bytes(b"\x12\x34" + img.read_bytes()[2:])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte: wrong magic number"):
        load_dataset("mnist", "train", tmp_path)
    # a label file where the image file should be: valid IDX, wrong magic for the role
    img.write_bytes(idx_encoder(np.zeros(10, np.uint8)))
    with pytest.raises(DatasetError, match="0x00000803"):
        load_dataset("mnist", "train", tmp_path)


def test_idx_truncated_and_mismatch(tmp_path, idx_writer, idx_encoder):
    img, lab = idx_writer(tmp_path, "t10k", 10, gz=True)
    raw = gzip.decompress(img.read_bytes())
    img.write_bytes(gzip.compress(raw[:-5]))
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.gz: size mismatch.*truncated"):
        load_dataset("mnist", "test", tmp_path)
    img.write_bytes(img.read_bytes()[:20])  # truncated gzip stream
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz"):
        load_dataset("mnist", "test", tmp_path)
    img.write_bytes(gzip.compress(raw))
    lab.write_bytes(gzip.compress(idx_encoder(np.zeros(9, np.uint8))))
    with pytest.raises(DatasetError, match="9 labels for 10 images"):
        load_dataset("mnist", "test", tmp_path)
    lab.write_bytes(gzip.compress(idx_encoder(np.full(10, 10, np.uint8))))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: label 10 out of range"):
        load_dataset("mnist", "test", tmp_path)


def test_idx_missing(tmp_path, idx_writer):
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", "train", tmp_path)
    _, lab = idx_writer(tmp_path, "train", 5, gz=False)
    lab.unlink()
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte"):
        load_dataset("mnist", "train", tmp_path)


def test_read_idx_dtypes(tmp_path, idx_encoder):
    p = tmp_path / "x.idx"
    p.write_bytes(idx_encoder(np.arange(6, dtype=np.uint8).reshape(2, 3)))
    assert read_idx(p).tolist() == [[0, 1, 2], [3, 4, 5]]
    p.write_bytes(b"\x00\x00")
    with pytest.raises(DatasetError, match=r"x\.idx: truncated"):
        read_idx(p)


# ---------------------------------------------------------------------------- image folder


def test_image_folder_png_and_jpeg(tmp_path, folder_writer):
    folder_writer(tmp_path, per_class=4)
    train = load_dataset("image_folder", "train", tmp_path, image_size=16)
    test = load_dataset("image_folder", "test", tmp_path, image_size=16)
    assert train.images.shape == (12, 3, 16, 16) and train.images.dtype == torch.uint8
    assert train.class_names == ["cat", "dog", "emu"] and train.num_classes == 3
    assert train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert {p.suffix for p in (tmp_path / "train" / "cat").iterdir()} == {".png", ".jpg", ".jpeg"}
    # statistics come from the training split for both splits
    assert train.mean == test.mean and train.std == test.std
    assert all(0.3 < m < 0.7 for m in train.mean)


def test_image_folder_native_size_and_gray(tmp_path, folder_writer):
    folder_writer(tmp_path, per_class=2, size=(8, 8), gray=True, splits=("train",))
    data = load_dataset("image_folder", "train", tmp_path, image_size=8)
    assert data.images.shape == (6, 1, 8, 8)
    png = tmp_path / "train" / "cat" / "img0.png"
    from PIL import Image

    assert torch.equal(data.images[0, 0], torch.from_numpy(np.array(Image.open(png))))


def test_image_folder_unreadable_file(tmp_path, folder_writer):
    folder_writer(tmp_path, per_class=2)
    bad = tmp_path / "test" / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DatasetError, match=r"broken.png: unreadable image file"):
        load_dataset("image_folder", "test", tmp_path)
    good = tmp_path / "train" / "dog" / "img0.png"
    good.write_bytes(good.read_bytes()[:60])  # truncated PNG
    with pytest.raises(DatasetError, match=r"img0.png: unreadable image file"):
        load_dataset("image_folder", "train", tmp_path)


def test_image_folder_layout_errors(tmp_path, folder_writer):
    with pytest.raises(DatasetError, match="train"):
        load_dataset("image_folder", "train", tmp_path)
    folder_writer(tmp_path, per_class=1)
    (tmp_path / "test" / "zebra").mkdir()
    with pytest.raises(DatasetError, match="zebra"):
        load_dataset("image_folder", "test", tmp_path)
    with pytest.raises(DatasetError, match="needs --data-root \\(or PCD_DATA_ROOT\\)"):
        load_dataset("image_folder", "train")


# ---------------------------------------------------------------------------- digits, dispatch


def test_digits_split_80_20_disjoint():
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test")
    assert len(train) + len(test) == 1797
    assert abs(len(test) - 0.2 * 1797) <= 1
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == torch.uint8
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    assert train.num_classes == 10 and train.mean == test.mean

    # disjoint: digits has a few exact duplicate images, so compare (image, label) rows
    def rows(d):
        return [
            x.numpy().tobytes() + bytes([int(y)]) for x, y in zip(d.images, d.labels, strict=True)
        ]

    overlap = len(set(rows(train)) & set(rows(test)))
    assert overlap == 0
    # stratified: every class in both, in proportion
    counts = torch.bincount(test.labels, minlength=10)
    assert int(counts.min()) >= 34 and int(counts.max()) <= 38
    again = load_dataset("digits", "test")
    assert torch.equal(again.images, test.images)


def test_load_dataset_unknown_name_and_split():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'") as err:
        load_dataset("imagenet", "train")
    for name in DATASET_NAMES:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", "validation")


def test_imagedata_validates():
    with pytest.raises(ValueError):
        ImageData(
            images=torch.zeros(2, 1, 4, 4),
            labels=torch.zeros(2, dtype=torch.int64),
            num_classes=1,
            class_names=["a"],
            mean=(0.5,),
            std=(0.5,),
            name="x",
        )
    d = ImageData(
        images=torch.zeros(3, 1, 4, 4, dtype=torch.uint8),
        labels=torch.tensor([0, 1, 1]),
        num_classes=2,
        class_names=["a", "b"],
        mean=(0.5,),
        std=(0.5,),
        name="x",
    )
    sub = d.subset(torch.tensor([2, 0]))
    assert sub.labels.tolist() == [1, 0] and len(sub) == 2 and sub.image_size == (4, 4)


def test_default_locations(tmp_path, monkeypatch, idx_writer, cifar_writer):
    import pcd_core.data.datasets as ds

    deb = tmp_path / "usr-share-dataset-fashion-mnist"
    idx_writer(deb / "data" / "fashion", "t10k", 7, gz=True)
    monkeypatch.setattr(ds, "FASHION_MNIST_DEBIAN_DIR", deb)
    monkeypatch.setenv("PCD_DATA_ROOT", str(tmp_path / "data-root"))
    assert len(load_dataset("fashion_mnist", "test")) == 7  # found below the Debian folder
    with pytest.raises(DatasetError, match="dataset-fashion-mnist"):
        load_dataset("fashion_mnist", "train")
    cifar_writer(tmp_path / "data-root", "cifar10", n_train=10, n_test=4)
    assert len(load_dataset("cifar10", "test")) == 4  # found in $PCD_DATA_ROOT
