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
import types
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
OUT = REPO / "tests" / "fixtures" / "ppdet_backbone_golden.json"


class _Stub(types.ModuleType):
    """Stands in for an optional module the ppdet package imports but these layers never use."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Stub(f"{self.__name__}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        return None


def import_with_stubs(root: Path, module: str) -> types.ModuleType:
    """Import `module` from the PaddleDetection checkout `root`, stubbing optional third-party modules
    its package imports but the modelling code never uses."""
    sys.path.insert(0, str(root))
    for _ in range(50):
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.startswith("ppdet"):
                raise
            for mod in [m for m in sys.modules if m.startswith("ppdet")]:
                del sys.modules[mod]
            parts = exc.name.split(".")
            for i in range(1, len(parts) + 1):
                sys.modules.setdefault(".".join(parts[:i]), _Stub(".".join(parts[:i])))
    raise RuntimeError("too many missing modules")


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
