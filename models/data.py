"""Dataset manifest, grouped train/val/test split and data fingerprint (no TensorFlow)."""

from __future__ import annotations

import csv
import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

LABELS = (
    "healthy",
    "leaf_spot",
    "virus_mosaic",
    "powdery_mildew",
    "pest_damage",
    "nutrient_deficiency",
)
SPLITS = ("train", "val", "test")
SPLIT_FIELDS = ("file", "class", "crop", "photo_group", "split")
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)


@dataclass(frozen=True)
class Sample:
    """One image of the dataset and the split it belongs to."""

    file: str
    label: str
    crop: str
    photo_group: str
    split: str = ""


def read_dataset(data_dir: Path) -> list[Sample]:
    """Rows of ``data_dir/manifest.csv`` as samples, sorted by file name."""
    with (data_dir / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    samples = [Sample(r["file"], r["class"], r["crop"], r["photo_group"]) for r in rows]
    unknown = {s.label for s in samples} - set(LABELS)
    if unknown:
        raise ValueError(f"unknown classes in manifest: {sorted(unknown)}")
    return sorted(samples, key=lambda s: s.file)


def grouped_split(
    samples: list[Sample], seed: int, fractions: tuple[float, ...] = DEFAULT_FRACTIONS
) -> list[Sample]:
    """Assign whole photo groups to train/val/test, stratified by (class, crop)."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.photo_group].append(s)
    strata: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name, members in sorted(groups.items()):
        if len({(m.label, m.crop) for m in members}) != 1:
            raise ValueError(f"photo group {name} mixes classes or crops")
        strata[(members[0].label, members[0].crop)].append(name)
    rng = random.Random(seed)
    assigned: dict[str, str] = {}
    for key in sorted(strata):
        names = strata[key]
        rng.shuffle(names)
        total = sum(len(groups[n]) for n in names)
        counts = dict.fromkeys(SPLITS, 0)
        # val and test take their share first (at least one group each), train the rest.
        for name in names:
            deficits = {sp: fractions[i] * total - counts[sp] for i, sp in enumerate(SPLITS)}
            split = max(SPLITS, key=lambda sp: (deficits[sp], sp != "train"))
            if counts["val"] == 0 and len(names) >= 3:
                split = "val"
            elif counts["test"] == 0 and len(names) >= 3:
                split = "test"
            assigned[name] = split
            counts[split] += len(groups[name])
    return [
        Sample(s.file, s.label, s.crop, s.photo_group, assigned[s.photo_group]) for s in samples
    ]


def write_split(samples: list[Sample], path: Path) -> None:
    """Write the split file (file, class, crop, photo_group, split)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(SPLIT_FIELDS)
        for s in sorted(samples, key=lambda s: s.file):
            writer.writerow((s.file, s.label, s.crop, s.photo_group, s.split))


def read_split(path: Path) -> list[Sample]:
    """Read a split file written by write_split."""
    with path.open(newline="", encoding="utf-8") as fh:
        return [
            Sample(r["file"], r["class"], r["crop"], r["photo_group"], r["split"])
            for r in csv.DictReader(fh)
        ]


def fingerprint(samples: list[Sample], data_dir: Path) -> str:
    """sha256 over sorted 'file,class,crop,photo_group,split,sha256(image)' lines."""
    outer = hashlib.sha256()
    for s in sorted(samples, key=lambda s: s.file):
        digest = hashlib.sha256((data_dir / s.file).read_bytes()).hexdigest()
        line = ",".join((s.file, s.label, s.crop, s.photo_group, s.split, digest))
        outer.update(line.encode("utf-8") + b"\n")
    return outer.hexdigest()
