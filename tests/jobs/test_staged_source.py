"""The source a training job ships with is derived from the entry point's imports, and runs.

The staged entry point trains in a clean interpreter (`-I -S`: no PYTHONPATH, no site hooks,
so not the editable install) that sees only the staged tree and the third-party packages:
a breedops module the entry point needs but the source lacks fails here, not on SageMaker.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from PIL import Image

from breedops.jobs import sagemaker_backend, staged_source
from breedops.jobs.sagemaker_backend import ENTRY_SCRIPT, stage_source_dir

# Run as SageMaker runs it: the entry script from the source dir, which is on sys.path; under
# -I -S, sys.path holds only the standard library before these.
CLEAN_RUN = """
import runpy, sys
source = sys.argv[1]
sys.path[:0] = [source]
sys.path += {third_party!r}
sys.argv = [source + '/{entry}', *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def _third_party() -> list[str]:
    paths = sysconfig.get_paths()
    return sorted({paths["purelib"], paths["platlib"]})


def _tiny_dataset(root: Path) -> Path:
    """Two classes of flat-coloured 16 px images: enough for one epoch."""
    for split, count in (("train", 8), ("valid", 2), ("test", 2)):
        for label, colour in (("dark", (20, 20, 20)), ("light", (230, 230, 230))):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (16, 16), tuple(c + i for c in colour)).save(
                    folder / f"{i}.png")
    return root


def _train_staged(source: Path, data: Path, model: Path) -> subprocess.CompletedProcess:
    code = CLEAN_RUN.format(third_party=_third_party(), entry=ENTRY_SCRIPT)
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(source), "--data-dir", str(data),
         "--model-dir", str(model), "--epochs", "1", "--batch-size", "8", "--image-size", "16",
         "--threads", "1", "--onnx", "false"],
        capture_output=True, text=True, timeout=300, check=False, cwd=source)


def test_staged_files_follow_the_entry_points_imports() -> None:
    files = {path.as_posix() for path in staged_source.staged_files()}
    # Imported at the top, lazily inside run(), by a package's __init__, or copied by packaging.
    assert {"training/train.py", "hyperparameters.py", "training/outputs.py",
            "data/layout.py", "data/__init__.py", "modeling/architectures.py",
            "serving/inference.py", "errors.py"} <= files
    # Not needed by a training job: nothing that needs boto3, the pipeline or the jobs.
    assert not any(f.startswith(("jobs/", "pipeline/", "local/")) for f in files)


@pytest.mark.slow
def test_the_staged_entry_point_trains_in_a_clean_interpreter(tmp_path: Path) -> None:
    data = _tiny_dataset(tmp_path / "data")
    source = stage_source_dir(tmp_path / "source")

    result = _train_staged(source, data, tmp_path / "model")

    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "model" / "model.pth").is_file()


@pytest.mark.slow
def test_a_module_missing_from_the_staged_source_fails_the_clean_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: drop one module the run imports lazily from the list."""
    derived = staged_source.staged_files()
    monkeypatch.setattr(sagemaker_backend.staged_source, "staged_files",
                        lambda: [p for p in derived if p.as_posix() != "training/outputs.py"])
    data = _tiny_dataset(tmp_path / "data")
    source = stage_source_dir(tmp_path / "source")

    result = _train_staged(source, data, tmp_path / "model")

    assert result.returncode != 0
    assert "cannot import name 'outputs' from 'breedops.training'" in result.stderr
