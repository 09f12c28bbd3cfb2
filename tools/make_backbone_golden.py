"""Write tests/fixtures/ppdet_backbone_golden.json: outputs of PaddleDetection's own ResNet / FPN /
Res5Head for the cases in tests/backbone_golden.py (seeded weights, fixed inputs).

    python tools/make_backbone_golden.py --ppdet-root /path/to/PaddleDetection [--check]

`--ppdet-root` is a checkout of PaddleDetection develop (not committed here). Only its `ppdet/modeling`
layers are used; optional imports its package pulls in (requests, sklearn, shapely, ...) are stubbed when
missing. `--check` also runs ours and prints the largest differences instead of writing the file.
"""
import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tools"))
from ppdet_import import import_with_stubs  # noqa: E402
OUT = REPO / "tests" / "fixtures" / "ppdet_backbone_golden.json"


def import_ppdet(root: Path) -> Dict[str, Callable]:
    resnet = import_with_stubs(root, "ppdet.modeling.backbones.resnet")
    fpn = importlib.import_module("ppdet.modeling.necks.fpn")
    return {"resnet": lambda **kw: _dict_input(resnet.ResNet(**kw)), "fpn": fpn.FPN, "res5": resnet.Res5Head}


def _dict_input(layer: Any) -> Any:
    forward = layer.forward
    layer.forward = lambda image: forward({"image": image})
    return layer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ppdet-root", type=Path, required=True)
    parser.add_argument("--check", action="store_true", help="compare with ours instead of writing")
    args = parser.parse_args()
    import backbone_golden as golden

    reference = import_ppdet(args.ppdet_root)
    mine = golden.OURS if args.check else None
    record = {}
    for name, case in golden.CASES.items():
        ref = golden.run_case(reference, case)
        record[name] = golden.summary(ref)
        if mine is not None:
            got = golden.run_case(mine, case)
            diff = max(float(np.abs(a - b).max() / (np.abs(a).mean() + 1e-12)) for a, b in zip(ref, got))
            print(f"{name}: largest difference {diff:.3g} (relative to mean |x|)")
    if not args.check:
        levels = {name: ",\n  ".join(json.dumps(level) for level in outs) for name, outs in record.items()}
        body = ",\n".join(f' "{name}": [\n  {text}\n ]' for name, text in levels.items())
        OUT.write_text("{\n" + body + "\n}\n")
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
