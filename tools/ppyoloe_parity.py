"""PP-YOLOE_seg-S against PaddleDetection (the PP-YOLOE part of tools/compare_with_ppdet.py).

PaddleDetection needs numpy<2 and InstSeg's config stack does not import there, so the two sides run in
their own Pythons and exchange one .npz: the PaddleDetection side (`python tools/ppyoloe_parity.py
--ppdet-root R --out F`) builds its model, perturbs the randomly initialised predictors so that there
are varied scores, boxes and masks, and writes the weights, a preprocessed input, its detections and masks
and its loss terms on a fixed batch with targets; `compare(F)` here loads the same weights into ours.

Acceptance: same detections (class, score within 1e-5), boxes within 1e-3 px, mask IoU >= 0.99 per
instance, weighted loss terms within 1e-4 relative.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PPDET_CONFIG = "configs/ppyoloe_seg/ppyoloe_seg_s_80e_coco.yml"
PRED_SIZE = (320, 416)  # network input for the detection comparison (not square, not 640)
PRED_SCALE = (0.64, 0.8)  # resized / original: original 500 x 520
LOSS_SIZE = 640  # PaddleDetection's mask loss assumes 640 x 640 inputs
LOSS_WEIGHTS = {"loss_cls": 1.0, "loss_iou": 2.5, "loss_dfl": 0.5, "loss_mask": 2.5}


def predict_inputs() -> Dict[str, np.ndarray]:
    h, w = PRED_SIZE
    image = np.random.default_rng(0).uniform(0, 1, (1, 3, h, w)).astype("float32")
    return {"image": image, "im_shape": np.array([[h, w]], "float32"),
            "scale_factor": np.array([PRED_SCALE], "float32")}


def loss_batch() -> Dict[str, List[np.ndarray]]:
    """Two 640 x 640 images: three objects and one (PaddleDetection's PadGT pads the second to three)."""
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (2, 3, LOSS_SIZE, LOSS_SIZE)).astype("float32")
    boxes = [np.array([[40, 60, 300, 280], [320, 100, 600, 500], [100, 400, 260, 620]], "float32"),
             np.array([[200, 150, 450, 380]], "float32")]
    classes = [np.array([3, 0, 17], "int32"), np.array([5], "int32")]
    masks = []
    for b in boxes:
        m = np.zeros((len(b), LOSS_SIZE, LOSS_SIZE), "uint8")
        yy, xx = np.mgrid[:LOSS_SIZE, :LOSS_SIZE]
        for i, (x1, y1, x2, y2) in enumerate(b):  # an ellipse inscribed in each box
            cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
            m[i] = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype("uint8")
        masks.append(m)
    return {"image": image, "gt_bbox": boxes, "gt_class": classes, "gt_mask": masks}


def ppdet_side(ppdet_root: str, out: str) -> None:
    """Run in PaddleDetection's Python: write weights, input, detections, masks and losses to `out`."""
    import paddle

    sys.path.insert(0, str(Path(__file__).parent))
    from ppdet_import import import_with_stubs

    workspace = import_with_stubs(Path(ppdet_root), "ppdet.core.workspace")
    import_with_stubs(Path(ppdet_root), "ppdet.modeling")
    create, load_config = workspace.create, workspace.load_config

    paddle.seed(0)
    cfg = load_config(str(Path(ppdet_root) / PPDET_CONFIG))
    cfg["eval_size"] = None  # anchors from the feature shapes (its default precomputes them for 640 x 640)
    model = create(cfg.architecture)
    rng = np.random.default_rng(2)
    for key, value in model.state_dict().items():
        shape = value.shape
        if "pred_cls" in key and key.endswith("weight") or "pred_reg" in key and key.endswith("weight"):
            value.set_value(rng.normal(0, 0.01, shape).astype("float32"))
        elif "pred_cls" in key:  # class 0 scores around 0.5, class 1 near the 0.01 threshold, the rest below
            value.set_value(np.array([0.0, -4.5] + [-8.0] * (shape[0] - 2), "float32"))
        elif "pred_reg" in key:
            value.set_value(rng.normal(0, 1, shape).astype("float32"))
        elif "pred_ins" in key and key.endswith("weight") or key.endswith("proto.conv3.bn.weight"):
            # random deep features are tiny here: scale prototypes and coefficients to logits of order 1,
            # so that masks are not decided by rounding around probability 0.5
            value.set_value(value.numpy() * (300.0 if "pred_ins" in key else 3000.0))
    record = {f"param/{k}": v.numpy() for k, v in model.state_dict().items()}
    inputs = predict_inputs()
    model.eval()
    with paddle.no_grad():
        pred = model({k: paddle.to_tensor(v) for k, v in inputs.items()})
    record.update({f"pred/{k}": pred[k].numpy() for k in ("bbox", "bbox_num", "mask")})
    batch = loss_batch()
    model.train()
    size = len(batch["gt_bbox"][0])
    feed = {"image": paddle.to_tensor(batch["image"]), "epoch_id": 0, "gt_bbox": [], "gt_class": [],
            "pad_gt_mask": [], "gt_segm": []}
    for box, cls, mask in zip(batch["gt_bbox"], batch["gt_class"], batch["gt_mask"]):
        pad = size - len(box)
        feed["gt_bbox"].append(paddle.to_tensor(np.pad(box, [(0, pad), (0, 0)])))
        feed["gt_class"].append(paddle.to_tensor(np.pad(cls, [(0, pad)])[:, None]))
        feed["pad_gt_mask"].append(paddle.to_tensor((np.arange(size) < len(box)).astype("float32")[:, None]))
        feed["gt_segm"].append(paddle.to_tensor(np.pad(mask, [(0, pad), (0, 0), (0, 0)])))
    losses = model(feed)
    record.update({f"loss/{k}": float(losses[k]) * w for k, w in LOSS_WEIGHTS.items()})
    np.savez_compressed(out, **record)


def _ours(params: Dict[str, np.ndarray]):
    import paddle

    sys.path.insert(0, str(REPO))
    from engine.models.zoo import build_model

    model = build_model("PP-YOLOE_seg-S", None, 80)
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in params.items()})
    return model


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def compare(reference: str) -> bool:
    """Load PaddleDetection's record, run ours on the same weights and inputs, print and judge."""
    import paddle

    ref = dict(np.load(reference))
    model = _ours({k[len("param/"):]: v for k, v in ref.items() if k.startswith("param/")})
    model.eval()
    with paddle.no_grad():
        pred = model.predict({k: paddle.to_tensor(v) for k, v in predict_inputs().items()})
    theirs, ours = ref["pred/bbox"], pred["bbox"].numpy()
    masks_t, masks_o = ref["pred/mask"] > 0.5, pred["mask"].numpy() > 0
    unmatched, box_err, score_err, ious = list(range(len(ours))), 0.0, 0.0, []
    missing = 0
    for i, row in enumerate(theirs):
        cands = [j for j in unmatched if ours[j, 0] == row[0] and np.abs(ours[j, 2:] - row[2:]).max() < 1e-2]
        if not cands:
            missing += 1
            continue
        j = min(cands, key=lambda c: np.abs(ours[c, 2:] - row[2:]).max())
        unmatched.remove(j)
        box_err = max(box_err, float(np.abs(ours[j, 2:] - row[2:]).max()))
        score_err = max(score_err, float(abs(ours[j, 1] - row[1])))
        h, w = min(masks_t.shape[1], masks_o.shape[1]), min(masks_t.shape[2], masks_o.shape[2])
        ious.append(_mask_iou(masks_t[i, :h, :w], masks_o[j, :h, :w]))
    det_ok = missing == 0 and not unmatched and box_err <= 1e-3 and score_err <= 1e-5
    mask_ok = min(ious, default=1.0) >= 0.99
    print(f"PP-YOLOE_seg-S detections: PaddleDetection {len(theirs)}, ours {len(ours)}, missing {missing}, "
          f"extra {len(unmatched)}; max box difference {box_err:.2e} px, "
          f"max score difference {score_err:.2e}; "
          f"mask IoU min {min(ious, default=1.0):.5f} mean {np.mean(ious) if ious else 1.0:.5f}")
    losses_ok = _compare_losses(model, ref)
    ok = det_ok and mask_ok and losses_ok
    print("PP-YOLOE_seg-S: " + ("same" if ok else "DIFFERENT"))
    return ok


def _compare_losses(model, ref: Dict[str, np.ndarray]) -> bool:
    import paddle

    batch = loss_batch()
    feed = {"image": paddle.to_tensor(batch["image"]),
            "gt_bbox": [paddle.to_tensor(b) for b in batch["gt_bbox"]],
            "gt_class": [paddle.to_tensor(c) for c in batch["gt_class"]],
            "gt_mask": [paddle.to_tensor(m) for m in batch["gt_mask"]],
            "is_crowd": [paddle.zeros([len(b)], "int32") for b in batch["gt_bbox"]]}
    model.train()
    ours = {k: float(v) for k, v in model.loss(feed).items()}
    ok = True
    for key in LOSS_WEIGHTS:
        theirs = float(ref[f"loss/{key}"])
        rel = abs(ours[key] - theirs) / max(abs(theirs), 1e-12)
        ok &= rel <= 1e-4
        print(f"  {key}: PaddleDetection {theirs:.7g}, ours {ours[key]:.7g}, relative difference {rel:.1e}")
    return ok


def run(ppdet_root: str, ppdet_python: str, work_dir: Optional[str]) -> int:
    """Both sides: PaddleDetection in `ppdet_python`, then the comparison here. Exit status 0 = same."""
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        out = str(Path(tmp) / "ppdet_ppyoloe_seg.npz")
        subprocess.run([ppdet_python, __file__, "--ppdet-root", ppdet_root, "--out", out], check=True)
        return 0 if compare(out) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="PaddleDetection side of the PP-YOLOE_seg-S comparison")
    parser.add_argument("--ppdet-root", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    ppdet_side(args.ppdet_root, args.out)
