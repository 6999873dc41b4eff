"""Image transforms: one definition for training, evaluation and the inference handler."""

from __future__ import annotations

import numpy as np
from PIL import Image
from torchvision import transforms

# ImageNet statistics: what torchvision's pretrained weights expect.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# ToTensor then Normalize, (x / 255 - mean) / std, fused into x * scale + bias per channel.
_SCALE = (1 / (255 * np.asarray(STD))).astype(np.float32).reshape(3, 1, 1)
_BIAS = (-np.asarray(MEAN) / np.asarray(STD)).astype(np.float32).reshape(3, 1, 1)


def to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, palette and RGBA images become 3-channel RGB, as the model expects."""
    return image if image.mode == "RGB" else image.convert("RGB")


def build_eval_transform(image_size: int) -> transforms.Compose:
    """Deterministic: resize to a square `image_size`, then tensor and normalise."""
    return transforms.Compose([
        transforms.Lambda(to_rgb),
        transforms.Resize((image_size, image_size), antialias=True),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])


def eval_batch(image: Image.Image, image_size: int) -> np.ndarray:
    """`build_eval_transform(image_size)(image).unsqueeze(0)` (equal within float rounding) as
    a float32 (1, 3, s, s) array: the inference handler's per-request path, cheaper than the
    torch transforms, and ONNX Runtime takes it without a torch round trip."""
    image = to_rgb(image)
    if image.size != (image_size, image_size):  # Resize skips it too; Pillow would copy
        # Resize on a PIL image is this call: bilinear, which Pillow always antialiases.
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    pixels = np.asarray(image).transpose(2, 0, 1)  # HWC uint8 -> a CHW view, no copy
    batch = np.empty((1, 3, image_size, image_size), dtype=np.float32)
    np.multiply(pixels, _SCALE, out=batch[0], dtype=np.float32)
    batch[0] += _BIAS
    return batch


def build_train_transform(image_size: int, hflip: bool = False) -> transforms.Compose:
    """Augmentation: random crops of most of the image, small rotations, colour jitter.

    Horizontal flips are optional: they help natural photographs (dog breeds) but turn some
    digits into other shapes.
    """
    steps = [
        transforms.Lambda(to_rgb),
        transforms.RandomResizedCrop(
            image_size, scale=(0.75, 1.0), ratio=(0.9, 1.1), antialias=True
        ),
        transforms.RandomRotation(10),
        transforms.ColorJitter(brightness=0.2, contrast=0.2),
    ]
    if hflip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    return transforms.Compose(steps)
