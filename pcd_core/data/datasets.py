"""In-memory image data sets: scikit-learn digits, CIFAR-10/100, MNIST-format IDX, image folders.

Every loader returns an :class:`ImageData` for a split ("train" or "test") and raises
:class:`~pcd_core.data.errors.DatasetError` (a ``ValueError``) naming the file and the problem
when its input is missing, truncated, corrupt or laid out wrongly.

Where the files are looked for when ``root`` is not given:

- CIFAR-10/100 and MNIST: the folder in the environment variable ``PCD_DATA_ROOT``, else
  ``./data``. ``pcd data download cifar100 --root DIR`` fetches the CIFAR archives.
- Fashion-MNIST: first ``/usr/share/datasets/fashion-mnist`` (where Debian's package
  ``dataset-fashion-mnist`` installs the IDX files; ``dpkg -L dataset-fashion-mnist`` lists
  them), then the data root above.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import struct
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pcd_core.data.errors import DatasetError
from pcd_core.data.splits import train_val_split

DATASET_NAMES: tuple[str, ...] = (
    "digits",
    "cifar10",
    "cifar100",
    "mnist",
    "fashion_mnist",
    "image_folder",
)
SPLITS: tuple[str, ...] = ("train", "test")
DATA_ROOT_ENV = "PCD_DATA_ROOT"
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")
# An image folder's layout: root/<split>/<class_name>/*.png|jpg|jpeg, split one of SPLITS.
IMAGE_FOLDER_LAYOUT = "<root>/train/<class_name>/*.png|jpg|jpeg and <root>/test/<class_name>/..."
IMAGE_FOLDER_NEEDS_ROOT = (
    f"image_folder needs --data-root (or {DATA_ROOT_ENV}): a folder laid out as "
    f"{IMAGE_FOLDER_LAYOUT}"
)

# Per-channel statistics of the training splits (the values commonly used in the literature).
_CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR10_STD = (0.2470, 0.2435, 0.2616)
_CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
_CIFAR100_STD = (0.2673, 0.2564, 0.2762)
_MNIST_MEAN, _MNIST_STD = (0.1307,), (0.3081,)
_FASHION_MEAN, _FASHION_STD = (0.2860,), (0.3530,)
_FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_STATS_SAMPLE = 2048  # images an image folder's mean/std are estimated from
_MODE_SAMPLE = 1024  # image headers an image folder's colour mode is decided from
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


@dataclass
class ImageData:
    """A labelled image data set held in memory.

    ``images`` is uint8 ``[N, C, H, W]``, ``labels`` int64 ``[N]`` in ``[0, num_classes)``;
    ``mean``/``std`` are per-channel statistics on the 0..1 scale used to normalise
    (``(x / 255 - mean) / std``); for every split they are those of the training split.
    """

    images: Tensor
    labels: Tensor
    num_classes: int
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    split: str = field(default="train")

    def __post_init__(self) -> None:
        if not isinstance(self.images, Tensor) or self.images.dtype != torch.uint8:
            raise ValueError("ImageData.images must be a uint8 tensor")
        if self.images.ndim != 4:
            raise ValueError(f"ImageData.images must be [N, C, H, W], got {self.images.shape}")
        if not isinstance(self.labels, Tensor) or self.labels.dtype != torch.int64:
            raise ValueError("ImageData.labels must be an int64 tensor")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"ImageData.labels must be [{self.images.shape[0]}], got {tuple(self.labels.shape)}"
            )
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        channels = self.images.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"ImageData.mean/std must have {channels} entries (one per channel)")
        if any(not s > 0 for s in self.std):
            raise ValueError(f"ImageData.std must be positive, got {self.std}")
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"ImageData has {self.num_classes} classes but {len(self.class_names)} names"
            )
        if self.labels.numel() and (
            int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes
        ):
            raise ValueError(f"ImageData.labels must lie in [0, {self.num_classes})")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        """Number of channels C."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """Image height and width."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, indices: Tensor | Sequence[int]) -> ImageData:
        """A copy holding only the samples at ``indices`` (same classes and statistics)."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        return ImageData(
            images=self.images.index_select(0, idx),
            labels=self.labels.index_select(0, idx),
            num_classes=self.num_classes,
            class_names=list(self.class_names),
            mean=self.mean,
            std=self.std,
            name=self.name,
            split=self.split,
        )


# --------------------------------------------------------------------------------------------
# helpers


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")


def default_data_root() -> Path:
    """The data root used when none is given: ``$PCD_DATA_ROOT`` or ``./data``."""
    return Path(os.environ.get(DATA_ROOT_ENV) or "data")


def channel_stats(images: Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``[N, C, H, W]`` images on the 0..1 scale."""
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError("channel_stats needs a non-empty [N, C, H, W] tensor")
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].to(torch.float64).div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0.0)
    std = var.sqrt().clamp_min(1e-3)  # a constant channel must not divide by zero
    return tuple(mean.tolist()), tuple(std.tolist())


def _check_labels(labels: np.ndarray, num_classes: int, path: Path) -> None:
    if labels.size == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise DatasetError(
            f"{path}: label {bad} out of range, expected 0..{num_classes - 1} "
            f"for {num_classes} classes"
        )


# --------------------------------------------------------------------------------------------
# scikit-learn digits


def load_digits_data(split: str, *, test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """scikit-learn's 1,797 8x8 digits (values 0..16 scaled to 0..255), one channel.

    Digits has no official test split: ``test_fraction`` of the images form a deterministic,
    stratified test split drawn with ``seed`` (80/20 by default); the rest is "train".
    """
    _check_split(split)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    scaled = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0))
    images = torch.from_numpy(np.clip(scaled, 0, 255).astype(np.uint8)[:, None])
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    train_idx, test_idx = train_val_split(labels, test_fraction, seed)
    mean, std = channel_stats(images.index_select(0, train_idx))
    idx = train_idx if split == "train" else test_idx
    return ImageData(
        images=images.index_select(0, idx).contiguous(),
        labels=labels.index_select(0, idx).contiguous(),
        num_classes=10,
        class_names=[str(i) for i in range(10)],
        mean=mean,
        std=std,
        name="digits",
        split=split,
    )


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (python pickle archives)


@dataclass(frozen=True)
class _CifarSpec:
    title: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


_CIFAR: dict[str, _CifarSpec] = {
    "cifar10": _CifarSpec(
        title="CIFAR-10",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        meta_file="batches.meta",
        label_key="labels",
        names_key="label_names",
        num_classes=10,
        mean=_CIFAR10_MEAN,
        std=_CIFAR10_STD,
    ),
    "cifar100": _CifarSpec(
        title="CIFAR-100",
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        meta_file="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        num_classes=100,
        mean=_CIFAR100_MEAN,
        std=_CIFAR100_STD,
    ),
}

# Globals a CIFAR pickle may reference: numpy array reconstruction, nothing else.
_PICKLE_ALLOWED: dict[tuple[str, str], tuple[str, str]] = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only, so a crafted file cannot run code."""

    def find_class(self, module: str, name: str) -> object:
        target = _PICKLE_ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(*target)


def _read_pickle(path: Path, what: str) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc
    try:
        obj = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # pickle raises many types on corrupt input
        raise DatasetError(
            f"{path}: truncated or corrupt {what} pickle ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a pickled dict in {what}, got {type(obj).__name__}")
    # Python 2 pickles have bytes keys; accept str keys too.
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _resolve_cifar_folder(spec: _CifarSpec, name: str, root: Path) -> Path:
    if (root / spec.folder).is_dir():
        return root / spec.folder
    if root.name == spec.folder or (root / spec.meta_file).is_file():
        return root
    raise DatasetError(
        f"{spec.title} folder not found: expected {root / spec.folder} "
        f"(with {', '.join((*spec.train_files, *spec.test_files, spec.meta_file))}); "
        f"run `pcd data download {name} --root {root}` to fetch it"
    )


def _read_cifar_batch(path: Path, spec: _CifarSpec, name: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DatasetError(
            f"{path}: missing {spec.title} file '{path.name}' (expected the standard "
            f"{spec.folder}/ layout); run `pcd data download {name} --root DIR` to fetch it"
        )
    d = _read_pickle(path, f"{spec.title} batch")
    for key in ("data", spec.label_key):
        if key not in d:
            raise DatasetError(
                f"{path}: wrong layout, key '{key}' missing (found: {', '.join(map(str, d))})"
            )
    try:
        data = np.asarray(d["data"])
        labels = np.asarray(d[spec.label_key])
    except Exception as exc:
        raise DatasetError(f"{path}: unreadable 'data'/labels ({exc})") from exc
    if data.ndim == 2 and data.shape[1] == 3 * 32 * 32:
        data = data.reshape(-1, 3, 32, 32)
    if data.ndim != 4 or data.shape[1:] != (3, 32, 32):
        raise DatasetError(
            f"{path}: wrong layout, 'data' has shape {data.shape}, expected (N, 3072)"
        )
    if data.dtype != np.uint8:
        if not np.issubdtype(data.dtype, np.integer) or (
            data.size and (data.min() < 0 or data.max() > 255)
        ):
            raise DatasetError(f"{path}: 'data' must hold uint8 pixels, got {data.dtype}")
        data = data.astype(np.uint8)
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise DatasetError(
            f"{path}: '{spec.label_key}' must be a list of integers, got {labels.dtype} "
            f"of shape {labels.shape}"
        )
    if labels.shape[0] != data.shape[0]:
        raise DatasetError(
            f"{path}: size mismatch, {data.shape[0]} images but {labels.shape[0]} labels"
        )
    labels = labels.astype(np.int64)
    _check_labels(labels, spec.num_classes, path)
    return data, labels


def _read_cifar_names(path: Path, spec: _CifarSpec, name: str) -> list[str]:
    if not path.is_file():
        raise DatasetError(
            f"{path}: missing {spec.title} metadata file '{path.name}'; "
            f"run `pcd data download {name} --root DIR` to fetch it"
        )
    d = _read_pickle(path, f"{spec.title} metadata")
    raw = d.get(spec.names_key)
    if not isinstance(raw, (list, tuple)) or len(raw) != spec.num_classes:
        raise DatasetError(
            f"{path}: wrong layout, expected '{spec.names_key}' with {spec.num_classes} names"
        )
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in raw]


def load_cifar(name: str, split: str, root: str | Path | None = None) -> ImageData:
    """CIFAR-10 (``name="cifar10"``) or CIFAR-100 (``"cifar100"``, fine labels).

    ``root`` is the folder holding ``cifar-10-batches-py/`` or ``cifar-100-python/`` (or
    that folder itself); default: ``$PCD_DATA_ROOT`` or ``./data``.
    """
    _check_split(split)
    if name not in _CIFAR:
        raise ValueError(f"not a CIFAR data set: {name!r}; expected cifar10 or cifar100")
    spec = _CIFAR[name]
    folder = _resolve_cifar_folder(spec, name, Path(root) if root else default_data_root())
    class_names = _read_cifar_names(folder / spec.meta_file, spec, name)
    files = spec.train_files if split == "train" else spec.test_files
    parts = [_read_cifar_batch(folder / f, spec, name) for f in files]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return ImageData(
        images=torch.from_numpy(np.ascontiguousarray(images)),
        labels=torch.from_numpy(np.ascontiguousarray(labels)),
        num_classes=spec.num_classes,
        class_names=class_names,
        mean=spec.mean,
        std=spec.std,
        name=name,
        split=split,
    )


# --------------------------------------------------------------------------------------------
# MNIST-format IDX files

_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed), checking its magic number and size."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: cannot read IDX file ({exc})") from exc
    if len(raw) < 4:
        raise DatasetError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    magic = struct.unpack(">I", raw[:4])[0]
    type_code, ndim = raw[2], raw[3]
    if raw[0] != 0 or raw[1] != 0 or type_code not in _IDX_TYPES or ndim == 0:
        raise DatasetError(f"{path}: wrong magic number 0x{magic:08x}, not an IDX file")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_TYPES[type_code]
    expected = math.prod(dims) * dtype.itemsize
    actual = len(raw) - header
    if actual != expected:
        raise DatasetError(
            f"{path}: size mismatch, header says {dims} = {expected} bytes of data, "
            f"file has {actual}" + (" (truncated)" if actual < expected else "")
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _idx_candidates(kind: str, prefix: str) -> list[str]:
    ndim = 3 if kind == "images" else 1
    names = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    return [n + ext for n in names for ext in ("", ".gz")]


def _idx_search_dirs(name: str, root: Path | None) -> list[Path]:
    sub = "FashionMNIST" if name == "fashion_mnist" else "MNIST"
    bases: list[Path] = []
    if root is not None:
        bases.append(Path(root))
    else:
        if name == "fashion_mnist" and FASHION_MNIST_DEBIAN_DIR.is_dir():
            # wherever the package put them below its folder
            found = sorted(FASHION_MNIST_DEBIAN_DIR.rglob("*-images*idx3-ubyte*"))
            bases += [FASHION_MNIST_DEBIAN_DIR, *dict.fromkeys(f.parent for f in found)]
        bases.append(default_data_root())
    dirs: list[Path] = []
    for b in bases:
        dirs += [b, b / "raw", b / sub / "raw", b / sub, b / name, b / name.replace("_", "-")]
    return dirs


def load_idx_dataset(name: str, split: str, root: str | Path | None = None) -> ImageData:
    """MNIST (``name="mnist"``) or Fashion-MNIST (``"fashion_mnist"``) from IDX files.

    Looks for ``train-images-idx3-ubyte[.gz]``/``train-labels-idx1-ubyte[.gz]`` (or ``t10k-``
    for "test") in ``root`` and its ``raw/``, ``MNIST/raw/``, ``FashionMNIST/raw/`` folders.
    Without ``root``, Fashion-MNIST is looked for in ``/usr/share/datasets/fashion-mnist``
    (Debian's ``dataset-fashion-mnist``) first, then in ``$PCD_DATA_ROOT`` or ``./data``.
    """
    _check_split(split)
    if name not in ("mnist", "fashion_mnist"):
        raise ValueError(f"not an IDX data set: {name!r}; expected mnist or fashion_mnist")
    prefix = "train" if split == "train" else "t10k"
    dirs = _idx_search_dirs(name, Path(root) if root else None)
    image_path: Path | None = None
    for d in dirs:
        for cand in _idx_candidates("images", prefix):
            if (d / cand).is_file():
                image_path = d / cand
                break
        if image_path is not None:
            break
    if image_path is None:
        searched = ", ".join(dict.fromkeys(str(d) for d in dirs))
        hint = ""
        if name == "fashion_mnist" and root is None:
            hint = (
                f"; pass root, or install Debian's dataset-fashion-mnist "
                f"(looked for under {FASHION_MNIST_DEBIAN_DIR})"
            )
        raise DatasetError(
            f"{name} {split} images not found: expected {prefix}-images-idx3-ubyte[.gz] "
            f"in one of: {searched}{hint}"
        )
    label_path = next(
        (
            image_path.parent / c
            for c in _idx_candidates("labels", prefix)
            if (image_path.parent / c).is_file()
        ),
        None,
    )
    if label_path is None:
        raise DatasetError(
            f"{image_path.parent / (prefix + '-labels-idx1-ubyte')}[.gz]: missing label file "
            f"next to {image_path.name}"
        )
    images = read_idx(image_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(
            f"{image_path}: expected an image file (magic 0x00000803, uint8 [N, H, W]), "
            f"got {images.dtype} data of shape {images.shape}"
        )
    labels = read_idx(label_path)
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DatasetError(
            f"{label_path}: expected a label file (magic 0x00000801, uint8 [N]), "
            f"got {labels.dtype} data of shape {labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise DatasetError(
            f"{label_path}: size mismatch, {labels.shape[0]} labels for "
            f"{images.shape[0]} images in {image_path.name}"
        )
    labels64 = labels.astype(np.int64)
    _check_labels(labels64, 10, label_path)
    fashion = name == "fashion_mnist"
    return ImageData(
        images=torch.from_numpy(images[:, None].copy()),
        labels=torch.from_numpy(labels64),
        num_classes=10,
        class_names=list(_FASHION_CLASSES) if fashion else [str(i) for i in range(10)],
        mean=_FASHION_MEAN if fashion else _MNIST_MEAN,
        std=_FASHION_STD if fashion else _MNIST_STD,
        name=name,
        split=split,
    )


# --------------------------------------------------------------------------------------------
# image folders: root/<split>/<class_name>/*.png|jpg|jpeg


@dataclass(frozen=True)
class FolderIndex:
    """The files of one split of an image folder, with their labels and colour mode."""

    root: Path
    split: str
    class_names: list[str]
    files: list[Path]
    labels: list[int]
    mode: str  # "L" or "RGB"
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS


def _list_classes(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _is_image(p: Path, extensions: tuple[str, ...]) -> bool:
    return p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")


def _image_mode(path: Path) -> str:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.mode
    except Exception as exc:
        raise DatasetError(f"{path}: unreadable image file ({exc})") from exc


def _detect_mode(files: Sequence[Path], sample: int = _MODE_SAMPLE) -> str:
    if not files:
        return "RGB"
    step = max(1, math.ceil(len(files) / sample))
    modes = {_image_mode(f) for f in files[::step]}
    return "L" if modes <= _GRAY_MODES else "RGB"


def _scan_split(
    root: Path, split: str, class_names: list[str], extensions: tuple[str, ...]
) -> tuple[list[Path], list[int]]:
    split_dir = root / split
    files: list[Path] = []
    labels: list[int] = []
    present = _list_classes(split_dir)
    unknown = sorted(set(present) - set(class_names))
    if unknown:
        raise DatasetError(
            f"{split_dir}: class folder(s) {', '.join(unknown)} not in the training classes "
            f"({', '.join(class_names)})"
        )
    for label, cls in enumerate(class_names):
        cls_dir = split_dir / cls
        if not cls_dir.is_dir():
            continue
        found = sorted(p for p in cls_dir.iterdir() if _is_image(p, extensions))
        files += found
        labels += [label] * len(found)
    return files, labels


def scan_image_folder(
    root: str | Path,
    split: str,
    *,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    mode: str | None = None,
) -> FolderIndex:
    """List the images of ``root/<split>/<class>/*`` (classes: sorted folder names of
    ``root/train`` when it exists, else of ``root/<split>``) without decoding them.

    ``mode`` ("L" or "RGB") defaults to "L" when the sampled training images are all grayscale.
    """
    root = Path(root)
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetError(
            f"{split_dir}: image folder split not found; expected {root}/{split}/<class_name>/"
            f"*{'|*'.join(exts)}"
        )
    ref_dir = root / "train" if (root / "train").is_dir() else split_dir
    class_names = _list_classes(ref_dir)
    if not class_names:
        raise DatasetError(f"{ref_dir}: no class folders; expected {ref_dir}/<class_name>/*.png")
    files, labels = _scan_split(root, split, class_names, exts)
    if not files:
        raise DatasetError(
            f"{split_dir}: no images found (extensions {', '.join(exts)}) in its class folders"
        )
    if mode is None:
        ref_files = files
        if ref_dir != split_dir:
            ref_files = _scan_split(root, "train", class_names, exts)[0] or files
        mode = _detect_mode(ref_files)
    if mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L' or 'RGB', got {mode!r}")
    return FolderIndex(root, split, class_names, files, labels, mode, exts)


def _as_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        size = (image_size, image_size)
    else:
        size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"image_size must be a positive int or (height, width), got {image_size}")
    return size  # type: ignore[return-value]


def decode_image(
    path: str | Path, mode: str, size: tuple[int, int], *, resize: bool = True
) -> np.ndarray:
    """Decode one image file to uint8 ``[C, H, W]`` in ``mode`` ("L"/"RGB"), resized to ``size``
    (height, width) with bilinear filtering; with ``resize=False`` an image of another size is
    an error (the folder's images must share one size). DatasetError names the file if it is
    unreadable."""
    from PIL import Image

    path = Path(path)
    h, w = size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                conv = img.convert(mode)
                if conv.size != (w, h) and resize:
                    conv = conv.resize((w, h), Image.Resampling.BILINEAR)
                arr = np.array(conv, dtype=np.uint8)  # a writable copy
    except Exception as exc:
        raise DatasetError(f"{path}: unreadable image file ({type(exc).__name__}: {exc})") from exc
    if arr.shape[:2] != (h, w):
        raise DatasetError(_size_mismatch(path, (arr.shape[0], arr.shape[1]), size))
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def _size_mismatch(path: Path, got: tuple[int, int], want: tuple[int, int]) -> str:
    return (
        f"{path}: image is {got[0]}x{got[1]} (height x width), the folder's other images are "
        f"{want[0]}x{want[1]}; the images of an image folder must share one size, or pass "
        "--image-size N (image_size: N) to resize them all to NxN"
    )


def _header_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            w, h = img.size
    except Exception as exc:
        raise DatasetError(f"{path}: unreadable image file ({exc})") from exc
    return h, w


def native_size(files: Sequence[Path], sample: int = _MODE_SAMPLE) -> tuple[int, int]:
    """The (height, width) an image folder's images share, read from the headers of up to
    ``sample`` evenly spaced files (every file is checked again when it is decoded)."""
    if not files:
        raise DatasetError("no images to take the image size from")
    step = max(1, math.ceil(len(files) / sample))
    first = _header_size(files[0])
    for f in files[::step]:
        size = _header_size(f)
        if size != first:
            raise DatasetError(_size_mismatch(f, size, first))
    return first


def folder_image_size(
    index: FolderIndex, image_size: int | Sequence[int] | None
) -> tuple[tuple[int, int], bool]:
    """The size images of ``index`` are decoded to and whether they are resized to it:
    ``image_size`` when given, else the training images' own size (all must share it)."""
    if image_size is not None:
        return _as_size(image_size), True
    ref = index.files
    if index.split != "train" and (index.root / "train").is_dir():
        ref = _scan_split(index.root, "train", index.class_names, index.extensions)[0] or ref
    return native_size(ref), False


def _stats_positions(n: int, sample: int = _STATS_SAMPLE) -> list[int]:
    if n <= sample:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, sample)})


def folder_stats(
    index: FolderIndex,
    size: tuple[int, int],
    decoded: Tensor | None = None,
    *,
    resize: bool = True,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std of an image folder, from (at most 2,048 evenly spaced) training images.

    Uses the split of ``index`` itself when the folder has no training images; ``decoded`` may
    hold the already decoded images of ``index``.
    """
    ref, ref_decoded = index, decoded
    if index.split != "train" and (index.root / "train").is_dir():
        files, labels = _scan_split(index.root, "train", index.class_names, index.extensions)
        if files:
            ref = FolderIndex(
                index.root, "train", index.class_names, files, labels, index.mode, index.extensions
            )
            ref_decoded = None
    pos = _stats_positions(len(ref.files))
    if ref_decoded is not None:
        sample = ref_decoded.index_select(0, torch.tensor(pos, dtype=torch.int64))
    else:
        sample = torch.from_numpy(
            np.stack([decode_image(ref.files[i], ref.mode, size, resize=resize) for i in pos])
        )
    return channel_stats(sample)


def load_image_folder(
    root: str | Path,
    split: str,
    *,
    image_size: int | Sequence[int] | None = None,
    mode: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> ImageData:
    """Decode ``root/<split>/<class_name>/*.png|jpg|jpeg`` into memory (Pillow), as RGB or,
    when all images are grayscale, L, resized to ``image_size`` when it is given; by default
    at their own size, which the images must share (a DatasetError names one that differs).

    ``mean``/``std`` default to estimates from the training split. For folders too large for
    memory use :class:`pcd_core.data.loader.StreamingImageFolder` instead.
    """
    _check_split(split)
    index = scan_image_folder(root, split, extensions=extensions, mode=mode)
    size, resize = folder_image_size(index, image_size)
    c = 1 if index.mode == "L" else 3
    images = np.empty((len(index.files), c, *size), dtype=np.uint8)
    for i, f in enumerate(index.files):
        images[i] = decode_image(f, index.mode, size, resize=resize)
    images_t = torch.from_numpy(images)
    if mean is None or std is None:
        est_mean, est_std = folder_stats(index, size, images_t, resize=resize)
        mean = est_mean if mean is None else mean
        std = est_std if std is None else std
    return ImageData(
        images=images_t,
        labels=torch.tensor(index.labels, dtype=torch.int64),
        num_classes=len(index.class_names),
        class_names=list(index.class_names),
        mean=tuple(mean),
        std=tuple(std),
        name="image_folder",
        split=split,
    )


# --------------------------------------------------------------------------------------------
# dispatch


def load_dataset(name: str, split: str, root: str | Path | None = None, **kw: object) -> ImageData:
    """Load split ``split`` ("train"/"test") of data set ``name``.

    ``name`` is one of digits (embedded, ``root`` ignored), cifar10, cifar100, mnist,
    fashion_mnist, image_folder (``root`` required); ``kw`` go to the specific loader
    (e.g. ``image_size`` for image_folder, ``test_fraction``/``seed`` for digits).
    """
    key = name.strip().lower().replace("-", "_")
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASET_NAMES)}")
    _check_split(split)
    if key == "digits":
        return load_digits_data(split, **kw)  # type: ignore[arg-type]
    if key in _CIFAR:
        return load_cifar(key, split, root, **kw)  # type: ignore[arg-type]
    if key in ("mnist", "fashion_mnist"):
        return load_idx_dataset(key, split, root, **kw)  # type: ignore[arg-type]
    if root is None:
        raise DatasetError(IMAGE_FOLDER_NEEDS_ROOT)
    return load_image_folder(root, split, **kw)  # type: ignore[arg-type]


def random_image_data(
    n: int, classes: int = 100, *, side: int = 32, channels: int = 3, seed: int = 0
) -> ImageData:
    """Random uint8 images with random labels, CIFAR-shaped by default: for benchmarks and
    smoke tests that measure speed, not accuracy."""
    gen = torch.Generator().manual_seed(seed)
    return ImageData(
        images=torch.randint(0, 256, (n, channels, side, side), generator=gen, dtype=torch.uint8),
        labels=torch.randint(0, classes, (n,), generator=gen),
        num_classes=classes,
        class_names=[str(i) for i in range(classes)],
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        name="random",
    )
