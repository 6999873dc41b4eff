"""The dataset layout shared by every part: `<root>/{train,valid,test}/<class>/<image>`.

The training entry point uses this module inside the training container too, so it imports
only the standard library, PIL and `breedops.errors`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from breedops.errors import BreedopsError

LOG = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# How many corrupt paths to name in a log line before summarising the rest.
MAX_PATHS_SHOWN = 10


class DatasetError(BreedopsError):
    """A dataset is missing, empty or not in the train/valid/test class-folder layout."""


@dataclass
class Split:
    """One split: its class names (sorted) and the readable `(path, class_index)` samples."""

    root: Path
    classes: list[str]
    samples: list[tuple[Path, int]]
    corrupt: list[Path] = field(default_factory=list)


def is_image(path: Path) -> bool:
    """Whether a file name looks like an image this project reads."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def is_readable_image(path: Path) -> bool:
    """Whether PIL can decode the file: header and pixel data."""
    try:
        with Image.open(path) as image:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False
    return True


def scan_split(root: Path, verify: bool = True, classes: list[str] | None = None) -> Split:
    """Read one split folder; corrupt images are collected (and later skipped), not fatal.

    With `classes`, sample indices follow that list (a sharded split may hold a subset of it).
    """
    if not root.is_dir():
        raise DatasetError(f"dataset split not found: {root} (expected <split>/<class>/<image>)")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DatasetError(f"no class folders in {root} (expected <split>/<class>/<image>)")
    if classes is not None and (extra := sorted(set(found) - set(classes))):
        raise DatasetError(f"{root} has classes that the other splits lack: {', '.join(extra)}")
    index = {name: i for i, name in enumerate(classes if classes is not None else found)}
    samples: list[tuple[Path, int]] = []
    corrupt: list[Path] = []
    for name in found:
        images = sorted(p for p in (root / name).rglob("*") if is_image(p))
        if not images:
            raise DatasetError(f"class folder {root / name} has no images")
        for path in images:
            if verify and not is_readable_image(path):
                corrupt.append(path)
            else:
                samples.append((path, index[name]))
    if corrupt:
        shown = ", ".join(str(p) for p in corrupt[:MAX_PATHS_SHOWN])
        more = f" and {len(corrupt) - MAX_PATHS_SHOWN} more" if len(corrupt) > MAX_PATHS_SHOWN else ""
        LOG.warning("skipping %d unreadable image(s) in %s: %s%s", len(corrupt), root, shown, more)
    return Split(root=root, classes=found, samples=samples, corrupt=corrupt)


def check_same_classes(splits: dict[str, Split]) -> list[str]:
    """The class list shared by all splits; differing lists are an error that names the gap."""
    names = list(splits)
    reference = splits[names[0]].classes
    for name in names[1:]:
        other = splits[name].classes
        if other != reference:
            missing = sorted(set(reference) - set(other))
            extra = sorted(set(other) - set(reference))
            raise DatasetError(
                f"class lists differ between {names[0]!r} and {name!r}: "
                f"{name!r} lacks {missing or 'nothing'}, has extra {extra or 'nothing'}"
            )
    return reference


def scan_dataset(root: Path, verify: bool = True) -> dict[str, Split]:
    """Scan `root/{train,valid,test}` and check that every split has the same classes."""
    if not root.is_dir():
        raise DatasetError(f"dataset directory not found: {root}")
    splits = {name: scan_split(root / name, verify=verify) for name in SPLITS}
    check_same_classes(splits)
    return splits
