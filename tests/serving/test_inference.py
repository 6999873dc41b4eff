"""The inference handler in-process: good images of every mode, and each bad input's error."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image
from sagemaker_inference.errors import GenericInferenceToolkitError

from breedops.serving import inference


class Context:
    """TorchServe's context as the toolkit passes it: request headers via the processor."""

    def __init__(self, headers: dict[str, str]) -> None:
        processor = type("P", (), {"get_request_properties": lambda _self: headers})()
        self.request_processor = [processor]


def encode(mode: str, fmt: str, size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 200 if mode in ("L", "I;16") else None).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model(model_dir):
    return inference.model_fn(str(model_dir))


@pytest.mark.parametrize(("mode", "fmt"), [
    ("RGB", "JPEG"), ("L", "JPEG"), ("RGBA", "PNG"), ("CMYK", "JPEG"), ("I;16", "PNG"),
    ("P", "PNG"), ("LA", "PNG"),
])
def test_predict_image_mode_returns_sorted_top_k(model, mode, fmt):
    image = inference.input_fn(encode(mode, fmt), "image/png")
    assert image.mode == "RGB"
    answer = json.loads(inference.output_fn(inference.predict_fn(image, model), None))
    probabilities = [p["probability"] for p in answer["predictions"]]
    assert answer["model_version"] == "test-1"
    assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)


def test_to_rgb_sixteen_bit_keeps_brightness():
    image = Image.new("I;16", (4, 4), 65535)
    assert inference._to_rgb(image).getpixel((0, 0)) == (255, 255, 255)


def test_output_fn_top_k_from_custom_attributes(model):
    prediction = inference.predict_fn(inference.input_fn(encode("RGB", "PNG"), "image/png"), model)
    context = Context({"X-Amzn-SageMaker-Custom-Attributes": "trace=1,top_k=2"})
    assert len(json.loads(inference.output_fn(prediction, "application/json", context))[
        "predictions"]) == 2


def bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, "PNG")  # 100 Mpx in a few kB
    return buffer.getvalue()


BAD_INPUTS = [
    ("unsupported content type", b"1,2", "text/csv", inference.UnsupportedContentTypeError,
     "unsupported content type 'text/csv'"),
    ("empty body", b"", "image/jpeg", inference.InvalidRequestError, "body is empty"),
    ("not an image", b"hello", "image/jpeg", inference.InvalidRequestError,
     "not a decodable image"),
    ("truncated JPEG", encode("RGB", "JPEG", (300, 300))[:900], "image/jpeg",
     inference.InvalidRequestError, "truncated or corrupt"),
    ("decompression bomb", bomb(), "image/png", inference.ImageTooLargeError, "pixels"),
    ("invalid JSON", b"{", "application/json", inference.InvalidRequestError, "not valid JSON"),
    ("invalid base64", b'{"image": "@@@"}', "application/json", inference.InvalidRequestError,
     "not valid base64"),
    ("unknown fields", json.dumps({"image": "QQ==", "x": 1}).encode(), "application/json",
     inference.InvalidRequestError, "unknown field(s) in the JSON body: x"),
    ("missing image", b'{"img": "QQ=="}', "application/json", inference.InvalidRequestError,
     '{"image": "<base64>"}'),
    ("GIF", encode("P", "GIF"), "image/png", inference.UnsupportedImageFormatError,
     "the image is GIF; send JPEG or PNG"),
    ("BMP", encode("RGB", "BMP"), "image/jpeg", inference.UnsupportedImageFormatError,
     "the image is BMP; send JPEG or PNG"),
    ("TIFF", encode("RGB", "TIFF"), "application/x-image", inference.UnsupportedImageFormatError,
     "the image is TIFF"),
    ("WebP", encode("RGB", "WEBP"), "image/jpeg", inference.UnsupportedImageFormatError,
     "the image is WebP"),
    ("oversized bytes", b"\xff\xd8\xff" + bytes(inference.MAX_IMAGE_BYTES), "image/jpeg",
     inference.ImageTooLargeError, "the limit is"),
]


@pytest.mark.parametrize(("case", "body", "content_type", "error", "message"), BAD_INPUTS,
                         ids=[case[0] for case in BAD_INPUTS])
def test_input_fn_bad_input_raises_specific_error(case, body, content_type, error, message):
    with pytest.raises(error) as raised:
        inference.input_fn(body, content_type)
    assert message in str(raised.value)
    assert raised.value.status_code in (400, 413, 415)
    # The toolkit's contract: its own error type, a plain reason phrase, a one-line JSON message.
    assert isinstance(raised.value, GenericInferenceToolkitError)
    assert json.loads(raised.value.message) == {"error": error.__name__,
                                                "message": str(raised.value)}
    assert "\n" not in raised.value.phrase


def test_output_fn_unsupported_accept_raises_406(model):
    prediction = inference.predict_fn(inference.input_fn(encode("RGB", "PNG"), "image/png"), model)
    with pytest.raises(inference.UnsupportedAcceptError) as raised:
        inference.output_fn(prediction, "text/csv")
    assert raised.value.status_code == 406


def test_output_fn_bad_top_k_raises(model):
    prediction = inference.predict_fn(inference.input_fn(encode("RGB", "PNG"), "image/png"), model)
    with pytest.raises(inference.InvalidRequestError, match="top_k must be an integer"):
        inference.output_fn(prediction, None, Context({"X-Amzn-SageMaker-Custom-Attributes":
                                                       "top_k=many"}))


def test_input_fn_json_request_decodes_image():
    body = json.dumps({"image": base64.b64encode(encode("RGB", "PNG")).decode()})
    assert inference.input_fn(body, "application/json; charset=utf-8").size == (40, 30)


def test_input_fn_turns_an_exif_rotated_jpeg_upright():
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: stored rotated, shown 90 degrees clockwise
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30)).save(buffer, "JPEG", exif=exif)
    image = inference.input_fn(buffer.getvalue(), "image/jpeg")
    assert image.size == (30, 40) and 0x0112 not in image.getexif()
