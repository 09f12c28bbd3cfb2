"""Export and deployment inference: an exported model run by DeployPredictor (Paddle Inference, oneDNN)
gives the dynamic graph's boxes, scores and masks; inference.yml carries preprocessing, labels and the
draw threshold; broken model directories fail with clear errors.

Tolerances: float32 rounding through each model (tests/export_tolerance.py says why), identical classes
and counts.
"""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import paddle
import pytest
import yaml
from omegaconf import OmegaConf

from engine.config.schema import InstSegConfig
from engine.errors import ConfigError, DatasetError, WeightsError
from engine.deployment.exporter import export_model
from engine.data.preprocess import Preprocess
from engine.deployment.inference import DeployPredictor
from engine.prediction.results import rle_to_mask
from export_standin import StandInDetector
from export_tolerance import LOGIT_SCALE, MASK_FLIP_SHARE, assert_same_detections, float32_rtol

# the stand-in: 3 backbone convolutions, the mask conv and a classifier over 8 * 7 * 7 pooled values
STANDIN_RTOL = float32_rtol(depth=5, fan_in=8 * 7 * 7)


def make_cfg(tmp: Path) -> OmegaConf:
    data = tmp / "data"
    (data / "annotations").mkdir(parents=True)
    cats = [{"id": 9, "name": "zebra"}, {"id": 2, "name": "ant"}, {"id": 5, "name": "bee"}]
    (data / "annotations" / "instance_val.json").write_text(json.dumps(
        {"images": [], "annotations": [], "categories": cats}))
    cfg = OmegaConf.structured(InstSegConfig)
    cfg.Global.model = "MaskRCNN-ResNet50-FPN"
    cfg.Global.dataset_dir = str(data)
    cfg.Global.output = str(tmp / "output")
    cfg.Train.num_classes = 3
    cfg.EvalReader.target_size = [64, 96]
    cfg.EvalReader.interp = 2
    return cfg


def images(n: int = 3) -> List[np.ndarray]:
    rng = np.random.default_rng(0)
    sizes = [(50, 70), (80, 60), (64, 64)][:n]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    paddle.seed(0)
    model = StandInDetector(num_classes=3)
    model.draw_threshold = 0.3
    cfg = make_cfg(tmp)
    files = export_model(model, cfg, str(tmp / "inference"))
    return model, cfg, tmp / "inference", files


def dynamic(model: StandInDetector, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    out = model(*(paddle.to_tensor(feeds[k]) for k in ("image", "im_shape", "scale_factor")))
    return {k: v.numpy() for k, v in out.items()}


def test_export_writes_graph_params_and_config(exported):
    model, _, out, files = exported
    assert Path(files["pdmodel"]).name in ("inference.json", "inference.pdmodel")
    for key in ("pdmodel", "pdiparams", "inference_config"):
        assert Path(files[key]).is_file() and Path(files[key]).parent == out
    info = yaml.safe_load((out / "inference.yml").read_text())
    assert info["format_version"] == 1
    assert info["model_name"] == "MaskRCNN-ResNet50-FPN" and info["mask"] is True
    assert info["draw_threshold"] == pytest.approx(0.3)
    assert info["label_list"] == ["ant", "bee", "zebra"]  # by class index = ascending category id
    ops = {op["type"]: op for op in info["Preprocess"]}
    assert ops["Resize"] == {"type": "Resize", "target_size": [64, 96], "keep_ratio": True, "interp": 2}
    assert ops["NormalizeImage"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert ops["PadStride"]["stride"] == 32
    assert [op["type"] for op in info["Preprocess"]] == ["Resize", "NormalizeImage", "Permute", "PadStride"]


def test_exported_predictor_rebuilds_the_eval_preprocessing(exported):
    """The exported predictor runs the EvalReader's steps exactly (tests/test_preprocess.py checks the
    numbers and that evaluate, predict and the exported model feed the same inputs)."""
    _, cfg, out, _ = exported
    deploy = DeployPredictor(out, device="cpu", cpu_threads=1, run_mode="paddle")
    assert deploy.preprocessor == Preprocess.from_reader(cfg.EvalReader)
    feeds = deploy.preprocessor.batch(images(2))
    assert feeds["im_shape"].tolist() == [[64, 90], [85, 64]]  # 50x70 and 80x60 images
    np.testing.assert_array_equal(feeds["scale_factor"], np.float32([[64 / 50, 90 / 70], [85 / 80, 64 / 60]]))


def test_deploy_matches_dynamic_graph(exported):
    model, _, out, _ = exported
    deploy = DeployPredictor(out, device="cpu", cpu_threads=1, run_mode="paddle")
    feeds = deploy.preprocessor.batch(images())
    static = deploy.raw(images())
    eager = dynamic(model, feeds)
    assert eager["bbox_num"].min() > 0 and eager["mask"].sum() > 0
    assert_same_detections(static, eager, images(), STANDIN_RTOL)


def test_onednn_matches_dynamic_graph(exported):
    """oneDNN (opt-in) with inplace_pass removed: without that, ~1 % of mask pixels came out wrong."""
    model, _, out, _ = exported
    deploy = DeployPredictor(out, device="cpu", cpu_threads=1, run_mode="mkldnn")
    static = deploy.raw(images())
    eager = dynamic(model, deploy.preprocessor.batch(images()))
    assert deploy.run_mode == "mkldnn" and deploy._fallback is None  # ran on oneDNN, no fallback
    assert eager["bbox_num"].min() > 0
    assert_same_detections(static, eager, images(), STANDIN_RTOL, "oneDNN")


def test_batch_onednn_rejects_runs_on_paddle_kernels_then_onednn_again(exported, monkeypatch, caplog):
    """Paddle 3.3.1's oneDNN executor throws on zero-size tensors (RuntimeError "std::exception"): that
    batch is answered by a Paddle-kernel predictor (one warning), and the next batch goes to oneDNN again."""
    _, _, out, _ = exported
    reference = DeployPredictor(out, device="cpu", cpu_threads=1, run_mode="paddle").raw(images())
    deploy = DeployPredictor(out, device="cpu", cpu_threads=1, run_mode="mkldnn")
    primary, calls = deploy.predictor, []
    real_run = DeployPredictor._run

    def flaky(predictor, run_mode, feeds):
        calls.append(run_mode)
        if predictor is primary and len(calls) == 1:
            raise RuntimeError("std::exception")
        return real_run(predictor, run_mode, feeds)

    monkeypatch.setattr(DeployPredictor, "_run", staticmethod(flaky))
    for _ in range(2):
        got = deploy.raw(images())
        assert_same_detections(got, reference, images(), STANDIN_RTOL)
    assert calls == ["mkldnn", "paddle", "mkldnn"] and deploy._fallback is not None
    warnings = [r for r in caplog.records if "oneDNN could not run" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"


@pytest.mark.parametrize("error", [RuntimeError("(PreconditionNotMet) a real bug"), RuntimeError(""),
                                   ValueError("std::exception"), NotImplementedError("std::exception")])
def test_other_errors_on_onednn_propagate(exported, monkeypatch, error):
    """Only oneDNN's zero-size rejection falls back; any other failure is a real error and surfaces."""
    deploy = DeployPredictor(exported[2], device="cpu", cpu_threads=1, run_mode="mkldnn")

    def broken(predictor, run_mode, feeds):
        raise error

    monkeypatch.setattr(DeployPredictor, "_run", staticmethod(broken))
    with pytest.raises(type(error)) as raised:
        deploy.raw(images(1))
    assert raised.value is error and deploy._fallback is None


def test_predict_results_match_dynamic_graph(exported):
    model, _, out, _ = exported
    imgs = images()
    deploy = DeployPredictor(out, device="cpu", cpu_threads=1)
    results = list(deploy.predict(imgs, batch_size=3, threshold=0.34))
    eager = dynamic(model, deploy.preprocessor.batch(imgs))
    ends = np.cumsum(eager["bbox_num"])
    for res, img, hi, n in zip(results, imgs, ends, eager["bbox_num"]):
        rows = eager["bbox"][hi - n:hi]
        masks = eager["mask"][hi - n:hi]
        keep = rows[:, 1] > 0.34
        h, w = img.shape[:2]
        assert res["input_path"] is None and res["page_index"] is None
        assert [b["cls_id"] for b in res["boxes"]] == rows[keep, 0].astype(int).tolist()
        assert [b["label"] for b in res["boxes"]] == [["ant", "bee", "zebra"][int(c)] for c in rows[keep, 0]]
        # the default run mode (oneDNN) against the dynamic graph: float32 drift only (export_tolerance.py)
        np.testing.assert_allclose([b["score"] for b in res["boxes"]], rows[keep, 1],
                                   atol=STANDIN_RTOL * LOGIT_SCALE / 2)
        expect = np.clip(rows[keep, 2:], 0, [w, h, w, h])
        np.testing.assert_allclose(np.array([b["coordinate"] for b in res["boxes"]]).reshape(-1, 4),
                                   expect, atol=STANDIN_RTOL * max(h, w))
        assert len(res["masks"]) == int(keep.sum())
        for got, want in zip(res["masks"], masks[keep]):
            assert got.shape == (h, w)
            assert np.mean(got != want[:h, :w]) <= MASK_FLIP_SHARE


def test_threshold_priority(exported, tmp_path):
    imgs = images(1)
    scores = lambda p, **kw: [b["score"] for b in next(iter(p.predict(imgs, **kw)))["boxes"]]  # noqa: E731
    every = sorted(scores(DeployPredictor(exported[2], device="cpu", cpu_threads=1), threshold=0.0))
    middle = float(every[len(every) // 2])  # an inference.yml threshold that keeps about half
    model_dir = copy_model(exported[2], tmp_path / "m")
    info = yaml.safe_load((model_dir / "inference.yml").read_text())
    info["draw_threshold"] = middle
    (model_dir / "inference.yml").write_text(yaml.safe_dump(info))
    default = DeployPredictor(model_dir, device="cpu", cpu_threads=1)
    kept = scores(default)
    assert 0 < len(kept) < len(every) and all(s > middle for s in kept)  # inference.yml applies
    assert len(scores(default, threshold=0.0)) == len(every)
    loose = DeployPredictor(model_dir, device="cpu", cpu_threads=1, threshold=0.0)
    assert len(scores(loose)) == len(every)  # constructor beats inference.yml
    assert scores(loose, threshold=0.99) == []  # predict argument beats the constructor
    assert scores(loose, threshold=middle) == kept


def test_directory_input_sorted_with_paths(exported, tmp_path):
    _, _, out, _ = exported
    for name, img in zip(["b.png", "a.jpg", "c.bmp"], images()):
        cv2.imwrite(str(tmp_path / name), img)
    (tmp_path / "notes.txt").write_text("not an image")
    results = list(DeployPredictor(out, device="cpu", cpu_threads=1).predict(str(tmp_path), batch_size=2))
    assert [Path(r["input_path"]).name for r in results] == ["a.jpg", "b.png", "c.bmp"]
    assert [r["masks"][0].shape for r in results if r["masks"]] == \
        [cv2.imread(r["input_path"]).shape[:2] for r in results if r["masks"]]


def test_empty_folder_is_a_clear_error(exported, tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="holds no images"):
        list(DeployPredictor(exported[2], device="cpu", cpu_threads=1).predict(str(tmp_path)))


def copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_not_an_exported_model(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        DeployPredictor(tmp_path / "missing")
    with pytest.raises(ConfigError, match="not an exported model: inference.yml is missing"):
        DeployPredictor(tmp_path)


def test_missing_parameter_file(exported, tmp_path):
    model_dir = copy_model(exported[2], tmp_path / "m")
    (model_dir / "inference.pdiparams").unlink()
    with pytest.raises(WeightsError, match="inference.pdiparams is missing"):
        DeployPredictor(model_dir, device="cpu")


def test_missing_graph_file(exported, tmp_path):
    model_dir = copy_model(exported[2], tmp_path / "m")
    graph = Path(exported[3]["pdmodel"]).name
    (model_dir / graph).unlink()
    with pytest.raises(WeightsError, match="model graph"):
        DeployPredictor(model_dir, device="cpu")


def test_newer_format_version(exported, tmp_path):
    model_dir = copy_model(exported[2], tmp_path / "m")
    info = yaml.safe_load((model_dir / "inference.yml").read_text())
    info["format_version"] = 99
    (model_dir / "inference.yml").write_text(yaml.safe_dump(info))
    with pytest.raises(WeightsError, match="format version 99"):
        DeployPredictor(model_dir, device="cpu")


def test_bad_run_mode_and_device(exported):
    with pytest.raises(ConfigError, match="needs a GPU"):
        DeployPredictor(exported[2], device="cpu", run_mode="trt_fp16")
    with pytest.raises(ConfigError, match="cpu or gpu"):
        DeployPredictor(exported[2], device="tpu")


def run_cli(*overrides: str) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(root / "main.py")] + [a for o in overrides for a in ("-o", o)]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def demo_weights(tmp_path_factory):
    """The demo config's model (tiny Mask R-CNN FPN, 3 classes) with seeded weights in a .pdparams; class 0
    wins every box (bias 10), so every image has detections."""
    from engine.config.load import load_config
    from engine.models.zoo import build_model
    tmp = tmp_path_factory.mktemp("cli")
    cfg = load_config(None, [])
    paddle.seed(0)
    model = build_model(cfg.Global.model, cfg.Architecture, int(cfg.Train.num_classes))
    bias = model.bbox_head.bbox_score.bias.numpy()
    bias[0] = 10.0
    model.bbox_head.bbox_score.bias.set_value(bias)
    paddle.save(model.state_dict(), str(tmp / "w.pdparams"))
    return tmp, tmp / "w.pdparams"


def test_cli_export_then_predict_directory(demo_weights):
    tmp, weights = demo_weights
    small = ["EvalReader.target_size=[64, 96]"]
    done = run_cli("Global.mode=export", f"Export.weight_path={weights}", f"Global.output={tmp / 'out'}",
                   *small)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp / "out" / "export_result.json").read_text())
    assert result["done_flag"] is True and Path(result["save_dir"]) == tmp / "out" / "inference"
    info = yaml.safe_load((tmp / "out" / "inference" / "inference.yml").read_text())
    demo = json.loads((Path(__file__).resolve().parents[1] / "demo_data/instance_seg/annotations/"
                       "instance_val.json").read_text())
    assert info["label_list"] == [c["name"] for c in sorted(demo["categories"], key=lambda c: c["id"])]
    resize = info["Preprocess"][0]
    assert resize["target_size"] == [64, 96] and resize["interp"] == 1  # demo.yaml
    # the demo Mask R-CNN pools with RoIAlign: a graph with the compiled operator, then the portable one
    assert [(g["model_file"], list(g["compiled_ops"])) for g in info["graphs"]] == [
        ("inference_compiled.json", ["instseg_roi_align"]), ("inference.json", [])]

    inputs = tmp / "inputs"
    inputs.mkdir()
    for name, img in zip(["x.jpg", "y.png"], images(2)):
        cv2.imwrite(str(inputs / name), img)
    done = run_cli("Global.mode=predict", f"Predict.model_dir={tmp / 'out' / 'inference'}",
                   f"Predict.input={inputs}", f"Global.output={tmp / 'pred'}", "Predict.threshold=0.0")
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (tmp / "pred").iterdir()) == ["predict", "predict_result.json"]
    summary = json.loads((tmp / "pred" / "predict_result.json").read_text())
    assert summary["done_flag"] is True and summary["num_images"] == 2
    assert Path(summary["save_dir"]) == tmp / "pred" / "predict"
    assert sorted(p.name for p in (tmp / "pred" / "predict").iterdir()) == \
        ["x_res.jpg", "x_res.json", "y_res.json", "y_res.png"]
    in_process = DeployPredictor(tmp / "out" / "inference", device="cpu")
    for stem, suffix in (("x", ".jpg"), ("y", ".png")):
        saved = json.loads((tmp / "pred" / "predict" / f"{stem}_res.json").read_text())
        # InstanceSegResult.json["res"]; exported models also say how they ran
        assert set(saved) == {"input_path", "page_index", "boxes", "masks", "inference"}
        assert saved["inference"] == in_process.run_info() and saved["inference"]["use_hpip"] is False
        assert saved["inference"]["graph"] == "compiled"
        assert saved["input_path"] == str(inputs / f"{stem}{suffix}") and saved["page_index"] is None
        expected = next(in_process.predict(str(inputs / f"{stem}{suffix}"), threshold=0.0))
        assert len(saved["boxes"]) == len(expected.boxes) > 0 and len(saved["masks"]) == len(saved["boxes"])
        for got, want in zip(saved["boxes"], expected.boxes):
            assert got["label"] == info["label_list"][got["cls_id"]] and got["cls_id"] == want["cls_id"]
            assert got["coordinate"] == pytest.approx(want["coordinate"], rel=1e-5)
        image_size = list(cv2.imread(str(inputs / f"{stem}{suffix}")).shape[:2])
        assert all(rle_to_mask(m).shape == tuple(image_size) for m in saved["masks"])


def test_export_rejects_weights_of_another_num_classes(demo_weights):
    tmp, weights = demo_weights
    done = run_cli("Global.mode=export", f"Export.weight_path={weights}", f"Global.output={tmp / 'bad'}",
                   "Train.num_classes=5")
    assert done.returncode == 1
    result = json.loads((tmp / "bad" / "export_result.json").read_text())
    assert result["done_flag"] is False and result["err_type"] == "WeightsError"
    assert "do not fit" in result["err_msg"] and "num_classes=5" in result["err_msg"]
    assert not (tmp / "bad" / "inference").exists()


def test_export_without_weights_is_a_clear_error(tmp_path):
    done = run_cli("Global.mode=export", f"Global.output={tmp_path}")
    assert done.returncode == 1
    result = json.loads((tmp_path / "export_result.json").read_text())
    assert "best_model.pdparams does not exist" in result["err_msg"]


def tiny_rcnn_arch():
    from engine.config.architectures import RCNNArchitecture
    return RCNNArchitecture(base_channels=16, fpn_channels=32, box_head_dim=64, mask_head_channels=16,
                            mask_head_convs=1, anchor_sizes=[16, 32, 64, 128, 256], freeze_at=-1,
                            freeze_norm=False, rpn_post_nms_top_n_test=50, rpn_pre_nms_top_n_test=100)


def tiny_rcnn_with_detections(name: str, class_bias: float = 10.0):
    """A tiny seeded R-CNN `name` whose box head favours class 0 (bias `class_bias`): every image has
    detections."""
    from engine.models.zoo import build_model
    paddle.seed(0)
    model = build_model(name, tiny_rcnn_arch(), 3)
    head = model.bbox_head
    for layer in (head.scorers if hasattr(head, "scorers") else [head.bbox_score]):
        bias = layer.bias.numpy()
        bias[0] = class_bias
        layer.bias.set_value(bias)
    return model


@pytest.mark.parametrize("name, onednn", [("MaskRCNN-ResNet50-FPN", False),
                                          ("Cascade-MaskRCNN-ResNet50-FPN", False),
                                          ("MaskRCNN-ResNet50-FPN", True)])
def test_real_rcnn_exported_matches_dynamic_graph(name, onednn, tmp_path):
    """A tiny real R-CNN (RoIAlign, distribute_fpn_proposals, NMS, mask pasting in the graph). With
    `onednn`, export runs as after a `Global.onednn=true` training: the flag is on, export still works
    and leaves it on."""
    arch = tiny_rcnn_arch()
    model = tiny_rcnn_with_detections(name)
    model.eval()
    paddle.set_flags({"FLAGS_use_mkldnn": onednn})
    export_model(model, make_cfg(tmp_path), str(tmp_path / "inference"))
    assert paddle.get_flags(["FLAGS_use_mkldnn"])["FLAGS_use_mkldnn"] is onednn
    paddle.set_flags({"FLAGS_use_mkldnn": False})
    for run_mode in ("paddle", "mkldnn"):
        deploy = DeployPredictor(tmp_path / "inference", device="cpu", cpu_threads=1, run_mode=run_mode)
        static = deploy.raw(images())
        assert deploy._fallback is None  # no fallback: oneDNN runs the whole R-CNN graph
        eager = dynamic(model, deploy.preprocessor.batch(images()))
        assert eager["bbox_num"].min() > 0 and eager["mask"].sum() > 0
        # ResNet50 (53 convolutions) + FPN (2) + box head (2 FCs and the regressor) on one path; the widest
        # sum is the box head's first FC over fpn_channels * 7 * 7 pooled values; a cascade has 3 stages
        rtol = float32_rtol(depth=60, fan_in=arch.fpn_channels * 7 * 7, stages=3 if "Cascade" in name else 1)
        assert_same_detections(static, eager, images(), rtol, run_mode)


@pytest.mark.parametrize("name", ["MaskRCNN-ResNet50-FPN", "MaskRCNN-ResNet50",
                                  "Cascade-MaskRCNN-ResNet50-FPN"])
def test_real_rcnn_without_detections(name, tmp_path):
    """No detections at all: zero rows and empty results on both CPU run modes. oneDNN (the default) throws
    on zero-size tensors or, in concat, crashes the process: the graph's placeholder detection keeps every
    tensor non-empty, so oneDNN runs the whole batch (no fallback) and the placeholder never shows."""
    from engine.config.architectures import RCNNArchitecture
    from engine.models.zoo import build_model
    arch = RCNNArchitecture(base_channels=16, fpn_channels=32, box_head_dim=64, mask_head_channels=16,
                            mask_head_convs=1, anchor_sizes=[16, 32, 64, 128, 256], freeze_at=-1,
                            freeze_norm=False, rpn_post_nms_top_n_test=50, rpn_pre_nms_top_n_test=100)
    if name == "MaskRCNN-ResNet50":
        arch = dataclasses.replace(arch, anchor_sizes=[32, 64, 128, 256, 512])
    paddle.seed(0)
    model = build_model(name, arch, 3)
    head = model.bbox_head
    for score in (head.scorers if hasattr(head, "scorers") else [head.bbox_score]):
        score.weight.set_value(paddle.zeros_like(score.weight))
        bias = score.bias.numpy()
        bias[:3] = -20.0  # every foreground score ~e-20: nothing passes the score threshold
        score.bias.set_value(bias)
    model.eval()
    export_model(model, make_cfg(tmp_path), str(tmp_path / "inference"))
    for run_mode in ("auto", "paddle"):
        deploy = DeployPredictor(tmp_path / "inference", device="cpu", cpu_threads=1, run_mode=run_mode)
        assert deploy.run_mode == ("mkldnn" if run_mode == "auto" else "paddle")
        eager = dynamic(model, deploy.preprocessor.batch(images()))
        assert eager["bbox_num"].tolist() == [0, 0, 0] and eager["bbox"].shape[0] == 0
        for batch in (images(), images()[:1], images()[:2]):
            out = deploy.raw(batch)
            assert out["bbox_num"].tolist() == [0] * len(batch), run_mode
            assert out["bbox"].shape[0] == 0 and out["mask"].shape[0] == 0
        assert deploy._fallback is None  # oneDNN ran every batch itself
        results = list(deploy.predict(images(), threshold=0.0))
        assert len(results) == 3 and all(not r.boxes and not r.masks for r in results)


def test_deployment_imports_no_training_code():
    """An exported model runs with the preprocessing, input and result modules only."""
    import subprocess
    import sys
    code = ("import sys, engine.deployment.inference; print(' '.join(m for m in sys.modules "
            "if m.startswith(('engine.training', 'engine.models', 'engine.config', 'engine.evaluation', "
            "'engine.data.loader', 'engine.data.transforms', 'engine.data.augment', 'omegaconf'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ""
