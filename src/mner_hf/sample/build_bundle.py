"""Regenerate the bundled CMNER text splits (``cmner_{train,dev,test}.txt.gz``) from CMNER's release.

    python -m mner_hf.sample.build_bundle --cmner ../shared/data/cmner

CMNER (Ji et al.; MIT licence, ``LICENSE`` beside this file) publishes ``train.txt`` (3000 posts)
and ``dev.txt`` (1000 posts); its test split is withheld and its images are not distributed with
the annotations, except the 25 photos of the 6 posts in ``example_text`` / ``images/``. The
``cmner_sample`` dataset (:mod:`mner_hf.builders`) is built from three gzipped files written here,
same ``WID:`` block format, LF line endings:

* ``cmner_train.txt.gz``: CMNER train without the 6 photo posts (2994 posts, text only);
* ``cmner_dev.txt.gz``: 500 CMNER dev posts (validation);
* ``cmner_test.txt.gz``: the 6 photo posts (FIRST, so ``max_eval_samples`` keeps them), then the
  other 500 CMNER dev posts (held out: test).

CMNER's files are grouped by topic (technology, travel, sports, ...), so the train posts and the
dev posts are shuffled (``random.Random(SEED)``) before they are written and cut: the first N posts
of every file (``max_train_samples`` / ``max_eval_samples``) are then a random sample of all topics.

The files are gzipped with a zero timestamp, so the same input gives byte-identical output.
"""

from __future__ import annotations

import argparse
import gzip
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEV_CUT = 500  # shuffled dev posts [0, 500) -> validation, [500, 1000) -> test
SEED = 0


def read_blocks(path: Path) -> list[tuple[str, list[str]]]:
    """``[(wid, ["char<TAB>tag", ...]), ...]`` of a CMNER file (CRLF or LF)."""
    blocks: list[tuple[str, list[str]]] = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        if line.startswith("WID:"):
            blocks.append((line[4:].strip(), []))
        elif line.strip():
            blocks[-1][1].append(line)
    return blocks


def write_blocks(path: Path, blocks: list[tuple[str, list[str]]]) -> None:
    text = "".join(f"WID:{wid}\n" + "".join(f"{line}\n" for line in lines) + "\n" for wid, lines in blocks)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as f:
        f.write(text.encode("utf-8"))


def build(cmner: Path, out: Path = HERE) -> dict[str, int]:
    """Write the three files into ``out``; returns the number of posts per file."""
    photo = read_blocks(HERE / "example_text")
    photo_ids = {wid for wid, _ in photo}
    train = [b for b in read_blocks(cmner / "train.txt") if b[0] not in photo_ids]
    dev = read_blocks(cmner / "dev.txt")
    random.Random(SEED).shuffle(train)
    random.Random(SEED + 1).shuffle(dev)
    if photo_ids & {wid for wid, _ in dev}:
        raise ValueError("a photo post is in CMNER dev: it would leak into validation")
    files = {"cmner_train.txt.gz": train, "cmner_dev.txt.gz": dev[:DEV_CUT], "cmner_test.txt.gz": photo + dev[DEV_CUT:]}
    for name, blocks in files.items():
        write_blocks(out / name, blocks)
    return {name: len(blocks) for name, blocks in files.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cmner", type=Path, required=True, help="folder with CMNER's train.txt and dev.txt")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: this package folder)")
    args = parser.parse_args()
    for name, n in build(args.cmner, args.out).items():
        print(f"{args.out / name}: {n} posts")


if __name__ == "__main__":
    main()
