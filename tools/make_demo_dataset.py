"""Regenerate the bundled demo dataset (demo_data/instance_seg) deterministically.

    python tools/make_demo_dataset.py [--out demo_data/instance_seg]
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_tools.synthetic import make_coco_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_data/instance_seg")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} exists and is not empty; remove it first (nothing was overwritten).")
    make_coco_dataset(out, num_train=192, num_val=48, size=(192, 192), max_shapes=3, seed=2026)
    print(f"demo dataset written to {out}")


if __name__ == "__main__":
    main()
