"""Augmentations of the paper (Appendix A), written in plain torch and Pillow.

* :func:`shift_flip` — CIFAR's random shift by up to ``pad`` pixels plus horizontal flip, for a
  whole uint8 batch at once on any device: one ``gather`` does both, no loop over images.
* :func:`random_resized_crop`, :func:`resize_center_crop` — the TinyImageNet/ImageNet crops on
  Pillow images, run in DataLoader workers.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

__registers__ = ()  # helper: the paper's augmentation, shared by the image datasets

SCALE = (0.1, 1.0)  # paper, App. A: crop area as a share of the image
RATIO = (0.8, 1.25)  # paper, App. A: crop aspect ratio (width / height)


def shift_flip(images: Tensor, offsets: Tensor, flips: Tensor, pad: int) -> Tensor:
    """Pads each image with ``pad`` zeros, crops it back at ``offsets`` and flips where asked.

    Output pixel (y, x) of image n is padded pixel (y + dy, x' + dx), with x' = W − 1 − x when
    ``flips[n]`` — a random crop of the padded image followed by a mirror.

    Args:
        images: uint8 (N, C, H, W).
        offsets: int64 (N, 2) of (dy, dx), each in [0, 2·pad].
        flips: bool (N,).
        pad: Padding on every side, ≥ 0.

    Returns:
        A new uint8 (N, C, H, W) tensor on the images' device.
    """
    n, c, h, w = images.shape
    device = images.device
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
    rows = offsets[:, :1] + torch.arange(h, device=device)  # (N, H)
    xs = torch.arange(w, device=device)
    cols = torch.where(flips[:, None], w - 1 - xs, xs) + offsets[:, 1:]  # (N, W)
    flat = rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]  # (N, H, W) into the padded plane
    index = flat.view(n, 1, h * w).expand(n, c, h * w)
    return torch.gather(padded.reshape(n, c, -1), 2, index).view(n, c, h, w)


def random_resized_crop(
    image: Image.Image,
    size: int,
    rng: random.Random,
    scale: tuple[float, float] = SCALE,
    ratio: tuple[float, float] = RATIO,
) -> Image.Image:
    """Crops a random patch (area share in ``scale``, aspect in ``ratio``) resized to size×size.

    Follows the usual Inception-style sampling: ten tries at a random area and log-uniform
    aspect, then a fall-back to the largest centred patch whose aspect lies in ``ratio``.
    """
    width, height = image.size
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = rng.randint(0, height - h)
            left = rng.randint(0, width - w)
            return _resize_box(image, (left, top, left + w, top + h), (size, size))
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return _resize_box(image, (left, top, left + w, top + h), (size, size))


def resize_center_crop(image: Image.Image, resize: int, crop: int) -> Image.Image:
    """Resizes the shorter side to ``resize`` (aspect kept), then takes the centred crop×crop."""
    width, height = image.size
    if min(width, height) != resize:
        if width <= height:
            new = (resize, max(1, round(height * resize / width)))
        else:
            new = (max(1, round(width * resize / height)), resize)
        image = image.resize(new, Image.Resampling.BILINEAR)
        width, height = new
    left = round((width - crop) / 2)
    top = round((height - crop) / 2)
    return image.crop((left, top, left + crop, top + crop))


def _resize_box(
    image: Image.Image, box: tuple[int, int, int, int], size: tuple[int, int]
) -> Image.Image:
    if box[2] - box[0] == size[0] and box[3] - box[1] == size[1]:
        return image.crop(box)  # resampling at scale 1 would blur nothing; skip its cost
    return image.resize(size, Image.Resampling.BILINEAR, box=box)


def to_chw_uint8(image: Image.Image) -> Tensor:
    """RGB Pillow image → uint8 tensor (3, H, W)."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()
