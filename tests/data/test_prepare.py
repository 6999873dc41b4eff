"""Preparing datasets: digits rendered offline, folders adopted, bad data reported."""

from __future__ import annotations

import http.server
import logging
import threading
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image

from breedops.data.layout import DatasetError, scan_dataset
from breedops.data.prepare import download, prepare, render_digits


def _image(path: Path, colour: tuple[int, int, int] = (200, 10, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


def _tree(root: Path, classes: dict[str, list[str]]) -> Path:
    for split, names in classes.items():
        for name in names:
            _image(root / split / name / "a.png")
            _image(root / split / name / "b.png", (10, 10, 200))
    return root


def test_render_digits_writes_a_stratified_80_10_10_split(tmp_path: Path) -> None:
    render_digits(tmp_path / "digits", image_size=16)
    splits = scan_dataset(tmp_path / "digits")
    assert {name: len(s.samples) for name, s in splits.items()} == {
        "train": 1437, "valid": 180, "test": 180}
    assert splits["valid"].classes == [str(i) for i in range(10)]
    per_class = [sum(1 for _, c in splits["test"].samples if c == k) for k in range(10)]
    assert min(per_class) >= 17  # stratified: every digit present in proportion
    with Image.open(splits["train"].samples[0][0]) as image:
        assert (image.mode, image.size) == ("RGB", (16, 16))
    assert not (tmp_path / "digits.partial").exists()


def test_prepare_folder_skips_corrupt_images_and_reports_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = _tree(tmp_path / "src", {s: ["cat", "dog"] for s in ("train", "valid", "test")})
    corrupt = source / "train" / "dog" / "broken.jpg"
    corrupt.write_bytes(b"not an image at all")
    with caplog.at_level(logging.WARNING):
        root = prepare(str(source), tmp_path / "out")
    assert "skipping 1 unreadable image(s)" in caplog.text and str(corrupt) in caplog.text
    assert not (root / "train" / "dog" / "broken.jpg").exists()
    assert len(scan_dataset(root)["train"].samples) == 4


def test_prepare_rejects_differing_class_lists(tmp_path: Path) -> None:
    source = _tree(tmp_path / "src", {"train": ["cat", "dog"], "valid": ["cat"],
                                      "test": ["cat", "dog"]})
    with pytest.raises(DatasetError, match="class lists differ.*lacks \\['dog'\\]"):
        prepare(str(source), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prepare_rejects_empty_class_folder(tmp_path: Path) -> None:
    source = _tree(tmp_path / "src", {s: ["cat", "dog"] for s in ("train", "valid", "test")})
    (source / "valid" / "emu").mkdir()
    with pytest.raises(DatasetError, match="emu has no images"):
        prepare(str(source), tmp_path / "out")


def test_prepare_unknown_dataset_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="use digits, dog-images or a directory"):
        prepare(str(tmp_path / "missing"), tmp_path / "out")


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one payload and honours `Range: bytes=N-` like S3 does."""

    payload = bytes(range(256)) * 64
    ranges: ClassVar[list[str]] = []

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()

    def do_GET(self) -> None:
        start = 0
        if header := self.headers.get("Range"):
            self.ranges.append(header)
            start = int(header.split("=")[1].rstrip("-"))
        body = self.payload[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_download_resumes_a_partial_file_and_checks_size(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/dogImages.zip"
        target = tmp_path / "dogImages.zip"
        (tmp_path / "dogImages.zip.part").write_bytes(_RangeHandler.payload[:1000])
        download(url, target)
    finally:
        server.shutdown()
    assert target.read_bytes() == _RangeHandler.payload
    assert _RangeHandler.ranges == ["bytes=1000-"]


def test_download_offline_is_a_clear_error(tmp_path: Path) -> None:
    from breedops.local.services import free_port

    url = f"http://127.0.0.1:{free_port()}/dogImages.zip"  # nothing listens there
    with pytest.raises(DatasetError, match="cannot download .*may be offline"):
        download(url, tmp_path / "dogImages.zip")
    assert not (tmp_path / "dogImages.zip").exists()


def test_download_checksum_mismatch_deletes_the_file(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/dogImages.zip"
        with pytest.raises(DatasetError, match="checksum mismatch"):
            download(url, tmp_path / "dogImages.zip", sha256="0" * 64)
    finally:
        server.shutdown()
    assert not (tmp_path / "dogImages.zip").exists()
