"""Write alexnet/data/imagenet_classes.json from the standard ILSVRC-2012 synset list.

Usage: python scripts/imagenet_classes.py LOC_synset_mapping.txt

LOC_synset_mapping.txt (published with Kaggle's ImageNet localization challenge, and identical in
content to the devkit's meta.mat for the 1000 leaf synsets) has one line per class:
``<wnid> <comma-separated WordNet lemmas>``. Sorted by wnid, the line number is the standard class
index used by every ImageNet model. The JSON keeps that order: ``{"n01440764": "tench, Tinca tinca", ...}``.
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "alexnet" / "data" / "imagenet_classes.json"


def main(mapping: str) -> None:
    classes = {}
    for line in Path(mapping).read_text().splitlines():
        wnid, name = line.split(" ", 1)
        classes[wnid] = name.strip()
    if len(classes) != 1000 or list(classes) != sorted(classes):
        raise SystemExit(f"{mapping}: expected 1000 distinct wnids in sorted order")
    OUT.write_text(json.dumps(classes, indent=0, ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({len(classes)} classes)")


if __name__ == "__main__":
    main(sys.argv[1])
