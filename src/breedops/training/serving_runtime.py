"""The serving runtime (ONNX Runtime) that travels in model.tar.gz, for endpoints with no internet.

SageMaker's PyTorch serving container has no onnxruntime. Its toolkit puts `code/` on
PYTHONPATH and, before the model server starts, runs `pip install -r code/requirements.txt`
(sagemaker-pytorch-inference-toolkit `torchserve.start_torchserve` ->
sagemaker-inference `model_server._install_requirements`). Under network isolation that pip
reaches no index, so the requirements file says `--no-index` and `--find-links lib` (pip reads a
relative find-links from the requirements file's own folder) and `code/lib/` holds the wheels for
the endpoint image: CPython and platform below. numpy is not vendored: torch brings it.

The wheels come from the package index at packaging time (pip's cache makes repeats cheap);
offline, point pip at a wheelhouse with PIP_NO_INDEX=1 PIP_FIND_LINKS=<dir>.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from importlib import metadata
from pathlib import Path

LOG = logging.getLogger(__name__)

# The endpoint image's interpreter: pytorch-inference:2.6.0-cpu-py312-ubuntu22.04-sagemaker
# (terraform/modules/endpoint, variable image_uri) runs CPython 3.12 on glibc 2.35, x86_64.
ENDPOINT_PYTHON = "3.12"
ENDPOINT_PLATFORM = "manylinux_2_28_x86_64"
RUNTIME = "onnxruntime"
# onnxruntime's install requirements that the image may lack (numpy comes with torch).
RUNTIME_DEPENDENCIES = ("flatbuffers", "packaging", "protobuf")
LIB_DIR = "lib"
REQUIREMENTS_FILE = "requirements.txt"
PIP_TIMEOUT_S = 600


class VendoringError(RuntimeError):
    """The runtime's wheels could not be fetched for the endpoint's platform."""


def runtime_version() -> str:
    """The onnxruntime version installed here: the one that ran the gate ships."""
    try:
        return metadata.version(RUNTIME)
    except metadata.PackageNotFoundError as e:
        raise VendoringError(f"{RUNTIME} is not installed here; install requirements.lock") from e


def requirements_text(version: str) -> str:
    """The toolkit's `code/requirements.txt`: install the vendored runtime, never from an index."""
    return ("# Installed by the serving toolkit at container start, offline: the wheels are in "
            f"{LIB_DIR}/.\n--no-index\n--find-links {LIB_DIR}\n{RUNTIME}=={version}\n")


def vendor_runtime(code_dir: Path, *, python_version: str = ENDPOINT_PYTHON,
                   platform: str = ENDPOINT_PLATFORM) -> list[Path]:
    """Put the runtime's wheels for (`python_version`, `platform`) in `code/lib/` and write
    `code/requirements.txt`; return the wheels."""
    version = runtime_version()
    pins = [f"{RUNTIME}=={version}"]
    for name in RUNTIME_DEPENDENCIES:  # the versions this runtime ran with here
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    lib = code_dir / LIB_DIR
    lib.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--no-deps", "--only-binary=:all:", "--implementation", "cp",
               "--python-version", python_version, "--platform", platform,
               "--dest", str(lib), *pins]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired as e:
        raise VendoringError(f"pip download of {' '.join(pins)} took over {PIP_TIMEOUT_S}s") from e
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise VendoringError(
            f"could not fetch {' '.join(pins)} for CPython {python_version} {platform}: "
            f"{' / '.join(detail)} (offline: PIP_NO_INDEX=1 PIP_FIND_LINKS=<wheelhouse>)")
    wheels = sorted(lib.glob("*.whl"))
    (code_dir / REQUIREMENTS_FILE).write_text(requirements_text(version))
    size_mb = sum(w.stat().st_size for w in wheels) / 1e6
    LOG.info("vendored %s for CPython %s %s: %d wheels, %.1f MB", RUNTIME, python_version,
             platform, len(wheels), size_mb)
    return wheels
