"""One preprocessing path: PaddleDetection's Resize / NormalizeImage / Permute / pad-to-stride semantics,
and the same network inputs from `evaluate`'s loader, the dynamic predictor and the exported predictor."""
from pathlib import Path

import cv2
import numpy as np
import paddle
import pytest
from omegaconf import OmegaConf

import engine.models.zoo
from dataset_tools.synthetic import make_coco_dataset
from engine.config.schema import InstSegConfig
from engine.data.loader import build_loader
from engine.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, normalize_table, resized_size
from engine.deployment.exporter import export_model
from engine.deployment.inference import DeployPredictor
from engine.errors import ConfigError
from engine.prediction.predictor import build_dynamic
from export_standin import StandInDetector

KEEP_RATIO = {"target_size": [64, 96], "keep_ratio": True, "interp": 2, "pad_stride": 32}  # R-CNN style
STRETCH = {"target_size": [64, 64], "keep_ratio": False, "interp": 2, "pad_stride": 0,  # PP-YOLOE / RT-DETR
           "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
NORMALIZE_FIRST = {**KEEP_RATIO, "interp": 1, "normalize_first": True}  # SOLOv2 style
READERS = {"keep_ratio": KEEP_RATIO, "stretch": STRETCH, "normalize_first": NORMALIZE_FIRST}
# for a 50x70 image: ppdet's Resize gives these sizes and reports new / original per axis
EXPECTED = {"keep_ratio": ([64, 90], [64 / 50, 90 / 70], (64, 96)),
            "stretch": ([64, 64], [64 / 50, 64 / 70], (64, 64)),
            "normalize_first": ([64, 90], [64 / 50, 90 / 70], (64, 96))}


def test_resized_size_follows_ppdet():
    assert resized_size(50, 70, (64, 96), True) == (64, 90)  # scale min(64/50, 96/70) = 1.28; 89.6 -> 90
    assert resized_size(80, 60, (96, 64), True) == (85, 64)  # target order does not matter with keep_ratio
    assert resized_size(50, 500, (64, 96), True) == (10, 96)  # the long side caps: scale 0.192
    assert resized_size(2, 3, (3, 100), True) == (3, 5)  # 4.5 rounds half up, as ppdet (not to even)
    assert resized_size(50, 70, (64, 48), False) == (64, 48)  # exact (h, w)


def test_batch_scale_factor_normalisation_and_padding():
    bgr = np.full((50, 70, 3), (0, 128, 255), np.uint8)
    feeds = Preprocess((64, 96), True, 1, pad_stride=32).batch([bgr, np.zeros((80, 60, 3), np.uint8)])
    assert feeds["im_shape"].tolist() == [[64, 90], [85, 64]]
    np.testing.assert_array_equal(feeds["scale_factor"], np.float32([[64 / 50, 90 / 70], [85 / 80, 64 / 60]]))
    assert feeds["ori_shape"].tolist() == [[50, 70], [80, 60]] and feeds["im_id"].tolist() == [0, 1]
    assert feeds["image"].shape == (2, 3, 96, 96)  # 90 and 85 padded up to a multiple of 32
    red = (1.0 - 0.485) / 0.229  # RGB order: the BGR pixel's last channel (255) becomes channel 0
    assert feeds["image"][0, 0, 10, 10] == pytest.approx(red, rel=1e-6)
    assert feeds["image"][0, 2, 10, 10] == pytest.approx((0.0 - 0.406) / 0.225, rel=1e-6)
    assert np.all(feeds["image"][0, :, 64:, :] == 0) and np.all(feeds["image"][0, :, :, 90:] == 0)
    plain = Preprocess((64, 64), False, 1, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).batch([bgr])
    assert plain["image"].shape == (1, 3, 64, 64)  # no stride: the image's own size
    assert plain["image"][0, 1, 5, 5] == np.float32(128) * np.float32(1 / 255)  # mean 0, std 1: x / 255


@pytest.mark.parametrize("interp", [0, 1, 2, 3, 4])
def test_interpolation_is_opencvs(interp):
    rgb = np.random.default_rng(interp).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    preprocess = Preprocess((64, 96), True, interp, (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))
    out = preprocess.sample({"image": rgb})
    expected = cv2.resize(rgb, (90, 64), interpolation=interp).transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_allclose(out["image"], expected, atol=1e-4)


def test_normalize_first_resizes_the_normalised_image():
    """ppdet's SOLOv2 order: normalise, then resize in float32 (no rounding to uint8 in between)."""
    rgb = np.random.default_rng(3).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    first = Preprocess((64, 96), True, 1, normalize_first=True).sample({"image": rgb.copy()})["image"]
    table = normalize_table(IMAGENET_MEAN, IMAGENET_STD)
    normalised = np.stack([table[c][rgb[:, :, c]] for c in range(3)], axis=-1)
    expected = cv2.resize(normalised, (90, 64), interpolation=1).transpose(2, 0, 1)
    np.testing.assert_array_equal(first, expected)
    after = Preprocess((64, 96), True, 1).sample({"image": rgb.copy()})["image"]
    # linear interpolation commutes with the affine normalisation: the orders differ only by OpenCV's uint8
    # resize (fixed-point weights, rounded result), within one grey level
    assert 0 < np.abs(first - after).max() <= 1 / 255 / min(IMAGENET_STD)
    ops = Preprocess((64, 96), normalize_first=True).to_ops()
    assert [op["type"] for op in ops] == ["NormalizeImage", "Resize", "Permute", "PadStride"]
    assert Preprocess.from_ops(ops).normalize_first is True


def test_ops_round_trip_and_bad_ops():
    for reader in READERS.values():
        pre = Preprocess.from_reader(OmegaConf.merge(OmegaConf.structured(InstSegConfig).EvalReader, reader))
        assert Preprocess.from_ops(pre.to_ops()) == pre
        first = ["NormalizeImage", "Resize"] if pre.normalize_first else ["Resize", "NormalizeImage"]
        assert [op["type"] for op in pre.to_ops()] == first + ["Permute", "PadStride"]
    ops = Preprocess((64, 96)).to_ops()
    with pytest.raises(ConfigError, match="m/inference.yml.*Crop"):
        Preprocess.from_ops(ops + [{"type": "Crop"}], "m/inference.yml")
    with pytest.raises(ConfigError, match="order"):
        Preprocess.from_ops([ops[2], ops[0], ops[1]])
    with pytest.raises(ConfigError, match="interp"):
        Preprocess((64, 96), interp=7)


class Recorder(paddle.nn.Layer):
    """A model that records the batches `predict` gets and detects nothing."""

    draw_threshold = 0.5

    def __init__(self) -> None:
        super().__init__()
        self.batches = []

    def predict(self, batch):
        self.batches.append({k: v.numpy() for k, v in batch.items()})
        n = batch["image"].shape[0]
        return {"bbox": paddle.zeros([0, 6]), "bbox_num": paddle.zeros([n], "int32")}


@pytest.mark.parametrize("case", list(READERS))
def test_evaluate_predict_and_export_feed_identical_inputs(case, tmp_path, monkeypatch):
    """The acceptance test of the one preprocessing path: an odd-sized 50x70 image."""
    root = make_coco_dataset(tmp_path / "data", num_train=1, num_val=1, size=(50, 70), seed=5)
    cfg = OmegaConf.structured(InstSegConfig)
    cfg.Global.dataset_dir, cfg.Global.output = str(root), str(tmp_path / "out")
    cfg.Train.num_classes, cfg.Train.num_workers, cfg.Evaluate.batch_size = 3, 0, 1
    cfg.EvalReader = OmegaConf.merge(cfg.EvalReader, READERS[case])
    loader = build_loader(cfg, "val")
    evaluated = {k: v.numpy() for k, v in next(iter(loader)).items()}
    image_file = Path(root) / "images" / loader.dataset.coco.imgs[int(evaluated["im_id"][0])]["file_name"]

    recorder = Recorder()
    monkeypatch.setattr(engine.models.zoo, "build_model", lambda *args: recorder)
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        dynamic = build_dynamic(cfg, None, None)
    assert list(dynamic.predict(str(image_file)))[0].input_path == str(image_file)
    predicted = recorder.batches[0]

    paddle.seed(0)
    export_model(StandInDetector(num_classes=3), cfg, str(tmp_path / "inference"))
    fed = []
    real_run = DeployPredictor._run

    def recording_run(predictor, run_mode, feeds):
        fed.append(feeds)
        return real_run(predictor, run_mode, feeds)

    monkeypatch.setattr(DeployPredictor, "_run", staticmethod(recording_run))
    deploy = DeployPredictor(tmp_path / "inference", device="cpu", cpu_threads=1, run_mode="paddle")
    assert len(list(deploy.predict(str(image_file)))) == 1
    exported = fed[0]

    im_shape, scale_factor, padded = EXPECTED[case]
    assert evaluated["im_shape"].tolist() == [im_shape]
    np.testing.assert_array_equal(evaluated["scale_factor"], np.float32([scale_factor]))
    assert evaluated["image"].shape == (1, 3) + padded
    for key in ("image", "im_shape", "scale_factor"):
        np.testing.assert_array_equal(predicted[key], evaluated[key], err_msg=f"predict {key}")
        np.testing.assert_array_equal(exported[key], evaluated[key], err_msg=f"exported {key}")
    np.testing.assert_array_equal(predicted["ori_shape"], evaluated["ori_shape"])
