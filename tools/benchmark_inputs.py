"""What tools/benchmark_models.py feeds each side: the family of a model, our Architecture with a given
number of detections, the shared random weights, the inference image and the training batches.

Training batches per family:
- R-CNN, SOLOv2, PP-YOLOE_seg: `--batch` images at `--train-size` px with two box-shaped instances each
  (PaddleDetection's SOLOv2 gets Gt2Solov2Target's targets precomputed: its data loader makes them; ours
  computes them inside the step); SGD with momentum.
- Mask-RT-DETR: tools/ppdet_detr_parity.loss_batch (2 images at 320 px with 3 and 2 instances), denoising
  on; AdamW, as its configs train.
"""
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional

REPO = Path(__file__).resolve().parents[1]
DETR_TRAIN = (2, 320)  # (images, px) of tools/ppdet_detr_parity.loss_batch
KEEP_TOP_K_KEY = {"solov2": "post_nms_top_n", "mask_rt_detr": "num_top_queries"}  # else keep_top_k


def family(model: str) -> str:
    sys.path.insert(0, str(REPO))
    from engine.config.model_names import MODEL_FAMILIES

    return MODEL_FAMILIES[model]


def arch(model: str, keep_top_k: int):
    """Our Architecture section for `model` with `keep_top_k` detections per image."""
    from engine.config.architectures import FAMILY_ARCHITECTURES

    fam = family(model)
    return FAMILY_ARCHITECTURES[fam](**{KEEP_TOP_K_KEY.get(fam, "keep_top_k"): keep_top_k})


def image(height: int, width: int):
    """A normalised-looking image of (height, width), zero-padded to a multiple of 32 as the readers do."""
    import numpy as np

    rng = np.random.default_rng(0)
    padded = np.zeros((1, 3, -(-height // 32) * 32, -(-width // 32) * 32), "float32")
    padded[:, :, :height, :width] = rng.normal(0, 1, size=(1, 3, height, width))
    return padded


def exported_feeds(height: int, width: int) -> Dict[str, Any]:
    """An exported model's inputs for `image(height, width)`, already preprocessed (scale factor 1)."""
    import numpy as np

    return {"image": image(height, width), "im_shape": np.array([[height, width]], "float32"),
            "scale_factor": np.array([[1.0, 1.0]], "float32")}


def export_with_weights(model: str, weights: str, keep_top_k: int, out_dir: str, onnx: bool = False,
                        adjust: Optional[Callable[[Any], None]] = None) -> None:
    """`model` (80 classes, `keep_top_k` detections) with the weights of `make_weights`, exported by
    engine.deployment.exporter into `out_dir` (with model.onnx when `onnx`); `adjust(model)` runs first."""
    import paddle
    from omegaconf import OmegaConf

    sys.path.insert(0, str(REPO))
    from engine.config.schema import InstSegConfig
    from engine.deployment.exporter import export_model
    from engine.models.zoo import build_model

    paddle.set_device("cpu")
    net = build_model(model, arch(model, keep_top_k), 80)
    net.set_state_dict(paddle.load(weights))
    net.eval()
    if adjust is not None:
        adjust(net)
    cfg = OmegaConf.structured(InstSegConfig)
    cfg.Global.model = model
    cfg.Train.num_classes = 80
    cfg.Global.dataset_dir = cfg.Global.output = str(Path(out_dir).parent)  # no annotations: generic labels
    export_model(net, cfg, out_dir, onnx=onnx)


def optimizer(model: str, parameters):
    """The optimizer of a timed training step: AdamW for Mask-RT-DETR (as its configs), else SGD."""
    import paddle

    if family(model) == "mask_rt_detr":
        return paddle.optimizer.AdamW(1e-5, parameters=parameters)
    return paddle.optimizer.Momentum(0.001, parameters=parameters)


def _train_batch(batch: int, size: int):
    """Synthetic training images and two boxes (x1, y1, x2, y2 px) per image."""
    import numpy as np

    rng = np.random.default_rng(1)
    images = rng.normal(0, 1, size=(batch, 3, size, size)).astype("float32")
    boxes = np.array([[20, 30, 150, 170], [160, 100, 300, 260]], "float32")
    return images, boxes


def ours_train_inputs(model: str, n: int, size: int) -> Dict[str, Any]:
    """The training batch as our loader gives it (docs/ENGINE.md)."""
    import paddle

    if family(model) == "mask_rt_detr":
        from ppdet_detr_parity import loss_batch, our_train_inputs

        return our_train_inputs(loss_batch())
    images, boxes = _train_batch(n, size)
    masks = box_masks(boxes, size)
    return {"image": paddle.to_tensor(images),
            "im_shape": paddle.to_tensor([[float(size)] * 2] * n),
            "scale_factor": paddle.to_tensor([[1.0, 1.0]] * n),
            "gt_bbox": [paddle.to_tensor(boxes) for _ in range(n)],
            "gt_class": [paddle.to_tensor([0, 1], dtype="int32") for _ in range(n)],
            "gt_mask": [paddle.to_tensor(masks) for _ in range(n)],
            "is_crowd": [paddle.to_tensor([0, 0], dtype="int32") for _ in range(n)]}


def ppdet_train_inputs(model: str, n: int, size: int) -> Dict[str, Any]:
    """The same training batch as PaddleDetection's readers give it for `model`."""
    import numpy as np
    import paddle

    fam = family(model)
    if fam == "mask_rt_detr":
        from ppdet_detr_parity import loss_batch, ppdet_train_inputs as detr_inputs

        return detr_inputs(loss_batch())
    images, boxes = _train_batch(n, size)
    if fam == "solov2":
        return _ppdet_solov2_batch(images, boxes)
    inputs = {"image": paddle.to_tensor(images),
              "im_shape": paddle.to_tensor([[float(size)] * 2] * n),
              "scale_factor": paddle.to_tensor([[1.0, 1.0]] * n),
              "gt_bbox": [paddle.to_tensor(boxes) for _ in range(n)],
              "gt_class": [paddle.to_tensor([[0], [1]], dtype="int32") for _ in range(n)],
              "is_crowd": [paddle.to_tensor([[0], [0]], dtype="int32") for _ in range(n)],
              "epoch_id": 0}
    if fam == "ppyoloe_seg":  # PadGT's fields: bitmaps and a padding mask
        masks = box_masks(boxes, size)
        inputs["gt_segm"] = [paddle.to_tensor(masks) for _ in range(n)]
        inputs["pad_gt_mask"] = [paddle.ones([2, 1]) for _ in range(n)]
    else:
        inputs["gt_poly"] = [[[np.array([b[0], b[1], b[2], b[1], b[2], b[3], b[0], b[3]], "float32")]
                              for b in boxes]] * n
    return inputs


def _ppdet_solov2_batch(images, boxes):
    """PaddleDetection's SOLOv2 training inputs: the batch through its Gt2Solov2Target (its loader's job)."""
    import numpy as np
    import paddle
    from ppdet.data.transform.batch_operators import Gt2Solov2Target

    masks = box_masks(boxes, images.shape[2])
    samples = [{"image": image, "gt_bbox": boxes, "gt_class": np.array([[0], [1]], "int32"), "gt_segm": masks,
                "is_crowd": np.zeros((len(boxes), 1), "int32"), "gt_poly": []} for image in images]
    samples = Gt2Solov2Target()(samples)
    return {k: paddle.to_tensor(np.stack([s[k] for s in samples])) for k in samples[0]}


def box_masks(boxes, size: int):
    """uint8 [M, size, size] bitmaps filling each box."""
    import numpy as np

    masks = np.zeros((len(boxes), size, size), "uint8")
    for i, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        masks[i, y1:y2, x1:x2] = 1
    return masks


def make_weights(model: str, path: str, detections: bool) -> None:
    """Random weights with PaddleDetection's names: 4 classes score high everywhere, or (not
    `detections`) every class scores far below the threshold. Mask-RT-DETR keeps its random weights: it
    has no threshold, every image gets its top queries."""
    import paddle

    sys.path.insert(0, str(REPO))
    from engine.models.zoo import build_model

    paddle.seed(0)
    state = build_model(model, arch(model, 100), 80).state_dict()
    if family(model) == "mask_rt_detr":
        paddle.save(state, path)
        return
    if family(model) == "ppyoloe_seg":
        _ppyoloe_weights(state, detections)
        paddle.save(state, path)
        return
    for name, value in state.items():
        if name.endswith("solo_cate.bias"):  # SOLOv2: the first 4 classes score ~0.73 in every cell (or ~0)
            bias = [1.0 if i < 4 and detections else -4.6 for i in range(value.shape[0])]
            state[name] = paddle.to_tensor(bias, dtype="float32")
        elif "branch2c.norm.weight" in name and family(model) == "solov2":  # a deep random net overflows
            state[name] = value * 0.2
        elif "rpn_rois_delta" in name:
            # proposals = anchors, spread over the image (random deltas push them all to the borders, where
            # RPN NMS leaves a handful)
            state[name] = paddle.zeros_like(value)
        elif "bbox_score" in name and name.endswith("weight"):
            # scores follow the bias; the weights only break ties the same way on both sides
            state[name] = value * 1e-4
        elif "bbox_score" in name and name.endswith("bias"):
            bias = value.numpy()
            bias[:4] = 6.0 if detections else -20.0  # the first 4 foreground classes score ~0.25 (or ~0)
            state[name] = paddle.to_tensor(bias)
    paddle.save(state, path)


def _ppyoloe_weights(state: Dict, detections: bool) -> None:
    """PP-YOLOE_seg: class biases (4 classes near 0.5, or all ~e-9), per-anchor box distributions, and
    prototypes / coefficients scaled to logits of order 1 (random deep features are tiny)."""
    import numpy as np
    import paddle

    rng = np.random.default_rng(0)
    for name, value in state.items():
        if "pred_cls" in name and name.endswith("bias"):
            bias = np.full(value.shape, -20.0, "float32")
            bias[:4] = 0.0 if detections else -20.0
            state[name] = paddle.to_tensor(bias)
        elif ("pred_cls" in name or "pred_reg" in name) and name.endswith("weight"):
            state[name] = paddle.to_tensor(rng.normal(0, 0.01, value.shape).astype("float32"))
        elif "pred_reg" in name:
            state[name] = paddle.to_tensor(rng.normal(0, 1, value.shape).astype("float32"))
        elif "pred_ins" in name and name.endswith("weight") or name.endswith("proto.conv3.bn.weight"):
            state[name] = value * (300.0 if "pred_ins" in name else 3000.0)
