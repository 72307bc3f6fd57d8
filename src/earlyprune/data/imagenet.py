"""ImageNet from an ImageFolder tree: ``train/<class>/*.JPEG`` and ``val/<class>/*.JPEG``.

Classes are the sorted names of the train sub-folders; labels are their positions. The official
validation archive is flat (one folder of 50,000 files); it must first be sorted into class
folders, as most ImageNet training code expects.
"""

from __future__ import annotations

from pathlib import Path

import torch

from earlyprune.core.errors import DatasetError
from earlyprune.data.api import missing_error, register_dataset, search_roots
from earlyprune.data.bundle import DataBundle
from earlyprune.data.folder import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DecodeSpec,
    FileSplit,
    FolderBundle,
    list_images,
)

HINT = (
    "ImageNet cannot be downloaded automatically: obtain ILSVRC2012 from "
    "https://image-net.org/download.php and arrange it as <root>/imagenet/train/<class>/*.JPEG "
    "and <root>/imagenet/val/<class>/*.JPEG (sort the flat val folder into class folders first)."
)


def read_image_folder(split_dir: Path, classes: list[str] | None) -> tuple[FileSplit, list[str]]:
    """Reads ``split_dir/<class>/*`` into a split.

    Args:
        split_dir: The train or val folder.
        classes: Class names in label order; None takes the sorted sub-folders of ``split_dir``.

    Returns:
        The split and the class names.

    Raises:
        DatasetError: No class folders, an empty class folder, a class unknown to ``classes``,
            or loose images (a flat, unsorted val folder).
    """
    found = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    loose = list_images(split_dir)
    if loose:
        raise DatasetError(
            f"{split_dir}: expected images inside class sub-folders, found {len(loose)} loose "
            f"files such as {Path(loose[0]).name}. {HINT}"
        )
    if not found:
        raise DatasetError(f"{split_dir}: expected one sub-folder per class, found none. {HINT}")
    classes = found if classes is None else classes
    index = {name: i for i, name in enumerate(classes)}
    unknown = [name for name in found if name not in index]
    if unknown:
        raise DatasetError(
            f"{split_dir}: class folder(s) {unknown[:5]} do not exist in train/, so they have no "
            f"label in [0, {len(classes)}). {HINT}"
        )
    paths: list[str] = []
    labels: list[int] = []
    for name in found:
        files = list_images(split_dir / name)
        if not files:
            raise DatasetError(f"{split_dir / name}: expected JPEG/PNG images, found none. {HINT}")
        paths += files
        labels += [index[name]] * len(files)
    return FileSplit(paths, torch.tensor(labels, dtype=torch.long)), classes


def _find_folder(roots: list[Path]) -> Path | None:
    for root in roots:
        for folder in (root / "imagenet", root):
            if (folder / "train").is_dir() and (folder / "val").is_dir():
                return folder
    return None


@register_dataset("imagenet")
def load_imagenet(root: Path | None, download: bool) -> DataBundle:
    """ImageNet (ILSVRC2012): 1.28 M train / 50,000 val images, 1,000 classes, fed at 224×224.

    Training crops a random patch (scale 0.1–1, aspect 0.8–1.25) resized to 224 and flips it;
    testing resizes the shorter side to 256 and takes the centred 224×224 crop.
    """
    roots = search_roots(root)
    folder = _find_folder(roots)
    if folder is None:
        raise missing_error("ImageNet folder (with train/ and val/)", roots, HINT)
    train, classes = read_image_folder(folder / "train", None)
    test, _ = read_image_folder(folder / "val", classes)
    return FolderBundle(
        name="imagenet",
        num_classes=len(classes),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        train=train,
        test=test,
        spec=DecodeSpec(size=224, test_resize=256, expected_size=None, hint=HINT),
    )
