"""Packaging's ONNX variant: exported, gated on the test split against eager, shipped with the
serving runtime's wheels in the toolkit's layout; a failed gate leaves nothing behind."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from breedops.modeling.architectures import load_model
from breedops.modeling.transforms import build_eval_transform
from breedops.training import onnx_export, packaging, serving_runtime
from breedops.training.data import ImageSamples

SRC = Path(__file__).resolve().parents[2] / "src"
IMAGE_SIZE = 16


@pytest.fixture(scope="module")
def trained(tiny_digits_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One real training run through the entry point: (model dir, its log)."""
    model_dir = tmp_path_factory.mktemp("onnx-model") / "model"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "breedops.training.train", "--data-dir", str(tiny_digits_dir),
         "--model-dir", str(model_dir), "--output-data-dir", str(model_dir.parent / "out"),
         "--epochs", "1", "--batch-size", "16", "--image-size", str(IMAGE_SIZE),
         "--threads", "1", "--model-version", "onnx-1"],
        env=env, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return model_dir, result.stdout + result.stderr


def _test_batches(data_dir: Path) -> list[torch.Tensor]:
    from breedops.data.layout import scan_split

    samples = ImageSamples(scan_split(data_dir / "test").samples,
                           build_eval_transform(IMAGE_SIZE))
    return [images for images, _ in torch.utils.data.DataLoader(samples, batch_size=8)]


def _eager(model_dir: Path) -> torch.nn.Module:
    return load_model(torch.load(model_dir / "model.pth", map_location="cpu", weights_only=True))


def test_training_gates_onnx_on_the_whole_test_split(trained, tiny_digits_dir: Path) -> None:
    model_dir, log = trained
    test_images = sum(1 for p in (tiny_digits_dir / "test").rglob("*") if p.is_file())
    passed = re.search(r"ONNX gate passed: (\d+) images: top-1 differs on 0, "
                       r"max \|delta probability\| (\S+) \(limit 0\.0001\)", log)
    assert passed, log
    assert int(passed.group(1)) == test_images
    assert float(passed.group(2)) <= 1e-4
    # And the file on disk answers as the eager model does, batch axis dynamic.
    report = onnx_export.compare(_eager(model_dir), model_dir / onnx_export.ONNX_FILE,
                                 [torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE)])
    assert report.passed and report.images == 3


def test_model_tarball_has_the_toolkit_layout_and_the_offline_runtime(trained) -> None:
    model_dir, _ = trained
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:  # as SageMaker tars /opt/ml/model
        tar.add(model_dir, arcname=".")
    with tarfile.open(fileobj=io.BytesIO(buffer.getvalue())) as tar:
        names = {Path(n).as_posix().removeprefix("./") for n in tar.getnames()}
        requirements = tar.extractfile("./code/requirements.txt").read().decode()
    version = serving_runtime.runtime_version()
    assert {"model.pth", "model.onnx", "labels.json", "code/inference.py",
            "code/breedops/modeling/architectures.py", "code/requirements.txt"} <= names
    wheel = f"code/lib/onnxruntime-{version}-cp312-cp312-manylinux_2_28_x86_64.whl"
    assert wheel in names
    assert {n.split("/")[-1].split("-")[0] for n in names if n.startswith("code/lib/")} == {
        "onnxruntime", "flatbuffers", "packaging", "protobuf"}
    lines = [line for line in requirements.splitlines() if not line.startswith("#")]
    assert lines == ["--no-index", "--find-links lib", f"onnxruntime=={version}"]
    # Besides the weights (model.pth and model.onnx), the runtime stays about one wheel's size.
    code_bytes = sum(p.stat().st_size for p in (model_dir / "code").rglob("*") if p.is_file())
    assert code_bytes < 35e6


def test_gate_with_zero_tolerance_fails_with_figures_and_writes_nothing(
        trained, tiny_digits_dir: Path, tmp_path: Path) -> None:
    model_dir, _ = trained
    target = tmp_path / "model"
    with pytest.raises(packaging.PackagingError) as raised:
        packaging.write_model_dir(target, _eager(model_dir), arch="resnet18",
                                  classes=[str(i) for i in range(10)], image_size=IMAGE_SIZE,
                                  model_version="strict", tolerance=0.0,
                                  gate_batches=_test_batches(tiny_digits_dir))
    message = str(raised.value)
    assert re.search(r"20 images: top-1 differs on \d+, max \|delta probability\| \S+ "
                     r"\(limit 0\), max \|delta logit\| \S+", message), message
    assert not target.exists()


def test_perturbed_export_fails_the_gate_on_top1(trained, tiny_digits_dir: Path,
                                                 tmp_path: Path, monkeypatch) -> None:
    """An export that ranks classes differently (a shifted head) never ships."""
    model_dir, _ = trained
    real_export = onnx_export.export_onnx

    def perturbed_export(model, path, image_size):
        broken = _eager(model_dir)
        with torch.no_grad():
            broken.fc.bias.add_(torch.linspace(0, 50, broken.fc.out_features))
        real_export(broken, path, image_size)

    monkeypatch.setattr(onnx_export, "export_onnx", perturbed_export)
    target = tmp_path / "model"
    target.mkdir()  # an existing, empty model dir (SageMaker's /opt/ml/model) stays empty
    with pytest.raises(packaging.PackagingError) as raised:
        packaging.write_model_dir(target, _eager(model_dir), arch="resnet18",
                                  classes=[str(i) for i in range(10)], image_size=IMAGE_SIZE,
                                  model_version="perturbed",
                                  gate_batches=_test_batches(tiny_digits_dir))
    mismatches = int(re.search(r"top-1 differs on (\d+)", str(raised.value)).group(1))
    assert mismatches > 0, raised.value
    assert list(target.iterdir()) == []


def test_vendoring_failure_is_a_clear_packaging_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty-wheelhouse"))
    (tmp_path / "empty-wheelhouse").mkdir()
    with pytest.raises(serving_runtime.VendoringError, match=r"could not fetch onnxruntime=="
                       r"\S+ .*for CPython 3\.12 manylinux_2_28_x86_64.*PIP_FIND_LINKS"):
        serving_runtime.vendor_runtime(tmp_path / "code")


def test_without_a_package_index_the_model_ships_without_the_runtime(
        trained, tiny_digits_dir: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    model_dir, _ = trained
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty-wheelhouse"))
    (tmp_path / "empty-wheelhouse").mkdir()
    target = tmp_path / "model"
    packaging.write_model_dir(target, _eager(model_dir), arch="resnet18",
                              classes=[str(i) for i in range(10)], image_size=IMAGE_SIZE,
                              model_version="offline",
                              gate_batches=_test_batches(tiny_digits_dir))
    assert (target / "model.pth").is_file() and (target / onnx_export.ONNX_FILE).is_file()
    assert (target / "code" / "inference.py").is_file()
    assert not (target / "code" / serving_runtime.LIB_DIR).exists()
    assert not (target / "code" / serving_runtime.REQUIREMENTS_FILE).exists()
    assert "will serve model.pth eager" in caplog.text


def test_training_labels_match_the_onnx_output_width(trained) -> None:
    model_dir, _ = trained
    labels = json.loads((model_dir / "labels.json").read_text())
    session = onnx_export.runtime_session(model_dir / onnx_export.ONNX_FILE, threads=1)
    (output,) = session.get_outputs()
    assert output.name == onnx_export.OUTPUT_NAME and output.shape[1] == len(labels)
    assert session.get_inputs()[0].shape[1:] == [3, IMAGE_SIZE, IMAGE_SIZE]


def test_a_model_without_the_onnx_variant_serves_eager(trained, tmp_path: Path,
                                                       monkeypatch) -> None:
    """`--onnx false` (a tuning trial): no export, no gate, no wheels; the handler serves
    model.pth eager and says so."""
    from breedops.serving import inference
    from breedops.training.train import build_parser

    assert build_parser().parse_args(["--onnx", "false"]).onnx is False
    assert build_parser().parse_args([]).onnx is True
    model_dir, _ = trained

    def no_export(*_args, **_kwargs):
        raise AssertionError("an eager-only model must not be exported")

    monkeypatch.setattr(onnx_export, "export_gated", no_export)
    monkeypatch.setattr(serving_runtime, "vendor_runtime", no_export)
    target = tmp_path / "model"
    report = packaging.write_model_dir(target, _eager(model_dir), arch="resnet18",
                                       classes=[str(i) for i in range(10)],
                                       image_size=IMAGE_SIZE, model_version="trial",
                                       onnx=False)
    assert report is None
    assert sorted(p.name for p in target.iterdir()) == ["code", "labels.json", "model.pth"]
    assert sorted(p.name for p in (target / "code").iterdir()) == ["breedops", "inference.py"]
    served = inference.model_fn(str(target))
    assert served.runtime == inference.EAGER_RUNTIME
