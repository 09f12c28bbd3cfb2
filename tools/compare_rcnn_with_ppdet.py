"""Check an InstSeg R-CNN model against PaddleDetection's implementation: same weights, same input,
same detections and masks.

PaddleDetection builds its model from its own config with random weights; they are copied into ours
by name (the names are identical, see tests/test_param_parity.py). The box predictors are damped and
two class biases raised so that scores come from the biases and there are detections to compare.
Inputs use a non-unit scale_factor, so the rescaling to original pixels is compared too.

    python tools/compare_rcnn_with_ppdet.py --ppdet-root /path/to/PaddleDetection [--model NAME ...]

Needs a Python where both import (PaddleDetection wants numpy<2). Exit status 1 on a missing detection
or on a mask differing by more than PIXEL_TOLERANCE pixels.
Known, intended difference: PaddleDetection keeps boxes that become empty after clipping (label -1)
among its keep_top_k; InstSeg drops them before NMS, so it may report extra detections in their place.

Mask-RT-DETR (--model Mask-RT-DETR-S ...) runs PaddleDetection in its own Python (--ppdet-python, numpy<2),
which writes its random weights (random BN statistics too) as .pdparams and its inputs and outputs as .npz;
this process loads them into InstSeg's model and compares. --part backbone_neck: the PPHGNetV2 maps and the
MaskHybridEncoder's fused levels and mask prototypes, batch 2, at 640 x 640 (PaddleDetection's cached
eval-size position embedding) and 320 x 416 (computed from the shape); every output within
DETR_TOLERANCE x max(1, max |reference|).

    python tools/compare_rcnn_with_ppdet.py --ppdet-root /work/peer \
        --ppdet-python /work/peer/.venv/bin/python --model Mask-RT-DETR-S Mask-RT-DETR-L --part backbone_neck

Result (2026-12-01, paddle 3.3.1 CPU, that command): every backbone, encoder and mask-prototype output of S
and L at both sizes is bitwise equal (max |diff| 0); with the position embedding's token order changed the
same run reports DIFFERENT (up to 1.1e-3), so the check sees the embedding.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PIXEL_TOLERANCE = 2  # differing mask pixels allowed per matched detection
CONFIGS = {
    "MaskRCNN-ResNet50": "configs/mask_rcnn/mask_rcnn_r50_1x_coco.yml",
    "MaskRCNN-ResNet50-FPN": "configs/mask_rcnn/mask_rcnn_r50_fpn_1x_coco.yml",
    "MaskRCNN-ResNet50-vd-FPN": "configs/mask_rcnn/mask_rcnn_r50_vd_fpn_1x_coco.yml",
    "MaskRCNN-ResNet101-FPN": "configs/mask_rcnn/mask_rcnn_r101_fpn_1x_coco.yml",
    "MaskRCNN-ResNet101-vd-FPN": "configs/mask_rcnn/mask_rcnn_r101_vd_fpn_1x_coco.yml",
    "MaskRCNN-ResNeXt101-vd-FPN": "configs/mask_rcnn/mask_rcnn_x101_vd_64x4d_fpn_1x_coco.yml",
    "Cascade-MaskRCNN-ResNet50-FPN": "configs/cascade_rcnn/cascade_mask_rcnn_r50_fpn_1x_coco.yml",
    "Cascade-MaskRCNN-ResNet50-vd-SSLDv2-FPN":
        "configs/cascade_rcnn/cascade_mask_rcnn_r50_vd_fpn_ssld_1x_coco.yml",
}
DETR_CONFIGS = {f"Mask-RT-DETR-{size}": f"configs/mask_rtdetr/mask_rtdetr_hgnetv2_{size.lower()}_6x_coco.yml"
                for size in "SMLXH"}
DETR_SIZES = [(640, 640), (320, 416)]  # PaddleDetection's eval size (cached embedding), another aspect
DETR_TOLERANCE = 1e-4


def _models(name: str, ppdet_root: str, keep_top_k: int):
    import paddle

    sys.path.insert(0, ppdet_root)
    sys.path.insert(0, str(REPO))
    from ppdet.core.workspace import create, load_config

    from engine.config.architectures import RCNNArchitecture
    from engine.models.zoo import build_model

    paddle.seed(0)
    cfg = load_config(str(Path(ppdet_root) / CONFIGS[name]))
    cfg["BBoxPostProcess"]["nms"]["keep_top_k"] = keep_top_k
    theirs = create(cfg.architecture)
    state = theirs.state_dict()
    for key, value in state.items():
        if "bbox_score" in key and key.endswith("bias"):
            bias = value.numpy()
            bias[:2] = [6.0, 5.0]
            value.set_value(bias)
        elif ("bbox_score" in key or "bbox_delta" in key) and key.endswith("weight"):
            value.set_value(value.numpy() * 0.01)
        elif "branch2c.norm.weight" in key:  # damp residual branches: deep random nets overflow otherwise
            value.set_value(value.numpy() * 0.2)
    ours = build_model(name, RCNNArchitecture(keep_top_k=keep_top_k), 80)
    ours.set_state_dict(state)
    theirs.eval()
    ours.eval()
    return theirs, ours


def compare(name: str, ppdet_root: str, size: Tuple[int, int], keep_top_k: int) -> bool:
    import paddle

    theirs, ours = _models(name, ppdet_root, keep_top_k)
    h, w = size
    image = np.random.default_rng(0).normal(0, 1, (1, 3, h, w)).astype("float32")
    inputs = {"image": paddle.to_tensor(image), "im_shape": paddle.to_tensor([[float(h), float(w - 11)]]),
              "scale_factor": paddle.to_tensor([[0.8, 0.75]])}
    with paddle.no_grad():
        a, b = theirs(inputs), ours.predict(inputs)
    # PaddleDetection marks boxes emptied by clipping with label -1 and, for an image without
    # detections, returns one placeholder row of score 0
    rows_a: Dict[tuple, int] = {tuple(np.round(r, 1)): i for i, r in enumerate(a["bbox"].numpy())
                                if r[0] >= 0 and r[1] > 0}
    rows_b: Dict[tuple, int] = {tuple(np.round(r, 1)): i for i, r in enumerate(b["bbox"].numpy())}
    masks_a, masks_b = a["mask"].numpy(), b["mask"].numpy()
    mh, mw = masks_a.shape[1:]
    differing = [int((masks_a[i] != masks_b[rows_b[k], :mh, :mw]).sum())
                 for k, i in rows_a.items() if k in rows_b]
    missing = sorted(set(rows_a) - set(rows_b))
    extra = sorted(set(rows_b) - set(rows_a))
    # a pixel whose probability is within float rounding of the 0.5 threshold may flip
    ok = not missing and max(differing, default=0) <= PIXEL_TOLERANCE
    print(f"{name}: {len(rows_a)} PaddleDetection detections, {len(missing)} missing here, {len(extra)} "
          f"extra here; mask pixels differing per matched detection: max {max(differing, default=0)} -> "
          f"{'same' if ok else 'DIFFERENT'}")
    return ok


def ppdet_backbone_neck_outputs(name: str, ppdet_root: str, out_dir: str) -> None:
    """PaddleDetection's side (run in its Python): out_dir/weights.pdparams (random weights, random BN
    statistics) and, per DETR_SIZES entry, out_dir/<h>x<w>.npz with the image, the 4 backbone maps, the 3
    encoder levels and the mask prototypes."""
    import paddle
    from make_backbone_golden import import_with_stubs  # PaddleDetection's optional imports, stubbed

    workspace = import_with_stubs(Path(ppdet_root), "ppdet.core.workspace")
    import_with_stubs(Path(ppdet_root), "ppdet.modeling")  # registers the layers `create` builds
    create, load_config = workspace.create, workspace.load_config
    paddle.seed(0)
    model = create(load_config(str(Path(ppdet_root) / DETR_CONFIGS[name])).architecture)
    model.eval()
    rng = np.random.default_rng(0)
    for key, value in model.state_dict().items():
        if key.endswith("._mean"):  # fresh BN is the identity map: give the comparison real statistics
            value.set_value(rng.normal(0.0, 0.2, value.shape).astype("float32"))
        elif key.endswith("._variance"):
            value.set_value(rng.uniform(0.5, 2.0, value.shape).astype("float32"))
    paddle.save(model.state_dict(), str(Path(out_dir) / "weights.pdparams"))
    for h, w in DETR_SIZES:
        if (h, w) != (640, 640):
            model.neck.eval_size = None  # its cached embedding is for 640 x 640 only
        image = rng.uniform(0.0, 1.0, (2, 3, h, w)).astype("float32")
        with paddle.no_grad():
            feats = model.backbone({"image": paddle.to_tensor(image)})
            fused, mask_feat = model.neck(list(feats))
        arrays = {f"backbone{i}": t.numpy() for i, t in enumerate(feats)}
        arrays.update({f"neck{i}": t.numpy() for i, t in enumerate(fused)})
        np.savez(Path(out_dir) / f"{h}x{w}.npz", image=image, mask_feat=mask_feat.numpy(), **arrays)


def compare_backbone_neck(name: str, ppdet_root: str, ppdet_python: str) -> bool:
    """InstSeg's PPHGNetV2 + MaskHybridEncoder against PaddleDetection's outputs (see the module doc)."""
    import paddle

    sys.path.insert(0, str(REPO))
    from engine.models.detectors.mask_rt_detr_parts import build_backbone_and_neck

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([ppdet_python, "-W", "ignore", __file__, "--ppdet-root", ppdet_root, "--model", name,
                        "--part", "backbone_neck", "--ppdet-side", tmp], check=True)
        state = paddle.load(str(Path(tmp) / "weights.pdparams"))
        backbone, neck = build_backbone_and_neck(name.rsplit("-", 1)[1])
        for prefix, layer in (("backbone.", backbone), ("neck.", neck)):
            layer.set_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            layer.eval()
        ok = True
        for h, w in DETR_SIZES:
            ref = np.load(Path(tmp) / f"{h}x{w}.npz")
            with paddle.no_grad():
                feats = backbone(paddle.to_tensor(ref["image"]))
                fused, mask_feat = neck(feats)
            ours = {f"backbone{i}": t for i, t in enumerate(feats)}
            ours.update({f"neck{i}": t for i, t in enumerate(fused)}, mask_feat=mask_feat)
            ok = _report(f"{name} {h}x{w}", ours, ref) and ok
    return ok


def _report(label: str, ours: Dict[str, "np.ndarray"], ref: "np.lib.npyio.NpzFile") -> bool:
    """Print the worst relative difference per output; True if all are within DETR_TOLERANCE."""
    worst: List[str] = []
    ok = True
    for key, tensor in ours.items():
        a, b = ref[key], tensor.numpy()
        scale = max(1.0, float(np.abs(a).max()))
        diff = float(np.abs(a - b).max()) / scale if a.shape == b.shape else float("inf")
        ok = ok and diff <= DETR_TOLERANCE
        worst.append(f"{key} {list(b.shape)} {diff:.1e} (max |ref| {float(np.abs(a).max()):.3g})")
    print(f"{label}: {'same' if ok else 'DIFFERENT'} (max |diff| / max(1, max |ref|): {', '.join(worst)})")
    return ok


DETR_PARTS = {"backbone_neck": (ppdet_backbone_neck_outputs, compare_backbone_neck)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ppdet-root", required=True, help="a PaddleDetection checkout")
    parser.add_argument("--model", nargs="+", default=list(CONFIGS),
                        choices=list(CONFIGS) + list(DETR_CONFIGS))
    parser.add_argument("--size", nargs=2, type=int, default=[320, 416], help="input h w (multiples of 32)")
    parser.add_argument("--keep-top-k", type=int, default=16)
    parser.add_argument("--ppdet-python", default=sys.executable,
                        help="Mask-RT-DETR: the Python that runs PaddleDetection (its numpy<2 venv)")
    parser.add_argument("--part", default="backbone_neck", choices=list(DETR_PARTS),
                        help="Mask-RT-DETR: what to compare")
    parser.add_argument("--ppdet-side", metavar="DIR", help=argparse.SUPPRESS)  # internal: ppdet's run
    args = parser.parse_args()
    if len(args.model) == 1 and args.model[0] in DETR_CONFIGS:
        ppdet_side, our_side = DETR_PARTS[args.part]
        if args.ppdet_side:
            ppdet_side(args.model[0], args.ppdet_root, args.ppdet_side)
            return 0
        return 0 if our_side(args.model[0], args.ppdet_root, args.ppdet_python) else 1
    if len(args.model) == 1:
        return 0 if compare(args.model[0], args.ppdet_root, tuple(args.size), args.keep_top_k) else 1
    # PaddleDetection's config registry is global: one process per model
    argv = [sys.executable, __file__, "--ppdet-root", args.ppdet_root, "--keep-top-k", str(args.keep_top_k),
            "--size", *map(str, args.size), "--ppdet-python", args.ppdet_python, "--part", args.part,
            "--model"]
    codes = [subprocess.run(argv + [m]).returncode for m in args.model]
    return 0 if not any(codes) else 1


if __name__ == "__main__":
    sys.exit(main())
