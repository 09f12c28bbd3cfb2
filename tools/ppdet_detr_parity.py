"""Mask-RT-DETR against PaddleDetection, whole model: detections (--part predict) and loss terms
(--part loss) on the same random weights and the same preprocessed input; backbone + encoder outputs
(--part backbone_neck).

PaddleDetection runs in its own Python (numpy<2): it builds its model from its config with random weights
(random BN statistics too), writes them as .pdparams, runs, and saves inputs and outputs as .npz; this
process loads the weights by name into InstSeg's model and compares.
- predict: batch 1 at 640 x 640 (PaddleDetection's eval size) with an original size of 480 x 600:
  same top queries (class and order), scores within 1e-4, boxes within 1e-3 px, mask IoU >= 0.99.
- loss: one fixed batch of 2 images with targets, denoising off, training mode; both sides seed Paddle's
  generator identically right before the loss, so the matcher's and the loss's random points agree;
  every term within 1e-4 relative.
- backbone_neck: the PPHGNetV2 maps, the MaskHybridEncoder's fused levels and mask prototypes, batch 2, at
  640 x 640 (PaddleDetection's cached eval-size position embedding) and 320 x 416 (embedding computed from
  the shape); every output within 1e-4 x max(1, max |reference|). Result (2026-12-01, paddle 3.3.1 CPU):
  S and L bitwise equal at both sizes; with the embedding's token order changed it reports DIFFERENT
  (up to 1.1e-3), so the check sees the embedding.

    python tools/ppdet_detr_parity.py --ppdet-root /work/peer --ppdet-python /work/peer/.venv/bin/python \
        --model Mask-RT-DETR-S --part predict loss
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/mask_rtdetr/mask_rtdetr_hgnetv2_{}_6x_coco.yml"
ORIGINAL = (480.0, 600.0)  # original (h, w) of the predict input; resized to 640 x 640
LOSS_SEED = 1234
LOSS_SIZE = 320
ENCODER_SIZES = [(640, 640), (320, 416)]  # PaddleDetection's eval size (cached embedding), another aspect


def _ppdet_model(name: str, ppdet_root: str):
    import paddle

    sys.path.insert(0, str(REPO / "tools"))
    from ppdet_import import import_with_stubs  # PaddleDetection's optional imports, stubbed

    workspace = import_with_stubs(Path(ppdet_root), "ppdet.core.workspace")
    import_with_stubs(Path(ppdet_root), "ppdet.modeling")
    paddle.seed(0)
    cfg = workspace.load_config(str(Path(ppdet_root) / CONFIG.format(name.rsplit("-", 1)[1].lower())))
    model = workspace.create(cfg.architecture)
    rng = np.random.default_rng(0)
    for key, value in model.state_dict().items():
        if key.endswith("._mean"):  # fresh BN is the identity map: give the comparison real statistics
            value.set_value(rng.normal(0.0, 0.2, value.shape).astype("float32"))
        elif key.endswith("._variance"):
            value.set_value(rng.uniform(0.5, 2.0, value.shape).astype("float32"))
    return model


def _predict_inputs() -> Dict[str, np.ndarray]:
    image = np.random.default_rng(1).uniform(0.0, 1.0, (1, 3, 640, 640)).astype("float32")
    scale = np.array([[640.0 / ORIGINAL[0], 640.0 / ORIGINAL[1]]], "float32")
    return {"image": image, "im_shape": np.array([[640.0, 640.0]], "float32"), "scale_factor": scale}


def _loss_batch() -> Dict[str, list]:
    """Two images with 3 and 2 box-shaped instances: cxcywh boxes / image size, class ids, 0/1 masks."""
    rng = np.random.default_rng(2)
    size = LOSS_SIZE
    batch: Dict[str, list] = {"image": [], "gt_class": [], "gt_bbox": [], "gt_mask": [], "gt_xyxy": []}
    for count in (3, 2):
        batch["image"].append(rng.uniform(0.0, 1.0, (3, size, size)).astype("float32"))
        x1, y1 = rng.integers(0, size // 2, count), rng.integers(0, size // 2, count)
        x2, y2 = x1 + rng.integers(40, size // 2, count), y1 + rng.integers(40, size // 2, count)
        xyxy = np.stack([x1, y1, x2, y2], 1).astype("float32")
        masks = np.zeros((count, size, size), "float32")
        for m, (a, b, c, d) in zip(masks, xyxy.astype(int)):
            m[b:d, a:c] = 1.0
        cxcywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1) / size
        batch["gt_class"].append(rng.integers(0, 80, (count, 1)).astype("int32"))
        batch["gt_bbox"].append(cxcywh.astype("float32"))
        batch["gt_mask"].append(masks)
        batch["gt_xyxy"].append(xyxy)
    return batch


def ppdet_side(name: str, ppdet_root: str, parts, out_dir: str) -> None:
    """Run PaddleDetection: out_dir/weights.pdparams, predict.npz, loss.npz."""
    import paddle

    model = _ppdet_model(name, ppdet_root)
    paddle.save(model.state_dict(), str(Path(out_dir) / "weights.pdparams"))
    if "backbone_neck" in parts:  # first: the training-mode loss run moves the encoder's BN statistics
        _ppdet_backbone_neck(model, out_dir)
    if "predict" in parts:
        model.eval()
        inputs = _predict_inputs()
        with paddle.no_grad():
            out = model({k: paddle.to_tensor(v) for k, v in inputs.items()})
        np.savez(Path(out_dir) / "predict.npz", **{k: v.numpy() for k, v in out.items()})
    if "loss" in parts:
        model.train()
        model.transformer.num_denoising = 0
        batch = _loss_batch()
        inputs = {"image": paddle.to_tensor(np.stack(batch["image"])),
                  "gt_class": [paddle.to_tensor(c) for c in batch["gt_class"]],
                  "gt_bbox": [paddle.to_tensor(b) for b in batch["gt_bbox"]],
                  "gt_segm": [paddle.to_tensor(m) for m in batch["gt_mask"]]}
        paddle.seed(LOSS_SEED)
        losses = model(inputs)
        terms = {k: v.numpy().reshape([]) for k, v in losses.items() if k != "loss"}
        np.savez(Path(out_dir) / "loss.npz", **terms)


def _ppdet_backbone_neck(model, out_dir: str) -> None:
    """Per ENCODER_SIZES entry, out_dir/encoder_<h>x<w>.npz: the image, 4 backbone maps, 3 encoder levels and
    the mask prototypes (eval mode)."""
    import paddle

    model.eval()
    rng = np.random.default_rng(3)
    eval_size = model.neck.eval_size
    for h, w in ENCODER_SIZES:
        if (h, w) != (640, 640):
            model.neck.eval_size = None  # its cached embedding is for 640 x 640 only
        image = rng.uniform(0.0, 1.0, (2, 3, h, w)).astype("float32")
        with paddle.no_grad():
            feats = model.backbone({"image": paddle.to_tensor(image)})
            fused, mask_feat = model.neck(list(feats))  # it pops the stride-4 map from the list it gets
        arrays = {f"backbone{i}": t.numpy() for i, t in enumerate(feats)}
        arrays.update({f"neck{i}": t.numpy() for i, t in enumerate(fused)})
        np.savez(Path(out_dir) / f"encoder_{h}x{w}.npz", image=image, mask_feat=mask_feat.numpy(), **arrays)
    model.neck.eval_size = eval_size  # later parts run PaddleDetection's own eval path


def _our_model(name: str, state):
    sys.path.insert(0, str(REPO))
    from engine.models.zoo import build_model

    model = build_model(name, None, 80)
    model.set_state_dict(state)
    return model


def compare_predict(model, ref) -> bool:
    import paddle

    model.eval()
    with paddle.no_grad():
        out = model.predict({k: paddle.to_tensor(v) for k, v in _predict_inputs().items()})
    ours, theirs = out["bbox"].numpy(), ref["bbox"]
    same_queries = ours.shape == theirs.shape and bool((ours[:, 0] == theirs[:, 0]).all())
    score_diff = float(np.abs(ours[:, 1] - theirs[:, 1]).max())
    box_diff = float(np.abs(ours[:, 2:] - theirs[:, 2:]).max())
    mh, mw = ref["mask"].shape[1:]
    a, b = out["mask"].numpy()[:, :mh, :mw].astype(bool), ref["mask"].astype(bool)
    inter, union = (a & b).sum((1, 2)), (a | b).sum((1, 2))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    ok = same_queries and score_diff <= 1e-4 and box_diff <= 1e-3 and float(iou.min()) >= 0.99
    print(f"predict: {len(theirs)} detections, same classes in order: {same_queries}, max |score diff| "
          f"{score_diff:.1e}, max |box diff| {box_diff:.1e} px, min mask IoU {iou.min():.4f} "
          f"-> {'same' if ok else 'DIFFERENT'}")
    return ok


def compare_loss(model, ref) -> bool:
    import paddle

    model.train()
    model.transformer.cfg.num_denoising = 0
    batch = _loss_batch()
    size = LOSS_SIZE
    inputs = {"image": paddle.to_tensor(np.stack(batch["image"])),
              "im_shape": paddle.to_tensor([[size, size]] * 2, "float32"),
              "gt_bbox": [paddle.to_tensor(b) for b in batch["gt_xyxy"]],
              "gt_class": [paddle.to_tensor(c.reshape([-1])) for c in batch["gt_class"]],
              "gt_mask": [paddle.to_tensor(m.astype("uint8")) for m in batch["gt_mask"]],
              "is_crowd": [paddle.zeros([len(c)], "int32") for c in batch["gt_class"]]}
    paddle.seed(LOSS_SEED)
    losses = {k: float(v) for k, v in model.loss(inputs).items()}
    ok = sorted(losses) == sorted(ref.files)
    worst = 0.0
    for key in ref.files:
        theirs = float(ref[key])
        rel = abs(losses.get(key, np.inf) - theirs) / max(abs(theirs), 1e-12) if theirs else abs(losses[key])
        worst = max(worst, rel)
        if rel > 1e-4:
            print(f"  {key}: ours {losses.get(key)} theirs {theirs} (rel {rel:.1e})")
    ok = ok and worst <= 1e-4
    verdict = "same" if ok else "DIFFERENT"
    print(f"loss: {len(ref.files)} terms, max relative difference {worst:.1e} -> {verdict}")
    return ok


def compare_backbone_neck(model, out_dir: str) -> bool:
    import paddle

    model.eval()
    ok = True
    for h, w in ENCODER_SIZES:
        ref = np.load(Path(out_dir) / f"encoder_{h}x{w}.npz")
        with paddle.no_grad():
            feats = model.backbone(paddle.to_tensor(ref["image"]))
            fused, mask_feat = model.neck(feats)
        ours = {f"backbone{i}": t for i, t in enumerate(feats)}
        ours.update({f"neck{i}": t for i, t in enumerate(fused)}, mask_feat=mask_feat)
        report = []
        for key, tensor in ours.items():
            a, b = ref[key], tensor.numpy()
            scale = max(1.0, float(np.abs(a).max()))
            diff = float(np.abs(a - b).max()) / scale if a.shape == b.shape else float("inf")
            ok = ok and diff <= 1e-4
            report.append(f"{key} {list(b.shape)} {diff:.1e} (max |ref| {float(np.abs(a).max()):.3g})")
        print(f"backbone_neck {h}x{w}: max |diff| / max(1, max |ref|): {', '.join(report)}")
    print(f"backbone_neck -> {'same' if ok else 'DIFFERENT'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ppdet-root", required=True)
    parser.add_argument("--ppdet-python", default=sys.executable)
    parser.add_argument("--model", default="Mask-RT-DETR-S")
    parser.add_argument("--part", nargs="+", default=["predict", "loss"],
                        choices=["predict", "loss", "backbone_neck"])
    parser.add_argument("--ppdet-side", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ppdet_side:
        ppdet_side(args.model, args.ppdet_root, args.part, args.ppdet_side)
        return 0
    import paddle

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([args.ppdet_python, __file__, "--ppdet-root", args.ppdet_root, "--model", args.model,
                        "--part", *args.part, "--ppdet-side", tmp], check=True)
        model = _our_model(args.model, paddle.load(str(Path(tmp) / "weights.pdparams")))
        ok = True
        if "backbone_neck" in args.part:  # first, as on PaddleDetection's side
            ok = compare_backbone_neck(model, tmp) and ok
        if "predict" in args.part:
            ok = compare_predict(model, np.load(Path(tmp) / "predict.npz")) and ok
        if "loss" in args.part:
            ok = compare_loss(model, np.load(Path(tmp) / "loss.npz")) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
