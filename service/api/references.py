"""What a spec refers to, checked when it is submitted: the data set is where the driver will
look and its classes fit the method, a named teacher checkpoint exists. Errors name the field
and never a server path."""

from __future__ import annotations

from pathlib import Path

from pcd_core.data.errors import DatasetError
from pcd_core.data.probe import dataset_classes
from pcd_core.methods import needs_teacher
from search_spaces.schema import StudySpec
from service.api.errors import ApiError
from service.settings import Settings


def check_references(spec: StudySpec, settings: Settings) -> None:
    """ApiError 422 naming the field when the study could only fail at run time."""
    num_classes = _classes(spec, settings)
    try:
        spec.check_classes(num_classes)
    except ValueError as err:
        raise ApiError(422, f"{err} (data {spec.data.name!r} has {num_classes} classes)") from None
    if needs_teacher(spec.method) and spec.teacher.checkpoint is not None:
        if not (settings.teacher_root / spec.teacher.checkpoint).is_file():
            raise ApiError(
                422,
                f"teacher.checkpoint: no teacher {spec.teacher.checkpoint!r} under the "
                "teacher root",
            )


def _classes(spec: StudySpec, settings: Settings) -> int:
    root: Path | None = settings.data_root / spec.data.root if spec.data.root else None
    field = "data.root" if spec.data.root else "data.name"
    try:
        return dataset_classes(spec.data.name, root, default_root=settings.data_root)
    except DatasetError as err:
        where = f"data root's folder {spec.data.root!r}" if spec.data.root else "data root"
        raise ApiError(422, f"{field}: {err} (in the {where})") from None
