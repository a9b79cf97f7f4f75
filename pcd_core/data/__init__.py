"""Data layer: datasets held as uint8 tensors, deterministic device-side batching, downloads.

- :func:`load_dataset` (digits, cifar10, cifar100, mnist, fashion_mnist, image_folder) ->
  :class:`ImageData`; bad input raises :class:`DatasetError`.
- :func:`train_val_split`: deterministic stratified split.
- :class:`DeviceLoader`: whole data set on the device, ``epoch(e)`` yields :class:`Batch` es.
- :class:`StreamingImageFolder` + :class:`StreamingLoader`: lazy decoding for large folders.
- :func:`download_dataset`: fetch and verify the CIFAR archives (``pcd data download``).
"""

from pcd_core.data.datasets import (
    DATASET_NAMES,
    FASHION_MNIST_DEBIAN_DIR,
    SPLITS,
    ImageData,
    channel_stats,
    default_data_root,
    load_cifar,
    load_dataset,
    load_digits_data,
    load_idx_dataset,
    load_image_folder,
    random_image_data,
    read_idx,
)
from pcd_core.data.download import ARCHIVES, download_dataset
from pcd_core.data.errors import DatasetError
from pcd_core.data.loader import (
    AUGMENTS,
    Augment,
    Batch,
    DeviceLoader,
    StreamingImageFolder,
    StreamingLoader,
    as_augment,
    augment_batch,
    default_augment,
    make_epoch_plan,
)
from pcd_core.data.splits import train_val_split

__all__ = [
    "ARCHIVES",
    "AUGMENTS",
    "DATASET_NAMES",
    "FASHION_MNIST_DEBIAN_DIR",
    "SPLITS",
    "Augment",
    "Batch",
    "DatasetError",
    "DeviceLoader",
    "ImageData",
    "StreamingImageFolder",
    "StreamingLoader",
    "as_augment",
    "augment_batch",
    "channel_stats",
    "default_augment",
    "default_data_root",
    "download_dataset",
    "load_cifar",
    "load_dataset",
    "load_digits_data",
    "load_idx_dataset",
    "load_image_folder",
    "make_epoch_plan",
    "random_image_data",
    "read_idx",
    "train_val_split",
]
