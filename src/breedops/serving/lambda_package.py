"""Build the Lambda zip (`settings.lambda_zip_path()`) reproducibly: same source, same bytes.

Entries are sorted, timestamps fixed, permissions normalised, so Terraform's
`filebase64sha256` changes only when the code does.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from breedops.errors import BreedopsError
from breedops.settings import lambda_zip_path, project_root

FIXED_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold
FILE_MODE = 0o100644  # a regular file, rw-r--r--
EXCLUDED_PARTS = ("__pycache__",)
EXCLUDED_SUFFIXES = (".pyc", ".pyo")


def lambda_source_dir() -> Path:
    return project_root() / "lambda"


def package_files(source: Path) -> list[Path]:
    """The files that go into the package, sorted by their archive name."""
    files = [
        p for p in source.rglob("*")
        if p.is_file() and not set(EXCLUDED_PARTS) & set(p.parts)
        and p.suffix not in EXCLUDED_SUFFIXES
    ]
    return sorted(files, key=lambda p: p.relative_to(source).as_posix())


def build_lambda_zip(source: Path | None = None, target: Path | None = None) -> Path:
    """Zip `source` (default `lambda/`) into `target` (default `settings.lambda_zip_path()`) atomically."""
    source = source or lambda_source_dir()
    target = target or lambda_zip_path()
    files = package_files(source)
    if not any(p.name == "handler.py" for p in files):
        raise BreedopsError(f"no handler.py under {source}: is this the Lambda source folder?")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(source).as_posix(), FIXED_TIMESTAMP)
            info.external_attr = FILE_MODE << 16
            info.create_system = 3  # Unix, so the mode above is honoured
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(buffer.getvalue())
    os.replace(partial, target)
    return target
