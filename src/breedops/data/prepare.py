"""Prepare an ImageFolder dataset: digits rendered from scikit-learn, dogImages, or a folder."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from breedops.data.layout import SPLITS, DatasetError, scan_dataset

LOG = logging.getLogger(__name__)

DIGITS = "digits"
DOG_IMAGES = "dog-images"
DOG_IMAGES_URL = "https://s3-us-west-1.amazonaws.com/udacity-aind/dog-project/dogImages.zip"
DIGITS_IMAGE_SIZE = 32
DIGITS_SEED = 0
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
DOWNLOAD_CHUNK = 1 << 20
DOWNLOAD_TIMEOUT_S = 30


def dataset_name(dataset: str) -> str:
    """The name a dataset gets under `data/<name>/`: built-ins by name, folders by basename."""
    return dataset if dataset in (DIGITS, DOG_IMAGES) else Path(dataset).resolve().name


def prepare(dataset: str, out_dir: Path) -> Path:
    """Write (or adopt) `dataset` as train/valid/test class folders; return the dataset root."""
    if dataset == DIGITS:
        render_digits(out_dir)
        root = out_dir
    elif dataset == DOG_IMAGES:
        root = fetch_dog_images(out_dir)
    else:
        source = Path(dataset)
        if not source.is_dir():
            raise DatasetError(
                f"unknown dataset {dataset!r}: use {DIGITS}, {DOG_IMAGES} or a directory path"
            )
        root = copy_readable(source, out_dir)
    splits = scan_dataset(root, verify=dataset != DIGITS)
    counts = ", ".join(f"{name} {len(split.samples)}" for name, split in splits.items())
    LOG.info("dataset ready at %s: %d classes; images: %s", root, len(splits["train"].classes),
             counts)
    return root


def render_digits(out_dir: Path, image_size: int = DIGITS_IMAGE_SIZE,
                  seed: int = DIGITS_SEED) -> None:
    """Render scikit-learn's bundled 8x8 digits as RGB PNGs in a stratified 80/10/10 split."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images, labels = digits.images, digits.target
    indices = np.arange(len(labels))
    train_idx, rest_idx = train_test_split(
        indices, train_size=SPLIT_FRACTIONS[0], stratify=labels, random_state=seed
    )
    valid_idx, test_idx = train_test_split(
        rest_idx, test_size=0.5, stratify=labels[rest_idx], random_state=seed
    )
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for split, split_idx in zip(SPLITS, (train_idx, valid_idx, test_idx), strict=True):
        for i in split_idx:
            # Pixel values are 0..16, ink is high: scale to 0..255 as dark ink on white.
            pixels = (255 - images[i] * (255 / 16)).clip(0, 255).astype("uint8")
            image = Image.fromarray(pixels, mode="L").resize(
                (image_size, image_size), Image.Resampling.BILINEAR
            ).convert("RGB")
            folder = staging / split / str(labels[i])
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{i:04d}.png")
    _publish(staging, out_dir)


def _publish(staging: Path, out_dir: Path) -> None:
    """Replace the old tree only once the new one is complete."""
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, out_dir)


def copy_readable(source: Path, out_dir: Path) -> Path:
    """Link (or copy) the readable images of `source` into `out_dir`, skipping corrupt ones."""
    splits = scan_dataset(source)
    if source.resolve() == out_dir.resolve():
        return out_dir
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for name, split in splits.items():
        for path, _ in split.samples:
            target = staging / name / path.relative_to(split.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:  # another filesystem, or links not allowed
                shutil.copy2(path, target)
    _publish(staging, out_dir)
    return out_dir


def fetch_dog_images(out_dir: Path, url: str = DOG_IMAGES_URL,
                     sha256: str | None = None) -> Path:
    """Download (resumably), verify and unzip dogImages; return the train/valid/test root."""
    archive = out_dir.parent / f"{out_dir.name}.zip"
    download(url, archive, sha256=sha256)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging)
    except zipfile.BadZipFile as e:
        archive.unlink(missing_ok=True)
        raise DatasetError(f"{archive} is not a valid zip archive; deleted it, run again") from e
    # The archive holds one top folder (dogImages/); adopt whatever holds the splits.
    root = next((p.parent for p in staging.rglob("train") if p.is_dir()), None)
    if root is None:
        raise DatasetError(f"{url} has no train/ folder")
    copy_readable(root, out_dir)
    shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def download(url: str, target: Path, sha256: str | None = None) -> None:
    """Download `url` to `target`, resuming a partial file and checking size (and sha256)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        expected = remote_size(url)
        if target.exists() and target.stat().st_size == expected:
            LOG.info("%s already downloaded", target)
        else:
            _fetch_range(url, partial, expected)
            os.replace(partial, target)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise DatasetError(
            f"cannot download {url}: {e}. The machine may be offline; download the archive "
            f"elsewhere, unzip it and use the folder: `make apply DATASET=<folder>/dogImages "
            f"PRESET={DOG_IMAGES}` (`breedops data prepare --dataset <folder>` prepares it alone)"
        ) from e
    if sha256 is not None and (actual := file_sha256(target)) != sha256:
        target.unlink()
        raise DatasetError(f"checksum mismatch for {url}: expected {sha256}, got {actual}")


def remote_size(url: str) -> int:
    """The Content-Length the server announces for `url`."""
    request = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
        return int(response.headers["Content-Length"])


def _fetch_range(url: str, partial: Path, expected: int) -> None:
    """Append the missing bytes of `url` to `partial` with a progress bar."""
    from tqdm import tqdm

    start = partial.stat().st_size if partial.exists() else 0
    if start > expected:
        partial.unlink()
        start = 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
        if start and response.status != 206:  # the server ignored the range: start over
            start = 0
        mode = "ab" if start else "wb"
        with open(partial, mode) as f, tqdm(total=expected, initial=start, unit="B",
                                            unit_scale=True, desc=partial.name) as bar:
            while chunk := response.read(DOWNLOAD_CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
    if (size := partial.stat().st_size) != expected:
        raise DatasetError(f"incomplete download of {url}: {size} of {expected} bytes; run again")


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(DOWNLOAD_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
