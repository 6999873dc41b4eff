"""What the emulated SageMaker packs and uploads, without an emulator."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

from breedops.local.sagemaker_jobs import transfer


def test_pack_writes_gzipped_tar_with_paths_relative_to_the_folder(tmp_path: Path):
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "model.pth").write_bytes(bytes(range(256)) * 64)
    (model / "code" / "inference.py").write_text("def model_fn(model_dir):\n    pass\n")

    archive = transfer.pack(model, tmp_path / "upload" / "model.tar.gz")

    assert archive.read_bytes()[:2] == b"\x1f\x8b"  # gzip, as SageMaker's model.tar.gz is
    with gzip.open(archive) as stream:
        stream.read()  # a valid stream to its end (CRC and length checked)
    with tarfile.open(archive, "r:gz") as tar:
        assert tar.getnames() == ["code", "code/inference.py", "model.pth"]
        assert tar.extractfile("model.pth").read() == bytes(range(256)) * 64
