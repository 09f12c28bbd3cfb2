"""An exported tiny Mask-RT-DETR on Paddle Inference (Paddle kernels and oneDNN, the CPU default) gives the
dynamic graph's detections for a batch of images of different original sizes, without falling back."""
import numpy as np
import paddle
import pytest

from engine.deployment.exporter import export_model
from engine.deployment.inference import DeployPredictor
from engine.models.zoo import build_model
from test_export import BOX_TOL, MASK_TOL, dynamic, images, make_cfg
from test_mask_rt_detr_model import TINY


@pytest.mark.parametrize("run_mode", ["paddle", "mkldnn"])
def test_exported_mask_rt_detr_matches_dynamic_graph(run_mode, tmp_path):
    paddle.seed(0)
    model = build_model("Mask-RT-DETR-S", TINY, 3)
    model.eval()
    cfg = make_cfg(tmp_path)
    cfg.Global.model = "Mask-RT-DETR-S"
    cfg.EvalReader.target_size, cfg.EvalReader.keep_ratio = [96, 96], False
    cfg.EvalReader.pad_stride = 0
    export_model(model, cfg, str(tmp_path / "inference"))
    deploy = DeployPredictor(tmp_path / "inference", device="cpu", cpu_threads=1, run_mode=run_mode)
    static = deploy.raw(images())
    assert deploy._fallback is None
    with paddle.no_grad():
        eager = dynamic(model, deploy.preprocessor.batch(images()))
    k = TINY.num_top_queries
    assert static["bbox_num"].tolist() == eager["bbox_num"].tolist() == [k, k, k]
    np.testing.assert_array_equal(static["bbox"][:, 0], eager["bbox"][:, 0])
    tol = BOX_TOL if run_mode == "paddle" else 1e-2  # oneDNN's convolutions round differently
    np.testing.assert_allclose(static["bbox"][:, 1:], eager["bbox"][:, 1:], atol=tol)
    assert static["mask"].shape == eager["mask"].shape == (3 * k, 80, 70)
    assert np.mean(static["mask"] != eager["mask"]) <= (MASK_TOL if run_mode == "paddle" else 0.01)
