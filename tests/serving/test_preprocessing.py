"""The handler's preprocessing (`eval_batch`) gives the model exactly the evaluation transform's
tensor, for every kind of image the handler accepts."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from breedops.modeling.transforms import build_eval_transform, eval_batch
from breedops.serving import inference

MODEL_SIZE = 224
TOLERANCE = 1e-5


def photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Smooth random colour, like a photo: seeded noise upscaled bicubically."""
    noise = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    return Image.fromarray(noise).resize(size, Image.Resampling.BICUBIC)


def noise(size: tuple[int, int], channels: int, seed: int = 1) -> Image.Image:
    """Pixel-level noise: every resampling weight shows."""
    shape = (size[1], size[0], channels)
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(), "RGBA" if channels == 4 else None)


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


IMAGES = {
    "JPEG larger than the model": (lambda: encode(photo((500, 375)), "JPEG"), True),
    "JPEG the model's size": (lambda: encode(photo((MODEL_SIZE, MODEL_SIZE)), "JPEG"), True),
    "JPEG smaller than the model": (lambda: encode(photo((120, 90)), "JPEG"), True),
    "PNG": (lambda: encode(noise((300, 200), 3), "PNG"), True),
    "grayscale JPEG": (lambda: encode(photo((320, 240)).convert("L"), "JPEG"), False),
    "RGBA PNG": (lambda: encode(noise((256, 256), 4), "PNG"), True),
}


def reference(image: Image.Image) -> np.ndarray:
    return build_eval_transform(MODEL_SIZE)(image).unsqueeze(0).numpy()


@pytest.mark.parametrize(("build", "coloured"), IMAGES.values(), ids=IMAGES.keys())
def test_eval_batch_of_a_request_image_equals_the_eval_transform(build, coloured) -> None:
    image = inference.input_fn(build(), "image/jpeg")
    batch, expected = eval_batch(image, MODEL_SIZE), reference(image)
    assert batch.shape == (1, 3, MODEL_SIZE, MODEL_SIZE) and batch.dtype == np.float32
    assert batch.flags.c_contiguous  # ONNX Runtime copies anything else
    assert float(np.abs(batch - expected).max()) <= TOLERANCE
    if coloured:  # the image itself would catch a channel swap
        assert float(np.abs(batch[:, ::-1] - expected).max()) > 0.1


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_eval_batch_of_a_non_rgb_image_equals_the_eval_transform(mode) -> None:
    image = photo((300, 260)).convert(mode)
    assert float(np.abs(eval_batch(image, MODEL_SIZE) - reference(image)).max()) <= TOLERANCE


def test_eval_batch_leaves_the_image_as_it_was() -> None:
    image = photo((MODEL_SIZE, MODEL_SIZE))
    before = image.tobytes()
    eval_batch(image, MODEL_SIZE)[0, 0, 0, 0] = 99.0
    assert image.tobytes() == before


@pytest.mark.parametrize("runtime", ["eager", "onnxruntime"])
def test_predict_fn_feeds_the_network_the_eval_transform_tensor(model_dir, monkeypatch,
                                                                runtime) -> None:
    monkeypatch.setenv(inference.RUNTIME_VARIABLE, runtime)
    model = inference.model_fn(str(model_dir))
    assert model.runtime == runtime
    image = inference.input_fn(encode(photo((64, 48)), "JPEG"), "image/jpeg")
    tensor = build_eval_transform(model.image_size)(image).unsqueeze(0)
    with torch.inference_mode():
        logits = model.network(tensor if runtime == "eager" else tensor.numpy())
    expected = torch.softmax(logits[0], dim=0)
    prediction = inference.predict_fn(image, model)
    assert float((prediction.probabilities - expected).abs().max()) <= TOLERANCE
    answer = json.loads(inference.output_fn(prediction, None))
    assert answer["runtime"] == runtime
    assert answer["predictions"][0]["index"] == int(expected.argmax())
