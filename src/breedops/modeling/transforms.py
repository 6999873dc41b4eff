"""Image transforms: one definition for training, evaluation and the inference handler."""

from __future__ import annotations

from PIL import Image
from torchvision import transforms

# ImageNet statistics: what torchvision's pretrained weights expect.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


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
