"""Batch iteration: an in-memory device loader and a streaming path for large image folders.

Both loaders share one contract: ``loader.epoch(epoch)`` yields :class:`Batch` objects and is a
deterministic function of ``(seed, epoch)``. The permutation and every augmentation draw (a
crop offset per sample after zero-padding by ``pad`` pixels, and a horizontal flip with
p = 0.5; either or both, see :data:`Augment`) come from a CPU ``torch.Generator`` seeded
from ``(seed, epoch)`` and are moved to the device once per epoch; the augmentation itself
is a single batched gather on the device.

- :class:`DeviceLoader` keeps the whole data set (or a subset) on the device as uint8: the fast
  path for everything that fits in device memory (CIFAR-100 train is 150 MB).
- :class:`StreamingImageFolder` + :class:`StreamingLoader` decode images lazily with Pillow in
  ``DataLoader`` worker processes: the path for image folders too large for memory. Given the
  same images, seed and epoch it yields the same batches as ``DeviceLoader``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from pcd_core.data.datasets import (
    DATASET_NAMES,
    IMAGE_EXTENSIONS,
    ImageData,
    decode_image,
    folder_image_size,
    folder_stats,
    scan_image_folder,
)

Augment = Literal["none", "crop", "flip", "crop+flip"]
AUGMENTS: tuple[str, ...] = get_args(Augment)
# The CIFAR recipe crops and flips; everything else is left as it is by default: flipping a
# digit, a letter or a left/right label changes what it is, and an image folder's labels are
# the user's (turn augmentation on with --augment / augment: when they allow it).
_AUGMENTED = frozenset({"cifar10", "cifar100"})


def default_augment(name: str) -> Augment:
    """The augmentation data set ``name`` is trained with by default.

    "crop+flip" for cifar10 and cifar100 (the recipe); "none" for digits, mnist,
    fashion_mnist and image_folder (flips and crops can change what an image shows).
    """
    key = name.strip().lower().replace("-", "_")
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASET_NAMES)}")
    return "crop+flip" if key in _AUGMENTED else "none"


def as_augment(value: str | bool) -> Augment:
    """An augmentation name from a name or an old boolean (True: "crop+flip", False: "none")."""
    if isinstance(value, bool):
        return "crop+flip" if value else "none"
    key = str(value).strip().lower().replace(" ", "")
    if key == "flip+crop":
        key = "crop+flip"
    if key not in AUGMENTS:
        raise ValueError(f"unknown augmentation {value!r}; choose one of {', '.join(AUGMENTS)}")
    return key  # type: ignore[return-value]


@dataclass(frozen=True)
class Batch:
    """One batch: normalised float ``images`` [B, C, H, W], int64 ``labels`` [B], int64
    ``index`` [B] (positions in the ImageData / dataset), and ``step``, the batch's number
    within its epoch (0-based)."""

    images: Tensor
    labels: Tensor
    index: Tensor
    step: int


@dataclass(frozen=True)
class EpochPlan:
    """All the randomness of one epoch, drawn on the CPU: ``order`` (positions into the
    loader's samples, in iteration order) and, per iteration slot, ``offsets`` [n, 2]
    (crop row/column in the padded image, 0..2*pad) and ``flips`` [n] (bool)."""

    order: Tensor
    offsets: Tensor | None
    flips: Tensor | None

    def to(self, device: torch.device) -> EpochPlan:
        """The same plan on ``device``."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return EpochPlan(move(self.order), move(self.offsets), move(self.flips))  # type: ignore[arg-type]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator seeded from (seed, epoch) through numpy's SeedSequence."""
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}")
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def make_epoch_plan(
    n: int, seed: int, epoch: int, *, shuffle: bool, augment: Augment | bool, pad: int = 4
) -> EpochPlan:
    """Draw the permutation and augmentation parameters of ``epoch`` for ``n`` samples.

    "crop" draws offsets and flips nothing; "flip" draws flips and keeps the centre
    (offsets = ``pad``); "none" draws neither. "crop+flip" draws the same numbers as before
    the other modes existed (True), so its batches are unchanged."""
    mode = as_augment(augment)
    gen = epoch_generator(seed, epoch)
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    if mode == "none":
        return EpochPlan(order, None, None)
    if mode == "flip":
        offsets = torch.full((n, 2), pad, dtype=torch.int64)
    else:
        offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen)
    if mode == "crop":
        flips = torch.zeros(n, dtype=torch.bool)
    else:
        flips = torch.rand(n, generator=gen) < 0.5
    return EpochPlan(order, offsets, flips)


def augment_batch(images: Tensor, offsets: Tensor, flips: Tensor, pad: int = 4) -> Tensor:
    """Random crop with zero padding, then horizontal flip, for a whole batch at once.

    ``images`` [B, C, H, W] (any dtype); ``offsets`` [B, 2] in ``0..2*pad`` (top-left corner of
    the crop in the image padded by ``pad`` zeros on each side); ``flips`` [B] bool. Result
    ``out[b] = flip_b(pad(images[b])[:, r:r+H, c:c+W])``, computed by one ``torch.gather`` on
    the images' device (no loop over samples, no host synchronisation).
    """
    b, c, h, w = images.shape
    dev = images.device
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
    wp = w + 2 * pad
    rows = offsets[:, 0:1] + torch.arange(h, device=dev)  # [B, H]
    ar_w = torch.arange(w, device=dev)
    cols = offsets[:, 1:2] + torch.where(flips[:, None], (w - 1) - ar_w, ar_w)  # [B, W]
    flat = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(padded.reshape(b, c, -1), 2, flat).reshape(b, c, h, w)


class _Normaliser:
    """``(x / 255 - mean) / std`` as one fused multiply-add on the device."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device) -> None:
        m = torch.tensor(mean, dtype=torch.float64)
        s = torch.tensor(std, dtype=torch.float64)
        self.scale = (1.0 / (255.0 * s)).to(torch.float32).view(1, -1, 1, 1).to(device)
        self.shift = (-m / s).to(torch.float32).view(1, -1, 1, 1).to(device)

    def __call__(self, x: Tensor, channels_last: bool) -> Tensor:
        out = torch.addcmul(self.shift, x.to(torch.float32), self.scale)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return out.contiguous(memory_format=fmt)


def _num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def _check_common(batch_size: int, seed: int, pad: int) -> None:
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")


def _as_indices(indices: Tensor | Sequence[int] | None, n: int) -> Tensor:
    if indices is None:
        return torch.arange(n, dtype=torch.int64)
    idx = torch.as_tensor(indices).reshape(-1)
    if idx.is_floating_point() or idx.dtype == torch.bool:
        raise ValueError(f"indices must be integers, got {idx.dtype}")
    idx = idx.to("cpu", torch.int64)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise ValueError(f"indices out of range for a data set of {n} samples")
    return idx


class _EpochLoader:
    """What both loaders share: the subset, the batch geometry, the per-epoch plan (a
    function of (seed, epoch) only) and the normalisation."""

    def __init__(
        self,
        data: ImageData | StreamingImageFolder,
        indices: Tensor | Sequence[int] | None,
        batch_size: int,
        *,
        shuffle: bool,
        augment: Augment | bool,
        seed: int,
        device: torch.device | str,
        drop_last: bool,
        channels_last: bool,
        pad: int,
    ) -> None:
        _check_common(batch_size, seed, pad)
        self.device = torch.device(device)
        self.indices = _as_indices(indices, len(data))
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment: Augment = as_augment(augment)
        self.seed = int(seed)
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.pad = int(pad)
        self.num_classes = data.num_classes
        self.mean, self.std = data.mean, data.std
        self._normalise = _Normaliser(data.mean, data.std, self.device)

    @property
    def num_samples(self) -> int:
        """Samples per epoch before ``drop_last``."""
        return int(self.indices.numel())

    def __len__(self) -> int:
        return _num_batches(self.num_samples, self.batch_size, self.drop_last)

    def _plan(self, epoch: int) -> EpochPlan:
        return make_epoch_plan(
            self.num_samples,
            self.seed,
            epoch,
            shuffle=self.shuffle,
            augment=self.augment,
            pad=self.pad,
        )


class DeviceLoader(_EpochLoader):
    """Iterates over (a subset of) an :class:`ImageData` held on ``device`` as uint8.

    ``epoch(e)`` yields :class:`Batch` es whose order and augmentation depend only on
    ``(seed, e)``; ``len(loader)`` is the number of batches per epoch. ``augment`` ("none",
    "crop", "flip", "crop+flip"; True/False stand for "crop+flip"/"none"): crop pads by
    ``pad`` (default 4) zero pixels and crops back to H x W at a random offset; flip mirrors
    horizontally with p = 0.5. Images are normalised with the data set's mean/std.
    """

    def __init__(
        self,
        data: ImageData,
        indices: Tensor | None,
        batch_size: int,
        *,
        shuffle: bool,
        augment: Augment | bool,
        seed: int,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
        channels_last: bool = False,
        pad: int = 4,
    ) -> None:
        super().__init__(
            data,
            indices,
            batch_size,
            shuffle=shuffle,
            augment=augment,
            seed=seed,
            device=device,
            drop_last=drop_last,
            channels_last=channels_last,
            pad=pad,
        )
        self.images = data.images.index_select(0, self.indices).to(self.device)
        self.labels = data.labels.index_select(0, self.indices).to(self.device)
        self._dataset_index = self.indices.to(self.device)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of ``epoch``: a deterministic function of (seed, epoch)."""
        return self._iterate(self._plan(epoch).to(self.device))

    def _iterate(self, plan: EpochPlan) -> Iterator[Batch]:
        bs = self.batch_size
        for step in range(len(self)):
            pos = plan.order[step * bs : (step + 1) * bs]
            x = self.images.index_select(0, pos)
            if plan.offsets is not None and plan.flips is not None:
                x = augment_batch(
                    x,
                    plan.offsets[step * bs : (step + 1) * bs],
                    plan.flips[step * bs : (step + 1) * bs],
                    self.pad,
                )
            yield Batch(
                images=self._normalise(x, self.channels_last),
                labels=self.labels.index_select(0, pos),
                index=self._dataset_index.index_select(0, pos),
                step=step,
            )


# --------------------------------------------------------------------------------------------
# streaming path for large image folders


class StreamingImageFolder(Dataset):
    """``root/<split>/<class_name>/*.png|jpg|jpeg`` decoded lazily, one image per item.

    Items are ``(uint8 [C, H, W] tensor, label)``. Images keep their own (shared) size unless
    ``image_size`` is given. Classes, colour mode and mean/std follow
    :func:`pcd_core.data.datasets.load_image_folder` (statistics from at most 2,048 training
    images, decoded once here unless ``mean``/``std`` are given). Use it through
    :class:`StreamingLoader` for folders that do not fit in memory.
    """

    name = "image_folder"

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        image_size: int | Sequence[int] | None = None,
        mode: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ) -> None:
        self.index = scan_image_folder(root, split, extensions=extensions, mode=mode)
        self.size, self.resize = folder_image_size(self.index, image_size)
        self.split = split
        self.files = self.index.files
        self.labels = torch.tensor(self.index.labels, dtype=torch.int64)
        self.class_names = list(self.index.class_names)
        self.num_classes = len(self.class_names)
        self.mode = self.index.mode
        self.channels = 1 if self.mode == "L" else 3
        if mean is None or std is None:
            est_mean, est_std = folder_stats(self.index, self.size, resize=self.resize)
            mean = est_mean if mean is None else mean
            std = est_std if std is None else std
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        img = decode_image(self.files[i], self.mode, self.size, resize=self.resize)
        return torch.from_numpy(img), int(self.index.labels[i])


def _collate(items: list[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
    images = torch.stack([it[0] for it in items])
    labels = torch.tensor([it[1] for it in items], dtype=torch.int64)
    return images, labels


class _EpochBatches:
    """A batch sampler whose batches are replaced at the start of every epoch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class StreamingLoader(_EpochLoader):
    """Like :class:`DeviceLoader`, but decodes each batch in ``num_workers`` ``DataLoader``
    worker processes (0: in the main process): the path for image folders too large for memory.

    Same arguments and ``epoch(e)`` contract as :class:`DeviceLoader`: it yields the same
    :class:`Batch` es as a ``DeviceLoader`` over the same decoded images would.
    """

    def __init__(
        self,
        dataset: StreamingImageFolder,
        indices: Tensor | Sequence[int] | None,
        batch_size: int,
        *,
        shuffle: bool,
        augment: Augment | bool,
        seed: int,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
        channels_last: bool = False,
        pad: int = 4,
        num_workers: int = 2,
        prefetch_factor: int | None = None,
    ) -> None:
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        super().__init__(
            dataset,
            indices,
            batch_size,
            shuffle=shuffle,
            augment=augment,
            seed=seed,
            device=device,
            drop_last=drop_last,
            channels_last=channels_last,
            pad=pad,
        )
        self.dataset = dataset
        self._sampler = _EpochBatches()
        self._loader = DataLoader(
            dataset,
            batch_sampler=self._sampler,
            num_workers=num_workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            persistent_workers=num_workers > 0,
            prefetch_factor=prefetch_factor if num_workers > 0 else None,
        )

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of ``epoch``: a deterministic function of (seed, epoch)."""
        plan = self._plan(epoch)
        order = self.indices.index_select(0, plan.order)  # dataset indices in iteration order
        bs = self.batch_size
        self._sampler.batches = [order[i * bs : (i + 1) * bs].tolist() for i in range(len(self))]
        return self._iterate(plan.to(self.device), order.to(self.device))

    def _iterate(self, plan: EpochPlan, order: Tensor) -> Iterator[Batch]:
        bs = self.batch_size
        for step, (images, labels) in enumerate(self._loader):
            x = images.to(self.device, non_blocking=True)
            sl = slice(step * bs, (step + 1) * bs)
            if plan.offsets is not None and plan.flips is not None:
                x = augment_batch(x, plan.offsets[sl], plan.flips[sl], self.pad)
            yield Batch(
                images=self._normalise(x, self.channels_last),
                labels=labels.to(self.device, non_blocking=True),
                index=order[sl],
                step=step,
            )
