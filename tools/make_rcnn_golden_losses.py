"""Write tests/fixtures/rcnn_golden_losses.json: `model.loss` of seeded tiny Mask R-CNN (FPN and C4) and
Cascade Mask R-CNN models on one fixed generated batch (cases, seeds and batch: tests/rcnn_golden.py).

    python tools/make_rcnn_golden_losses.py            # write the fixture (refuses to overwrite)
    python tools/make_rcnn_golden_losses.py --force    # rewrite it after an intended loss change
    python tools/make_rcnn_golden_losses.py --check    # print the largest relative difference only

Regenerate only when a change of the losses is intended (and say why in the commit); the test
tests/test_rcnn_golden_losses.py compares against this file.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import rcnn_golden  # noqa: E402
from engine.runtime.atomic_io import write_json  # noqa: E402


def compute_all() -> Dict[str, Dict[str, float]]:
    return {name: rcnn_golden.compute_losses(name) for name in rcnn_golden.CASES}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the fixture, write nothing")
    parser.add_argument("--force", action="store_true", help="overwrite an existing fixture")
    args = parser.parse_args(argv)
    losses = compute_all()
    if args.check:
        golden = json.loads(rcnn_golden.FIXTURE.read_text())["losses"]
        for name, values in losses.items():
            want = golden[name]
            worst = max(abs(v - want[k]) / max(abs(want[k]), 1e-12) for k, v in values.items())
            print(f"{name}: largest relative difference {worst:.3g}")
        return 0
    if rcnn_golden.FIXTURE.exists() and not args.force:
        print(f"{rcnn_golden.FIXTURE} exists; pass --force to rewrite it.", file=sys.stderr)
        return 1
    write_json(rcnn_golden.FIXTURE, {
        "about": "model.loss of seeded tiny R-CNN models on a fixed batch; tools/make_rcnn_golden_losses.py",
        "losses": losses,
    })
    print(f"wrote {rcnn_golden.FIXTURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
