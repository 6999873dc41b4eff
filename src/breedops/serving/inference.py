"""The inference handler of model.tar.gz (`code/inference.py`), in the SageMaker PyTorch style.

The serving container (and breedops' local hosting) calls `model_fn` once per worker, then
`input_fn` -> `predict_fn` -> `output_fn` per request. It imports only torch, torchvision,
numpy, PIL, the standard library, the container's `sagemaker_inference`, and
`breedops.modeling`, which travels in the tarball next to it.

The network runs on ONNX Runtime when the artifact has `model.onnx` (exported and gated against
the eager model at packaging) and `onnxruntime` imports (the toolkit installs it from the wheels
in `code/lib/`), else on the eager model from `model.pth`; both take the same preprocessed
batch (`eval_batch`: the evaluation transform's tensor as a numpy array). Every answer names the
runtime (`"runtime"`), and `model_fn` logs it with the reason.

Every bad input raises an `InferenceError`: the inference toolkit's own error type
(`sagemaker_inference.errors`, in every SageMaker framework serving container), which its
`Transformer` answers with the error's `status_code`; anything else the toolkit answers with 500.
The toolkit's body is `message` then a newline and the traceback; `message` is one JSON line
`{"error": ..., "message": ...}` so that a client can tell the handler's own verdict from a crash.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from sagemaker_inference.errors import GenericInferenceToolkitError

from breedops.modeling.architectures import load_model
from breedops.modeling.transforms import eval_batch, to_rgb

logger = logging.getLogger(__name__)

IMAGE_CONTENT_TYPES = ("image/jpeg", "image/png", "application/x-image")
JSON_CONTENT_TYPE = "application/json"
SUPPORTED_CONTENT_TYPES = (*IMAGE_CONTENT_TYPES, JSON_CONTENT_TYPE)
# SageMaker real-time endpoints accept at most 6 MB per request.
MAX_IMAGE_BYTES = int(os.environ.get("BREEDOPS_MAX_IMAGE_BYTES", str(6 * 1024 * 1024)))
# Large enough for any camera photo, small enough that decoding cannot exhaust a worker.
MAX_IMAGE_PIXELS = int(os.environ.get("BREEDOPS_MAX_IMAGE_PIXELS", "40000000"))
DEFAULT_TOP_K = int(os.environ.get("BREEDOPS_TOP_K", "5"))
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
ONNX_FILE = "model.onnx"
ONNX_RUNTIME = "onnxruntime"
EAGER_RUNTIME = "eager"
# `eager` serves model.pth even when model.onnx is there (to compare the two); default: ONNX.
RUNTIME_VARIABLE = "BREEDOPS_SERVING_RUNTIME"


# Pillow knows dozens of formats, each a parser exposed to untrusted bytes: open only these.
IMAGE_FORMATS = ("JPEG", "PNG")


class InferenceError(GenericInferenceToolkitError):
    """A request the handler rejects; the toolkit answers with `status_code`."""

    status_code = 400

    def __init__(self, reason: str) -> None:
        self.reason = reason
        document = json.dumps({"error": type(self).__name__, "message": reason})
        # message: the body's first line; phrase: the HTTP reason phrase, kept plain.
        super().__init__(self.status_code, document, reason)

    def __str__(self) -> str:
        return self.reason


class UnsupportedContentTypeError(InferenceError):
    status_code = 415


class UnsupportedAcceptError(InferenceError):
    status_code = 406


class InvalidRequestError(InferenceError):
    """Empty body, bad JSON, bad base64, unknown fields, or an image PIL cannot decode."""


class UnsupportedImageFormatError(InferenceError):
    """A decodable image in a format other than JPEG or PNG."""

    status_code = 415


class ImageTooLargeError(InferenceError):
    status_code = 413


class OnnxNetwork:
    """An ONNX Runtime session called as a network: a float32 image batch array in, a logits
    tensor out."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.session.run([self.output_name], {self.input_name: batch})[0])


@dataclass(frozen=True)
class LoadedModel:
    """What `model_fn` returns: the network plus everything needed to read its output."""

    network: Any  # torch.nn.Module or OnnxNetwork: both map an image batch to logits
    labels: list[str]
    image_size: int
    model_version: str
    runtime: str = EAGER_RUNTIME


@dataclass(frozen=True)
class Prediction:
    """Class probabilities for one image, with the labels and version to report them."""

    probabilities: torch.Tensor
    labels: list[str]
    model_version: str
    runtime: str = EAGER_RUNTIME


def model_fn(model_dir: str) -> LoadedModel:
    """Load the model from the extracted model directory: `model.onnx` on ONNX Runtime when
    it can serve, else `model.pth` eager; `labels.json` either way."""
    root = Path(model_dir)
    checkpoint = torch.load(root / "model.pth", map_location="cpu", weights_only=True)
    labels = json.loads((root / "labels.json").read_text())
    if len(labels) != int(checkpoint["num_classes"]):
        raise ValueError(
            f"labels.json has {len(labels)} labels but the model has "
            f"{checkpoint['num_classes']} classes"
        )
    version = str(checkpoint["model_version"])
    network, runtime, detail = _onnx_network(root / ONNX_FILE)
    if network is None:
        network, runtime = load_model(checkpoint), EAGER_RUNTIME
    logger.info("serving %s model version %s on %s (%s)", checkpoint["arch"], version, runtime,
                detail)
    return LoadedModel(
        network=network,
        labels=labels,
        image_size=int(checkpoint["image_size"]),
        model_version=version,
        runtime=runtime,
    )


def _onnx_network(path: Path) -> tuple[OnnxNetwork | None, str, str]:
    """(network, runtime, why) for ONNX Runtime, or (None, eager, why not)."""
    wanted = os.environ.get(RUNTIME_VARIABLE, ONNX_RUNTIME).strip().lower()
    if wanted not in (ONNX_RUNTIME, EAGER_RUNTIME):
        raise ValueError(f"{RUNTIME_VARIABLE}={wanted!r}: expected {ONNX_RUNTIME} or {EAGER_RUNTIME}")
    if wanted == EAGER_RUNTIME:
        return None, EAGER_RUNTIME, f"{RUNTIME_VARIABLE}={EAGER_RUNTIME}"
    if not path.is_file():
        return None, EAGER_RUNTIME, f"the artifact has no {path.name}"
    try:
        import onnxruntime
    except ImportError as e:
        return None, EAGER_RUNTIME, f"onnxruntime does not import: {e}"
    options = onnxruntime.SessionOptions()
    # The same thread count as torch's: the worker's share of the instance.
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    # No busy-waiting between requests: spinning threads take the cores that the next
    # request's decode and preprocessing need. Re-measured once preprocessing left torch's
    # pool: spinning made whole handler calls no faster, and resnet50's slower.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 (a runtime that cannot load the file: eager answers)
        return None, EAGER_RUNTIME, f"onnxruntime cannot load {path.name}: {e}"
    detail = (f"{path.name}, onnxruntime {onnxruntime.__version__}, "
              f"{options.intra_op_num_threads} threads")
    return OnnxNetwork(session), ONNX_RUNTIME, detail


def input_fn(request_body: bytes | str, content_type: str | None) -> Image.Image:
    """Decode the request into an RGB PIL image, enforcing the size limits before decoding."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type not in SUPPORTED_CONTENT_TYPES:
        raise UnsupportedContentTypeError(
            f"unsupported content type {content_type!r}; "
            f"send one of {', '.join(SUPPORTED_CONTENT_TYPES)}"
        )
    body = request_body.encode() if isinstance(request_body, str) else bytes(request_body)
    if not body:
        raise InvalidRequestError("the request body is empty")
    if media_type == JSON_CONTENT_TYPE:
        body = _image_bytes_from_json(body)
    if len(body) > MAX_IMAGE_BYTES:
        raise ImageTooLargeError(
            f"the image is {len(body)} bytes; the limit is {MAX_IMAGE_BYTES} bytes"
        )
    return _decode_image(body)


def predict_fn(data: Image.Image, model: LoadedModel) -> Prediction:
    """Preprocess as the evaluation transform does, run the network; return softmax
    probabilities."""
    batch = eval_batch(data, model.image_size)
    with torch.inference_mode():
        if model.runtime == EAGER_RUNTIME:
            logits = model.network(torch.from_numpy(batch))  # shares the array's memory
        else:
            logits = model.network(batch)
    return Prediction(
        probabilities=torch.softmax(logits[0], dim=0),
        labels=model.labels,
        model_version=model.model_version,
        runtime=model.runtime,
    )


def output_fn(prediction: Prediction, accept: str | None, context: Any = None) -> str:
    """Serialise the top-k classes as JSON; k comes from the custom attributes `top_k=N`.

    The serving toolkit passes `context` (TorchServe's) to handler functions that take it; its
    request properties hold the request headers.
    """
    media_type = (accept or JSON_CONTENT_TYPE).split(";")[0].strip().lower()
    if media_type not in (JSON_CONTENT_TYPE, "*/*"):
        raise UnsupportedAcceptError(f"unsupported accept type {accept!r}; use {JSON_CONTENT_TYPE}")
    top_k = min(_top_k(_custom_attributes(context)), len(prediction.labels))
    values, indices = torch.topk(prediction.probabilities, top_k)
    return json.dumps({
        "model_version": prediction.model_version,
        "runtime": prediction.runtime,
        "predictions": [
            {"label": prediction.labels[i], "index": i, "probability": round(p, 6)}
            for p, i in zip(values.tolist(), indices.tolist(), strict=True)
        ],
    })


def _image_bytes_from_json(body: bytes) -> bytes:
    """`{"image": "<base64>"}` -> the image bytes; anything else is a specific 400."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidRequestError(f"the body is not valid JSON: {e}") from e
    if not isinstance(document, dict) or "image" not in document:
        raise InvalidRequestError('the JSON body must be an object {"image": "<base64>"}')
    unknown = sorted(set(document) - {"image"})
    if unknown:
        raise InvalidRequestError(f"unknown field(s) in the JSON body: {', '.join(unknown)}")
    encoded = document["image"]
    if not isinstance(encoded, str) or not encoded:
        raise InvalidRequestError('"image" must be a non-empty base64 string')
    if len(encoded) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise ImageTooLargeError(
            f"the base64 image is {len(encoded)} characters; the limit is "
            f"{MAX_IMAGE_BYTES} bytes once decoded"
        )
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidRequestError(f'"image" is not valid base64: {e}') from e


def _decode_image(data: bytes) -> Image.Image:
    """Decode fully (truncated files fail here) after checking the pixel count in the header."""
    try:
        with warnings.catch_warnings():  # the pixel limit below is ours, and stricter
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"the image has too many pixels: {e}") from e
    except Exception as e:  # PIL raises many types for bytes that are not an image
        other = _other_format(data)
        if other:
            raise UnsupportedImageFormatError(
                f"the image is {other}; send {' or '.join(IMAGE_FORMATS)}") from e
        raise InvalidRequestError("the body is not a decodable image (JPEG or PNG)") from e
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageTooLargeError(
            f"the image is {width}x{height} = {width * height} pixels; "
            f"the limit is {MAX_IMAGE_PIXELS}"
        )
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # not in place, it copies every image
        return _to_rgb(image)
    except Exception as e:
        raise InvalidRequestError(f"the body is not a decodable image (truncated or corrupt: {e})") from e


def _other_format(data: bytes) -> str | None:
    """The name of a format Pillow knows but we refuse, read from magic bytes only (no decoder
    runs on them), for a precise 415; None for bytes that are no image at all."""
    signatures = {b"GIF87a": "GIF", b"GIF89a": "GIF", b"BM": "BMP", b"II*\x00": "TIFF",
                  b"MM\x00*": "TIFF", b"\x00\x00\x01\x00": "ICO", b"8BPS": "PSD"}
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in signatures.items() if data.startswith(magic)), None)


def _to_rgb(image: Image.Image) -> Image.Image:
    """16-bit and alpha images need care: a plain convert clips or blackens them."""
    if image.mode in SIXTEEN_BIT_MODES:
        scale = 1 / 256 if max(image.getextrema()) > 255 else 1
        image = image.convert("I").point(lambda v: v * scale).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return to_rgb(image)


def _custom_attributes(context: Any) -> str:
    """The custom attributes header from a TorchServe-style context, or ''."""
    try:
        properties = context.request_processor[0].get_request_properties()
    except (AttributeError, IndexError, TypeError):
        return ""
    for name, value in (properties or {}).items():
        if name.lower() == CUSTOM_ATTRIBUTES_HEADER.lower():
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


def _top_k(custom_attributes: str) -> int:
    """`top_k=N` among comma- or semicolon-separated attributes; the default otherwise."""
    for item in custom_attributes.replace(";", ",").split(","):
        key, _, value = item.partition("=")
        if key.strip() == "top_k":
            try:
                k = int(value)
            except ValueError as e:
                raise InvalidRequestError(f"top_k must be an integer, got {value!r}") from e
            if k < 1:
                raise InvalidRequestError(f"top_k must be at least 1, got {k}")
            return k
    return DEFAULT_TOP_K
