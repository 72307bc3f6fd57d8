"""TinyImageNet from the official ``tiny-imagenet-200/`` tree.

Layout::

    tiny-imagenet-200/wnids.txt                      one class id (wnid) per line
    tiny-imagenet-200/train/<wnid>/images/*.JPEG     500 images of 64×64 per class
    tiny-imagenet-200/val/images/*.JPEG              10,000 images of 64×64
    tiny-imagenet-200/val/val_annotations.txt        <file>\\t<wnid>\\t<box>… per line

The labelled ``val`` split serves as the test split (the official test split has no labels).
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

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
HINT = f"Download {URL} and unzip it into the data root (download=True is not offered for it)."
FOLDER = "tiny-imagenet-200"


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc}). {HINT}") from None


def read_wnids(folder: Path) -> list[str]:
    """Class ids in label order: wnids.txt if present, else the sorted train sub-folders."""
    path = folder / "wnids.txt"
    if path.is_file():
        wnids = [line.strip() for line in _read_lines(path) if line.strip()]
        if len(set(wnids)) != len(wnids):
            raise DatasetError(f"{path}: expected distinct class ids, found duplicates. {HINT}")
    else:
        wnids = sorted(d.name for d in (folder / "train").iterdir() if d.is_dir())
    if not wnids:
        raise DatasetError(
            f"{folder}: expected class ids in wnids.txt or train/, found none. {HINT}"
        )
    return wnids


def read_train(folder: Path, wnids: list[str]) -> FileSplit:
    """train/<wnid>/images/*.JPEG, labelled by the wnid's position in ``wnids``."""
    known = set(wnids)
    strays = sorted(
        d.name for d in (folder / "train").iterdir() if d.is_dir() and d.name not in known
    )
    if strays:
        raise DatasetError(
            f"{folder / 'train'}: class folder(s) {strays[:5]} are not listed in wnids.txt, so "
            f"they have no label in [0, {len(wnids)}). {HINT}"
        )
    paths: list[str] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        images = folder / "train" / wnid / "images"
        if not images.is_dir():
            raise DatasetError(f"{images}: missing folder of class {wnid}. {HINT}")
        files = list_images(images)
        if not files:
            raise DatasetError(
                f"{images}: expected JPEG images of class {wnid}, found none. {HINT}"
            )
        paths += files
        labels += [label] * len(files)
    return FileSplit(paths, torch.tensor(labels, dtype=torch.long))


def read_val(folder: Path, wnids: list[str]) -> FileSplit:
    """val/images/*, labelled by val/val_annotations.txt."""
    annotations = folder / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DatasetError(f"{annotations}: missing annotation file of the val split. {HINT}")
    index = {wnid: i for i, wnid in enumerate(wnids)}
    paths: list[str] = []
    labels: list[int] = []
    for number, line in enumerate(_read_lines(annotations), start=1):
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        where = f"{annotations}, line {number}"
        if len(fields) < 2:
            raise DatasetError(f"{where}: expected '<file>\\t<wnid>\\t…', found {line!r}. {HINT}")
        name, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in index:
            raise DatasetError(
                f"{where}: class {wnid!r} is not one of the {len(wnids)} classes in wnids.txt. {HINT}"
            )
        image = folder / "val" / "images" / name
        if not image.is_file():
            raise DatasetError(f"{where}: image {image} does not exist. {HINT}")
        paths.append(str(image))
        labels.append(index[wnid])
    if not paths:
        raise DatasetError(f"{annotations}: expected one line per val image, found none. {HINT}")
    return FileSplit(paths, torch.tensor(labels, dtype=torch.long))


def _find_folder(roots: list[Path]) -> Path | None:
    for root in roots:
        for folder in (root / FOLDER, root):
            if (folder / "train").is_dir() and (folder / "val").is_dir():
                return folder
    return None


@register_dataset("tinyimagenet")
def load_tinyimagenet(root: Path | None, download: bool) -> DataBundle:
    """TinyImageNet: 100,000 train / 10,000 val images of 3×64×64, 200 classes.

    Training crops a random patch (scale 0.1–1, aspect 0.8–1.25) resized to 64×64 and flips it;
    testing uses the 64×64 image as is. Every file must be 64×64.
    """
    roots = search_roots(root)
    folder = _find_folder(roots)
    if folder is None:
        how = HINT if not download else f"Automatic download is not offered for it. {HINT}"
        raise missing_error(f"TinyImageNet folder {FOLDER}/ (with train/ and val/)", roots, how)
    wnids = read_wnids(folder)
    return FolderBundle(
        name="tinyimagenet",
        num_classes=len(wnids),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        train=read_train(folder, wnids),
        test=read_val(folder, wnids),
        spec=DecodeSpec(size=64, test_resize=64, expected_size=(64, 64), hint=HINT),
    )
