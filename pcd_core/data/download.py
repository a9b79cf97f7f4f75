"""Download, verify and unpack the official CIFAR-10/100 python archives."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx

from pcd_core.data.datasets import load_cifar
from pcd_core.data.errors import DatasetError


@dataclass(frozen=True)
class ArchiveSpec:
    """Where an archive lives, its md5, and the folder it unpacks to."""

    url: str
    md5: str
    filename: str
    folder: str


ARCHIVES: dict[str, ArchiveSpec] = {
    "cifar10": ArchiveSpec(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        filename="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
    ),
    "cifar100": ArchiveSpec(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        filename="cifar-100-python.tar.gz",
        folder="cifar-100-python",
    ),
}


def _loads(name: str, folder: Path) -> bool:
    try:
        load_cifar(name, "test", folder.parent)
        load_cifar(name, "train", folder.parent)
    except DatasetError:
        return False
    return True


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    """The hex md5 digest of a file."""
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, dest: Path, expected_md5: str, *, progress: bool, timeout: float) -> None:
    """Stream ``url`` into a temporary file beside ``dest``; rename it to ``dest`` only when it
    is complete and its md5 is ``expected_md5``, else remove it and raise DatasetError."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    h = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as resp:
                    if resp.status_code != 200:
                        raise DatasetError(
                            f"download of {url} failed: HTTP {resp.status_code} "
                            f"{resp.reason_phrase}".rstrip()
                        )
                    total = int(resp.headers.get("content-length") or 0) or None
                    if progress:
                        from rich.progress import (
                            BarColumn,
                            DownloadColumn,
                            Progress,
                            TextColumn,
                            TimeRemainingColumn,
                            TransferSpeedColumn,
                        )

                        with Progress(
                            TextColumn("[bold]{task.description}"),
                            BarColumn(),
                            DownloadColumn(),
                            TransferSpeedColumn(),
                            TimeRemainingColumn(),
                            transient=True,
                        ) as bar:
                            task = bar.add_task(dest.name, total=total)
                            for block in resp.iter_bytes(1 << 16):
                                out.write(block)
                                h.update(block)
                                bar.update(task, advance=len(block))
                    else:
                        for block in resp.iter_bytes(1 << 16):
                            out.write(block)
                            h.update(block)
            except httpx.HTTPError as exc:
                raise DatasetError(
                    f"download of {url} failed: {type(exc).__name__}: {exc}"
                ) from exc
        actual = h.hexdigest()
        if actual != expected_md5:
            raise DatasetError(
                f"md5 mismatch for {url}: expected {expected_md5}, got {actual}; "
                "the downloaded file was removed"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for m in members:
        p = PurePosixPath(m.name)
        if p.is_absolute() or ".." in p.parts or m.name.startswith(("/", "\\")):
            raise DatasetError(
                f"{archive}: unsafe member {m.name!r} would escape the target folder"
            )
        if m.issym() or m.islnk():
            target = PurePosixPath(m.linkname)
            base = p.parent if m.issym() else PurePosixPath()
            if target.is_absolute() or ".." in (base / target).parts:
                raise DatasetError(
                    f"{archive}: unsafe link {m.name!r} -> {m.linkname!r} escapes the target folder"
                )
        elif not (m.isfile() or m.isdir()):
            raise DatasetError(f"{archive}: unsupported member type for {m.name!r}")
    return members


def extract_archive(archive: Path, root: Path, folder: str) -> Path:
    """Unpack ``archive`` (tar.gz) and move its ``folder`` into ``root`` atomically.

    Members that would land outside ``root`` (absolute paths, ``..``, escaping links) or that
    are devices/fifos are rejected with :class:`DatasetError`.
    """
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _safe_members(tar, archive)
                tar.extractall(staging, members=members, filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DatasetError(f"{archive}: corrupt or unreadable archive ({exc})") from exc
        src = staging / folder
        if not src.is_dir():
            raise DatasetError(f"{archive}: wrong layout, archive has no top-level '{folder}/'")
        dest = root / folder
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(src, dest)
        return dest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_dataset(
    name: str,
    root: str | Path,
    *,
    url: str | None = None,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    keep_archive: bool = True,
) -> Path:
    """Fetch, verify and unpack the official archive of ``name`` ("cifar10"/"cifar100") into
    ``root``; returns the unpacked folder (e.g. ``root/cifar-100-python``).

    Nothing is fetched when the folder already exists and loads, nor when a previously
    downloaded archive with the right md5 is in ``root``. The download streams into a
    temporary file that is renamed only when complete; an md5 mismatch removes it and raises
    :class:`DatasetError` naming both digests. ``url``/``md5`` override the official ones
    (mirrors, tests).
    """
    key = name.strip().lower().replace("-", "_")
    if key not in ARCHIVES:
        raise ValueError(f"cannot download {name!r}; downloadable: {', '.join(ARCHIVES)}")
    spec = ARCHIVES[key]
    expected = (md5 or spec.md5).strip().lower()
    if len(expected) != 32 or any(c not in "0123456789abcdef" for c in expected):
        raise ValueError(f"md5 must be 32 hex digits, got {md5!r}")
    root = Path(root).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"{root}: cannot create data folder ({exc.strerror or exc})") from exc
    folder = root / spec.folder
    if folder.is_dir() and _loads(key, folder):
        return folder

    archive = root / spec.filename
    if not (archive.is_file() and file_md5(archive) == expected):
        archive.unlink(missing_ok=True)  # a stale or partial archive from an older run
        _fetch(url or spec.url, archive, expected, progress=progress, timeout=timeout)
    dest = extract_archive(archive, root, spec.folder)
    load_cifar(key, "test", root)  # fail now, with a clear message, if the content is bad
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return dest
