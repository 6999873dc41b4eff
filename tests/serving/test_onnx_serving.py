"""The handler serves model.onnx on ONNX Runtime and says so; eager when it cannot; and the
artifact's vendored runtime installs offline the way the serving toolkit installs it."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest
import torch
from hosted_model import LABELS
from PIL import Image

from breedops.serving import inference


def png_bytes(color: tuple[int, int, int] = (30, 160, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), color).save(buffer, "PNG")
    return buffer.getvalue()


def answer(model: inference.LoadedModel, body: bytes) -> tuple[dict, torch.Tensor]:
    prediction = inference.predict_fn(inference.input_fn(body, "image/png"), model)
    return json.loads(inference.output_fn(prediction, None)), prediction.probabilities


def test_model_fn_serves_onnx_and_the_answer_says_so(model_dir: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger=inference.logger.name):
        model = inference.model_fn(str(model_dir))
    assert model.runtime == "onnxruntime"
    assert isinstance(model.network, inference.OnnxNetwork)
    document, _ = answer(model, png_bytes())
    assert document["runtime"] == "onnxruntime" and document["model_version"] == "test-1"
    assert f"on onnxruntime (model.onnx, onnxruntime {_ort_version()}, " \
           f"{torch.get_num_threads()} threads)" in caplog.text


def test_onnx_and_eager_answer_alike(model_dir: Path, monkeypatch) -> None:
    onnx_model = inference.model_fn(str(model_dir))
    monkeypatch.setenv(inference.RUNTIME_VARIABLE, "eager")
    eager_model = inference.model_fn(str(model_dir))
    assert eager_model.runtime == "eager"
    for color in ((30, 160, 90), (250, 250, 250), (5, 20, 200)):
        onnx_answer, onnx_probabilities = answer(onnx_model, png_bytes(color))
        eager_answer, eager_probabilities = answer(eager_model, png_bytes(color))
        assert onnx_answer["predictions"][0]["index"] == eager_answer["predictions"][0]["index"]
        assert float((onnx_probabilities - eager_probabilities).abs().max()) <= 1e-4
        assert eager_answer["runtime"] == "eager"


def test_model_fn_falls_back_to_eager_when_onnxruntime_cannot_import(
        model_dir: Path, monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises
    with caplog.at_level(logging.INFO, logger=inference.logger.name):
        model = inference.model_fn(str(model_dir))
    assert model.runtime == "eager" and isinstance(model.network, torch.nn.Module)
    assert answer(model, png_bytes())[0]["runtime"] == "eager"
    assert "on eager (onnxruntime does not import:" in caplog.text


def test_model_fn_without_model_onnx_serves_eager(model_dir: Path, tmp_path: Path,
                                                  caplog) -> None:
    older = shutil.copytree(model_dir, tmp_path / "older", ignore=shutil.ignore_patterns(
        "model.onnx", "lib"))
    with caplog.at_level(logging.INFO, logger=inference.logger.name):
        model = inference.model_fn(str(older))
    assert model.runtime == "eager"
    assert "on eager (the artifact has no model.onnx)" in caplog.text


def test_model_fn_rejects_an_unknown_runtime_setting(model_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv(inference.RUNTIME_VARIABLE, "tensorrt")
    with pytest.raises(ValueError, match="BREEDOPS_SERVING_RUNTIME='tensorrt': expected "
                                         "onnxruntime or eager"):
        inference.model_fn(str(model_dir))


def test_invoke_endpoint_is_served_by_onnxruntime(deployment) -> None:
    import boto3

    response = boto3.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=deployment.endpoint_name, ContentType="image/png", Body=png_bytes())
    assert json.loads(response["Body"].read())["runtime"] == "onnxruntime"


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


# What the serving image has besides the model: torch and friends, not onnxruntime or its
# flatbuffers (the artifact brings those).
NOT_IN_THE_IMAGE = ("onnxruntime", "flatbuffers")
SERVE_SCRIPT = textwrap.dedent("""
    import json, sys
    import inference, onnxruntime
    model = inference.model_fn(sys.argv[1])
    image = inference.input_fn(open(sys.argv[2], "rb").read(), "image/png")
    document = json.loads(inference.output_fn(inference.predict_fn(image, model), None))
    print(json.dumps({"runtime": document["runtime"], "labels": len(document["predictions"]),
                      "onnxruntime": onnxruntime.__file__}))
""")


def test_artifact_runtime_installs_offline_as_the_toolkit_does_and_serves_onnx(
        model_dir: Path, tmp_path: Path) -> None:
    """A fresh interpreter holding the image's packages but no onnxruntime: the toolkit's
    `pip install -r code/requirements.txt` (no index reachable) installs the vendored wheels,
    and the handler, from the artifact's `code/` alone, serves on ONNX Runtime."""
    from breedops.training.serving_runtime import vendor_runtime

    # The packaged model, its wheels vendored for this interpreter standing in for the image's.
    model_dir = shutil.copytree(model_dir, tmp_path / "model",
                                ignore=shutil.ignore_patterns("lib", "requirements.txt"))
    vendor_runtime(model_dir / "code",
                   python_version=f"{sys.version_info.major}.{sys.version_info.minor}")

    image_packages = tmp_path / "image-site-packages"
    image_packages.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(NOT_IN_THE_IMAGE) and entry.suffix != ".pth":
            (image_packages / entry.name).symlink_to(entry)
    container = tmp_path / "container"
    venv.create(container, with_pip=True)
    container_python = container / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([container_python, "-c", purelib], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()
    (Path(site) / "image.pth").write_text(f"{image_packages}\n")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "PIP_CONFIG_FILE": os.devnull,  # no machine-wide index or find-links
           "PIP_INDEX_URL": "http://127.0.0.1:9/unreachable", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    install = subprocess.run(  # sagemaker_inference.model_server._install_requirements
        [container_python, "-m", "pip", "install", "-r",
         str(model_dir / "code" / "requirements.txt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert install.returncode == 0, install.stdout + install.stderr
    assert "Successfully installed" in install.stdout and "onnxruntime" in install.stdout

    (tmp_path / "image.png").write_bytes(png_bytes())
    served = subprocess.run(  # the toolkit puts code/ on PYTHONPATH
        [container_python, "-c", SERVE_SCRIPT, str(model_dir), str(tmp_path / "image.png")],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(model_dir / "code")}, capture_output=True,
        text=True, timeout=120, check=False)
    assert served.returncode == 0, served.stderr
    result = json.loads(served.stdout.strip().splitlines()[-1])
    assert result["runtime"] == "onnxruntime" and result["labels"] == len(LABELS)
    assert Path(result["onnxruntime"]).is_relative_to(site)  # the vendored copy, not ours
