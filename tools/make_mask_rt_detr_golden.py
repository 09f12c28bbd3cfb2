"""Write tests/fixtures/ppdet_mask_rt_detr_golden.json: summaries of PaddleDetection's own PPHGNetV2 +
MaskHybridEncoder outputs (Mask-RT-DETR-S and -L configs) for seeded weights and a fixed input, so the test
suite checks InstSeg's backbone and encoder against PaddleDetection without PaddleDetection installed.

    /work/peer/.venv/bin/python tools/make_mask_rt_detr_golden.py --ppdet-root /work/peer

Runs in PaddleDetection's Python (numpy<2). Weights: tests/backbone_golden.seeded_state over the
`backbone.*` then `neck.*` state_dict entries in order (BN scales and variances near 1, so the deep
network's activations stay in range); input: `image()` below, batch 2 at 64 x 96 (eval mode, PaddleDetection's
position embedding computed from the shape); outputs: 4 backbone maps, 3 encoder levels, mask prototypes,
each reduced by tests/backbone_golden.summary. The test is tests/test_mask_rt_detr_encoder.py.
X and H were checked the same way once (2026-12-01, SIZES = ("X", "H") into a scratch file): equal too; they
stay out of the fixture to keep the suite fast (their encoders differ from L's only in width and depth).
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "fixtures" / "ppdet_mask_rt_detr_golden.json"
CONFIG = "configs/mask_rtdetr/mask_rtdetr_hgnetv2_{}_6x_coco.yml"
SIZES = ("S", "L")


def image() -> np.ndarray:
    return np.random.default_rng(5).uniform(0.0, 1.0, (2, 3, 64, 96)).astype("float32")


def seeded_values(entries: Sequence[Tuple[str, Sequence[int]]]) -> Dict[str, np.ndarray]:
    """backbone_golden.seeded_state with BN scales treated as norm scales (1 + noise, not 0.1 * noise): these
    names end in `bn.weight` (or `input_proj.i.1.weight`), which seeded_state does not recognise."""
    sys.path.insert(0, str(REPO / "tests"))
    import backbone_golden

    def alias(name: str, shape: Sequence[int]) -> str:
        is_bn_scale = len(shape) == 1 and (name.endswith("bn.weight") or (
            ".input_proj." in name and name.endswith(".1.weight")))
        return name + ".norm.weight" if is_bn_scale else name

    renamed = [(alias(n, s), s) for n, s in entries]
    values = backbone_golden.seeded_state(renamed)
    return {n: values[r] for (n, _), (r, _) in zip(entries, renamed)}


def summarize(outputs: Sequence[np.ndarray]) -> List[Dict[str, Any]]:
    sys.path.insert(0, str(REPO / "tests"))
    import backbone_golden

    return backbone_golden.summary(outputs)


def ppdet_outputs(size: str, ppdet_root: Path) -> List[np.ndarray]:
    import paddle
    from ppdet_import import import_with_stubs

    workspace = import_with_stubs(ppdet_root, "ppdet.core.workspace")
    import_with_stubs(ppdet_root, "ppdet.modeling")
    cfg = workspace.load_config(str(ppdet_root / CONFIG.format(size.lower())))
    model = workspace.create(cfg.architecture)
    parts = [("backbone.", model.backbone), ("neck.", model.neck)]
    entries = [(prefix + k, v.shape) for prefix, layer in parts for k, v in layer.state_dict().items()]
    values = seeded_values(entries)
    for prefix, layer in parts:
        for key, tensor in layer.state_dict().items():
            tensor.set_value(values[prefix + key])
        layer.eval()
    model.neck.eval_size = None  # the input is not 640 x 640
    with paddle.no_grad():
        feats = model.backbone({"image": paddle.to_tensor(image())})
        fused, mask_feat = model.neck(list(feats))
    return [t.numpy() for t in list(feats) + list(fused) + [mask_feat]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ppdet-root", type=Path, required=True)
    args = parser.parse_args()
    record = {size: summarize(ppdet_outputs(size, args.ppdet_root)) for size in SIZES}
    body = ",\n".join(f' "{size}": [\n  ' + ",\n  ".join(json.dumps(level) for level in outs) + "\n ]"
                      for size, outs in record.items())
    OUT.write_text("{\n" + body + "\n}\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
