"""A sandboxed project root for tests that apply Terraform.

A copy of `terraform/` (no state, plans or artifacts), a Lambda zip, and a `.local/` holding the
provider-mirror configuration when this machine has one, so the real env dirs stay untouched.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

from breedops.settings import lambda_zip_path, project_root


def write_stand_in_lambda_zip(path: Path) -> None:
    """A minimal deployable zip, for tests that deploy but never invoke the function."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("breedops_lambda/handler.py",
                         "def lambda_handler(event, context):\n    return {}\n")


def make_sandbox(root: Path,
                 write_lambda_zip: Callable[[Path], object] = write_stand_in_lambda_zip) -> Path:
    """Lay out the sandbox under `root` and return it; point BREEDOPS_ROOT and
    BREEDOPS_STATE_DIR at `root` and `root/.local` to use it."""
    shutil.copytree(project_root() / "terraform", root / "terraform",
                    ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", "plan.json",
                                                  "PLAN.md", "artifacts.auto.tfvars.json"))
    zip_path = root / lambda_zip_path().relative_to(project_root())
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    write_lambda_zip(zip_path)
    (root / ".local").mkdir(exist_ok=True)
    rc = project_root() / ".local" / "terraform.rc"
    if rc.is_file():  # the offline provider mirror, when this machine has one
        shutil.copy(rc, root / ".local" / "terraform.rc")
    return root


def small_digits(target: Path, scratch: Path, train: int, held_out: int) -> Path:
    """Real digits, fewer of them: the first images of each class in each split (rendered once
    into `scratch`)."""
    from breedops.data.prepare import render_digits

    if not scratch.is_dir():
        render_digits(scratch)
    for split, keep in (("train", train), ("valid", held_out), ("test", held_out)):
        for class_dir in sorted((scratch / split).iterdir()):
            out = target / split / class_dir.name
            out.mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:keep]:
                shutil.copy(image, out / image.name)
    return target
