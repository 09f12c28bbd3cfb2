"""An exported tiny Mask-RT-DETR on Paddle Inference (Paddle kernels and oneDNN, the CPU default) gives the
dynamic graph's detections for a batch of images of different original sizes, without falling back."""
import paddle
import pytest

from engine.deployment.exporter import export_model
from engine.deployment.inference import DeployPredictor
from engine.models.zoo import build_model
from export_tolerance import assert_same_detections, float32_rtol
from test_export import dynamic, images, make_cfg
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
    assert static["bbox_num"].tolist() == [k, k, k] and static["mask"].shape == (3 * k, 80, 70)
    # the tiny model's deepest path: ~40 convolutions (backbone, encoder, prototypes) and 2 decoder layers
    # of attention + feed-forward, with sums of up to 32 channels x 3 x 3 taps
    assert_same_detections(static, eager, images(), float32_rtol(depth=50, fan_in=32 * 9), run_mode)
