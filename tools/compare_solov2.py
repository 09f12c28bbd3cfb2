"""SOLOv2 part of tools/compare_with_ppdet.py: PaddleDetection and InstSeg on the same weights and the same
preprocessed inputs; the same kept instances (class, score within SCORE_TOL, mask IoU >= MIN_MASK_IOU) and the
same losses (each within LOSS_RTOL, relative) on one fixed batch with targets.

PaddleDetection wants numpy < 2 and InstSeg numpy 2, so the two sides run in their own Pythons and
exchange files in a work folder: PaddleDetection's side (`ppdet_side`) builds its model from its own
config with random weights (residual branches damped so a deep random net does not overflow, two class
biases raised so that there are instances to compare), saves them with `paddle.save(state_dict())` (the
7 aliased tensors under both names), runs inference on a random image (non-unit scale factor) and one
training batch of two images with generated instances through its own Gt2Solov2Target, and writes inputs,
outputs and losses to `ppdet.npz`. InstSeg's side loads that `.pdparams` with `load_weights` and runs the
same inputs; target assignment is ours (from the same boxes, classes and masks).

The input's scale factor is the same along both axes: PaddleDetection computes the original size from
the height's factor alone (keep-ratio resizing), InstSeg from each axis's own.
PaddleDetection appends placeholder rows (score 0, or a repeat of its lowest-scored instance) to every
result; rows under the update threshold are not instances and repeats count once.

Recorded run (2026-12-01, paddle 3.3.1 CPU, PaddleDetection 666f597, inference at 800 x 1344 input with
im_shape 800 x 1331, training batch 2 x 320 x 384 with 12 instances):

    python tools/compare_with_ppdet.py --model SOLOv2 --ppdet-root /work/peer \
        --ppdet-python /work/peer/.venv/bin/python --size 800 1344 --work /tmp/cmp_solo_full
    SOLOv2: 100 PaddleDetection instances, 0 without a match here (class, score within 0.0001), 0 extra
    here; mask IoU min 1.00000; losses loss_ins 2.546153 vs 2.546153 (rel 0.0e+00), loss_cate 52.245583 vs
    52.245579 (rel 7.3e-08) -> same

(The same at --size 320 416.) The `.pdparams` PaddleDetection saved holds both names of the 7 aliased
tensors; `load_weights` loaded all 333 tensors from it.
"""
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/solov2/solov2_r50_fpn_1x_coco.yml"
SCORE_TOL = 1e-4
MIN_MASK_IOU = 0.99
LOSS_RTOL = 1e-4
UPDATE_THRESHOLD = 0.05  # MaskMatrixNMS default: rows scored below are PaddleDetection's placeholders


def train_batch(size: Tuple[int, int]) -> Dict[str, np.ndarray]:
    """Two images with ellipse instances of several sizes (so several levels get targets): image float32
    [2, 3, H, W]; per image i `gt_bbox{i}` float32 [M, 4], `gt_class{i}` int32 [M], `gt_segm{i}` uint8
    [M, H, W]."""
    rng = np.random.default_rng(3)
    h, w = size
    out: Dict[str, np.ndarray] = {"image": rng.normal(0, 1, (2, 3, h, w)).astype("float32")}
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(2):
        masks, boxes = [], []
        for radius in (12, 30, 60, 110, 20, 45):
            ry, rx = radius * rng.uniform(0.6, 1.0), radius * rng.uniform(0.6, 1.0)
            cy, cx = rng.uniform(ry, h - ry), rng.uniform(rx, w - rx)
            mask = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype("uint8")
            ys, xs = np.nonzero(mask)
            masks.append(mask)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        out[f"gt_bbox{i}"] = np.array(boxes, "float32")
        out[f"gt_class{i}"] = rng.integers(0, 80, len(boxes)).astype("int32")
        out[f"gt_segm{i}"] = np.stack(masks)
    return out


def ppdet_side(ppdet_root: str, work: Path, size: Tuple[int, int]) -> None:
    """PaddleDetection's run (its own Python): writes work/weights.pdparams and work/ppdet.npz."""
    import paddle

    sys.path.insert(0, str(Path(__file__).parent))
    from ppdet_import import import_ppdet

    import_ppdet(ppdet_root)
    from ppdet.core.workspace import create, load_config
    from ppdet.data.transform.batch_operators import Gt2Solov2Target

    paddle.seed(0)
    model = create(load_config(str(Path(ppdet_root) / CONFIG)).architecture)
    for key, value in model.state_dict().items():
        if "branch2c.norm.weight" in key:
            value.set_value(value.numpy() * 0.2)
        elif key.endswith("solo_cate.bias"):
            bias = value.numpy()
            bias[:2] = [1.0, 0.0]
            value.set_value(bias)
    paddle.save(model.state_dict(), str(work / "weights.pdparams"))
    h, w = size
    rng = np.random.default_rng(0)
    record = {"image_eval": rng.normal(0, 1, (1, 3, h, w)).astype("float32"),
              "im_shape": np.array([[h, w - 13]], "float32"),
              "scale_factor": np.array([[0.8, 0.8]], "float32")}
    model.eval()
    with paddle.no_grad():
        out = model({"image": paddle.to_tensor(record["image_eval"]),
                     "im_shape": paddle.to_tensor(record["im_shape"]),
                     "scale_factor": paddle.to_tensor(record["scale_factor"])})
    record.update(segm=out["segm"].numpy(), label=out["cate_label"].numpy(), score=out["cate_score"].numpy())
    batch = train_batch((320, 384))
    samples = [{"image": batch["image"][i], "gt_bbox": batch[f"gt_bbox{i}"],
                "gt_class": batch[f"gt_class{i}"].reshape(-1, 1), "gt_segm": batch[f"gt_segm{i}"],
                "is_crowd": np.zeros((len(batch[f"gt_bbox{i}"]), 1), "int32"), "gt_poly": []}
               for i in range(2)]
    samples = Gt2Solov2Target()(samples)
    inputs = {k: paddle.to_tensor(np.stack([s[k] for s in samples])) for k in samples[0]}
    model.train()
    losses = model(inputs)
    record.update(batch, loss_ins=losses["loss_ins"].numpy(), loss_cate=losses["loss_cate"].numpy())
    np.savez(work / "ppdet.npz", **record)


def our_side(work: Path) -> Dict[str, np.ndarray]:
    """InstSeg's run on PaddleDetection's weights and inputs: segm, label, score, loss_ins, loss_cate."""
    import paddle

    sys.path.insert(0, str(REPO))
    from engine.models.weights import load_weights
    from engine.models.zoo import build_model

    data = dict(np.load(work / "ppdet.npz"))
    model = build_model("SOLOv2", None, 80)
    load_weights(model, work / "weights.pdparams")
    model.eval()
    with paddle.no_grad():
        out = model.predict({"image": paddle.to_tensor(data["image_eval"]),
                             "im_shape": paddle.to_tensor(data["im_shape"]),
                             "scale_factor": paddle.to_tensor(data["scale_factor"])})
    batch = {"image": paddle.to_tensor(data["image"]),
             "gt_bbox": [data[f"gt_bbox{i}"] for i in range(2)],
             "gt_class": [data[f"gt_class{i}"] for i in range(2)],
             "gt_mask": [data[f"gt_segm{i}"] for i in range(2)],
             "is_crowd": [np.zeros(len(data[f"gt_bbox{i}"]), "int32") for i in range(2)]}
    model.train()
    losses = model.loss(batch)
    bbox = out["bbox"].numpy()
    return {"segm": out["mask"].numpy(), "label": bbox[:, 0].astype("int64"), "score": bbox[:, 1],
            "loss_ins": losses["loss_ins"].numpy(), "loss_cate": losses["loss_cate"].numpy()}


def _instances(label: np.ndarray, score: np.ndarray) -> List[int]:
    """PaddleDetection's real rows: scored at least the update threshold, first of any repeat."""
    seen, rows = set(), []
    for i, (c, s) in enumerate(zip(label.reshape(-1), score.reshape(-1))):
        if s >= UPDATE_THRESHOLD and (int(c), float(s)) not in seen:
            seen.add((int(c), float(s)))
            rows.append(i)
    return rows


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    h, w = a.shape
    a, b = a.astype(bool), b[:h, :w].astype(bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def report(theirs: Dict[str, np.ndarray], ours: Dict[str, np.ndarray]) -> bool:
    """Print the comparison; True when instances, scores, masks and losses agree."""
    rows = _instances(theirs["label"], theirs["score"])
    unmatched, ious, used = 0, [], set()
    for i in rows:
        close = [j for j in range(len(ours["score"]))
                 if j not in used and ours["label"][j] == theirs["label"][i]
                 and abs(ours["score"][j] - theirs["score"][i]) <= SCORE_TOL]
        if not close:
            unmatched += 1
            continue
        best = max(close, key=lambda j: _mask_iou(theirs["segm"][i], ours["segm"][j]))
        used.add(best)
        ious.append(_mask_iou(theirs["segm"][i], ours["segm"][best]))
    extra = len(ours["score"]) - len(used)
    theirs = {**theirs, **{k: theirs[k].reshape(-1)[0] for k in ("loss_ins", "loss_cate")}}
    loss_diff = {k: abs(float(ours[k]) / float(theirs[k]) - 1.0) for k in ("loss_ins", "loss_cate")}
    ok = (unmatched == 0 and extra == 0 and min(ious, default=1.0) >= MIN_MASK_IOU
          and max(loss_diff.values()) <= LOSS_RTOL)
    print(f"SOLOv2: {len(rows)} PaddleDetection instances, {unmatched} without a match here (class, score "
          f"within {SCORE_TOL}), {extra} extra here; mask IoU min {min(ious, default=1.0):.5f}; losses "
          + ", ".join(f"{k} {float(theirs[k]):.6f} vs {float(ours[k]):.6f} (rel {d:.1e})"
                      for k, d in loss_diff.items())
          + f" -> {'same' if ok else 'DIFFERENT'}")
    return ok


def compare(ppdet_root: str, ppdet_python: str, work: Path, size: Sequence[int]) -> bool:
    """Run PaddleDetection's side in `ppdet_python`, ours here, and report."""
    work.mkdir(parents=True, exist_ok=True)
    code = ("import sys; from pathlib import Path; sys.path.insert(0, %r); import compare_solov2 as c; "
            "c.ppdet_side(%r, Path(%r), (%d, %d))"
            % (str(Path(__file__).parent), ppdet_root, str(work), size[0], size[1]))
    subprocess.run([ppdet_python, "-c", code], check=True)
    theirs = dict(np.load(work / "ppdet.npz"))
    return report(theirs, our_side(work))
