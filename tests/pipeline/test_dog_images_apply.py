"""`make apply` on a dogImages-shaped folder trains with the dog-images preset, from a local
pretrained weights file: the real Makefile in a sandbox with its own emulator.

The folder is what unzipping dogImages gives (`dogImages/{train,valid,test}/001.Affenpinscher/
*.jpg`), at toy size: 3 breeds, 16 small photos each to train on (the preset's largest batch
is 48), 2 to validate and 2 to test. The preset is the real one (resnet50 at 224 px), so the
run takes a few minutes on a CPU; one trial, one epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import numpy as np
import pytest
import torch
from PIL import Image
from sandbox import make_sandbox
from torchvision import models

from breedops.hyperparameters import DOG_IMAGES, preset
from breedops.local.services import free_port
from breedops.settings import DEFAULT_REGION

pytestmark = [pytest.mark.emulator, pytest.mark.terraform, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BREEDS = ("001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier")
PHOTOS = {"train": 16, "valid": 2, "test": 2}
APPLY_TIMEOUT_S = 1500
# Variables a sandboxed run never inherits: another emulator's, a profile's, another sandbox's.
FOREIGN_PREFIXES = ("AWS_", "BREEDOPS_")


def dog_images(root: Path) -> Path:
    """A toy dogImages tree: each breed a colour, each photo that colour with noise."""
    rng = np.random.default_rng(0)
    for split, count in PHOTOS.items():
        for index, breed in enumerate(BREEDS):
            folder = root / split / breed
            folder.mkdir(parents=True)
            colour = np.array([(80 * index + 40) % 256, 120, 255 - 70 * index])
            for i in range(count):
                pixels = (colour + rng.normal(0, 25, (30, 40, 3))).clip(0, 255)
                Image.fromarray(pixels.astype("uint8")).save(
                    folder / f"{breed.split('.')[1]}_{i:05d}.jpg")
    return root


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory):
    """The sandbox after `make apply DATASET=<dogImages> PRESET=dog-images WEIGHTS=<file>`."""
    from breedops.serving.lambda_package import build_lambda_zip

    tmp = tmp_path_factory.mktemp("dog-images-apply")
    root = make_sandbox(tmp / "project", lambda path: build_lambda_zip(target=path))
    shutil.copy(REPO / "Makefile", root / "Makefile")
    for folder in ("lambda", "src"):
        shutil.copytree(REPO / folder, root / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dataset = dog_images(tmp / "dogImages")
    weights = tmp / "resnet50-imagenet.pth"
    torch.manual_seed(50)
    torch.save(models.resnet50(num_classes=1000).state_dict(), weights)
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
    env.update(BREEDOPS_EMULATOR_PORT=str(free_port()), BREEDOPS_HOSTING_PORT=str(free_port()),
               AWS_CONFIG_FILE=str(tmp / "no-aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-aws-credentials"),
               AWS_DEFAULT_REGION=DEFAULT_REGION, PYTHONPATH=str(root / "src"))
    # -o setup -o venv: the venv is the one running the tests (the sandbox would reinstall it).
    make = ["make", "-o", "setup", "-o", "venv", f"VENV={sys.prefix}"]
    try:
        run = subprocess.run(
            [*make, "apply", f"DATASET={dataset}", f"PRESET={DOG_IMAGES}", f"WEIGHTS={weights}",
             "TRIALS=1", "PARALLEL=1", "EPOCHS=1"],
            cwd=root, env=env, capture_output=True, text=True, timeout=APPLY_TIMEOUT_S,
            check=False)
        assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
        yield root, weights, run.stdout + run.stderr
    finally:
        subprocess.run([*make, "down"], cwd=root, env=env, capture_output=True, timeout=120,
                       check=False)


def _admin(root: Path, service: str):
    from breedops.local.env_file import read_env_file

    variables = read_env_file(root / ".local" / "env")
    return boto3.Session(aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
                         aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"],
                         region_name=DEFAULT_REGION,
                         ).client(service, endpoint_url=variables["AWS_ENDPOINT_URL"])


def test_make_apply_on_dog_images_fine_tunes_the_local_weights(applied, tmp_path: Path) -> None:
    root, weights, said = applied
    summary = json.loads((root / ".local" / "pipeline" / "local" / "summary.json").read_text())
    best = summary["best_hyperparameters"]
    assert "tuning job (dog-images preset)" in said
    assert (best["arch"], best["image-size"], best["pretrained"], best["hflip"]) == (
        "resnet50", "224", "true", "true")
    ranges = preset(DOG_IMAGES).search_ranges()
    assert ranges["lr"].low <= float(best["lr"]) <= ranges["lr"].high
    assert ranges["batch_size"].low <= int(best["batch-size"]) <= ranges["batch_size"].high
    assert summary["smoke_prediction"]["label"] in BREEDS

    sagemaker = _admin(root, "sagemaker")
    job = sagemaker.describe_training_job(TrainingJobName=summary["training_job_name"])
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                for c in job["InputDataConfig"]}
    assert "/data/_weights/" in channels["weights"]

    # The model started from the file: one short epoch at a fine-tuning rate moves a weight
    # by at most a few lr-sized Adam steps, while another initialisation differs by ~0.03.
    bucket, key = summary["model_data_url"].removeprefix("s3://").split("/", 1)
    body = _admin(root, "s3").get_object(Bucket=bucket, Key=key)["Body"]
    with tarfile.open(fileobj=body, mode="r|gz") as tar:
        tar.extractall(tmp_path, filter="data")
    trained = torch.load(tmp_path / "model.pth", weights_only=True)
    saved = torch.load(weights, weights_only=True)
    assert trained["image_size"] == 224 and trained["num_classes"] == len(BREEDS)
    drift = (trained["state_dict"]["conv1.weight"] - saved["conv1.weight"]).abs().max()
    assert drift < 0.01
