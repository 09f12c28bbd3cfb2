"""Python API and predict mode with a stand-in model (the real zoo is tested elsewhere)."""
import json
from pathlib import Path

import cv2
import numpy as np
import paddle
import pytest

import engine.deployment.inference
import engine.models.zoo
from engine.api import create_model
from engine.config.load import load_config
from engine.errors import ConfigError, DatasetError, WeightsError
from engine.prediction.results import InstanceSegResult, rle_to_mask

NAME = "MaskRCNN-ResNet50-FPN"


class StandIn(paddle.nn.Layer):
    """Three detections per image with scores 0.9, 0.5, 0.3 times weight `w`; masks padded past the image."""

    draw_threshold = 0.5

    def __init__(self):
        super().__init__()
        self.w = self.create_parameter([1], default_initializer=paddle.nn.initializer.Constant(1.0))
        self.seen = []

    def predict(self, batch):
        img = batch["image"].numpy()
        self.seen.append((img.shape, batch["scale_factor"].numpy(), float(img.mean())))
        rows, masks = [], []
        ori = batch["ori_shape"].numpy()
        hm, wm = int(ori[:, 0].max()) + 4, int(ori[:, 1].max()) + 4
        for h, w in ori:
            for k, s in enumerate((0.9, 0.5, 0.3)):
                rows.append([k % 2, s * float(self.w.numpy()[0]), -5, 1, w + 10, h / 2])
                m = np.zeros((hm, wm), np.uint8)
                m[: h // 2, : w // (k + 1)] = 1
                m[h:, :] = 1  # outside the image: must be cropped away
                masks.append(m)
        return {"bbox": paddle.to_tensor(np.array(rows, np.float32)),
                "bbox_num": paddle.to_tensor(np.full(len(ori), 3, np.int32)),
                "mask": paddle.to_tensor(np.stack(masks))}


@pytest.fixture
def standin(monkeypatch):
    made = []

    def build(name, arch, num_classes):
        made.append(StandIn())
        return made[-1]

    monkeypatch.setattr(engine.models.zoo, "build_model", build)
    return made


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "run" / "best_model" / "best_model.pdparams"
    path.parent.mkdir(parents=True)
    paddle.save({"w": paddle.to_tensor([1.0])}, str(path))
    return path


def _img(h=50, w=70, v=100):
    return np.full((h, w, 3), v, np.uint8)


def test_threshold_priority_and_fields(standin, weights):
    p = create_model(NAME, weight_path=weights, device="cpu")
    (r,) = list(p.predict(_img()))
    assert isinstance(r, InstanceSegResult) and r.input_path is None and r.page_index is None
    assert [b["score"] for b in r.boxes] == [pytest.approx(0.9)]  # 0.5 is not > 0.5
    assert r.boxes[0]["coordinate"] == [0.0, 1.0, 70.0, 25.0]  # clipped to the image
    assert r.masks[0].shape == (50, 70) and r.masks[0].sum() == 25 * 70
    p2 = create_model(NAME, weight_path=weights, threshold=0.2)
    assert len(next(p2.predict(_img())).boxes) == 3
    assert len(next(p2.predict(_img(), threshold=0.4)).boxes) == 2


def test_weights_loaded_and_preprocessing(standin, weights):
    paddle.save({"w": paddle.to_tensor([0.5])}, str(weights))
    p = create_model(NAME, weight_path=weights, threshold=0.0)
    r = next(p.predict(_img(v=0)))
    assert [b["score"] for b in r.boxes] == pytest.approx([0.45, 0.25, 0.15])
    shape, scale, mean = standin[-1].seen[-1]
    assert shape[2] % 32 == 0 and shape[3] % 32 == 0 and scale[0, 0] > 1  # resized up and padded
    assert mean < 0  # normalised: black minus ImageNet mean


def test_batches_files_and_lists(standin, weights, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _img(40, 30))
    p = create_model(NAME, weight_path=weights)
    rs = list(p.predict([str(tmp_path / "a.png"), _img(), _img(20, 20)], batch_size=2))
    assert [r.input_path for r in rs] == [str(tmp_path / "a.png"), None, None]
    assert [r.masks[0].shape for r in rs] == [(40, 30), (50, 70), (20, 20)]


def test_without_weights_warns_loudly(standin):
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        create_model(NAME)


def test_bad_names_and_dirs(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean MaskRCNN-ResNet50-FPN"):
        create_model("MaskRCNN-ResNet50-FPM")
    with pytest.raises(ConfigError, match="without inference.yml"):
        create_model(str(tmp_path))


def test_export_dir_goes_to_deploy_predictor(monkeypatch, tmp_path):
    calls = []

    class FakeDeploy:
        def __init__(self, model_dir, device=None, threshold=None, **kw):
            calls.append((model_dir, device, threshold, kw))

    monkeypatch.setattr(engine.deployment.inference, "DeployPredictor", FakeDeploy)
    (tmp_path / "inference.yml").write_text("x: 1\n")
    assert isinstance(create_model(str(tmp_path), device="cpu", threshold=0.3), FakeDeploy)
    assert isinstance(create_model(NAME, model_dir=str(tmp_path), run_mode="mkldnn"), FakeDeploy)
    assert calls == [(str(tmp_path), "cpu", 0.3, {}), (str(tmp_path), None, None, {"run_mode": "mkldnn"})]


def test_predict_mode_writes_json_and_image(standin, weights, tmp_path):
    from engine.prediction.predictor import run

    d = tmp_path / "in"
    d.mkdir()
    for n in ("x.jpg", "y.png"):
        cv2.imwrite(str(d / n), _img())
    out = tmp_path / "out"
    cfg = load_config(f"configs/{NAME}.yaml", [f"Global.output={out}", f"Predict.input={d}",
                                               f"Predict.weight_path={weights}", "Predict.threshold=0.2"])
    summary = run(cfg)
    assert summary["num_images"] == 2 and summary["save_dir"] == str(out / "predict")
    assert sorted(p.name for p in out.iterdir()) == ["predict"]  # not beside checkpoints and logs
    assert sorted(p.name for p in (out / "predict").iterdir()) == ["x_res.jpg", "x_res.json", "y_res.json",
                                                                   "y_res.png"]
    assert [r["json"] for r in summary["results"]] == [str(out / "predict" / n)
                                                       for n in ("x_res.json", "y_res.json")]
    data = json.loads((out / "predict" / "y_res.json").read_text())
    assert len(data["boxes"]) == 3 and rle_to_mask(data["masks"][2]).shape == (50, 70)
    cfg = load_config(f"configs/{NAME}.yaml", [f"Global.output={out}", f"Predict.input={d}",
                                               f"Predict.weight_path={tmp_path / 'none.pdparams'}"])
    with pytest.raises(WeightsError, match="none.pdparams"):
        run(cfg)


def test_predict_mode_with_model_dir_uses_deploy_predictor(monkeypatch, tmp_path):
    from engine.prediction.predictor import run

    class FakeDeploy:
        def __init__(self, model_dir, device=None, threshold=None, cpu_threads=None, run_mode="paddle",
                     use_hpip=False):
            self.args = (model_dir, threshold, run_mode, use_hpip)

        def run_info(self):
            return {"run_mode": self.args[2], "use_hpip": self.args[3]}

        def predict(self, input, batch_size=1, threshold=None):
            yield InstanceSegResult(str(tmp_path / "q.png"), _img(), [], [])

    monkeypatch.setattr(engine.deployment.inference, "DeployPredictor", FakeDeploy)
    out = tmp_path / "out"
    cfg = load_config(f"configs/{NAME}.yaml", [f"Global.output={out}", f"Predict.input={tmp_path}",
                                               f"Predict.model_dir={tmp_path}", "Predict.threshold=0.7"])
    summary = run(cfg)
    assert summary["model"] == str(tmp_path) and summary["results"][0]["num_instances"] == 0
    assert summary["inference"] == {"run_mode": "auto", "use_hpip": False}
    assert (out / "predict" / "q_res.json").is_file() and (out / "predict" / "q_res.png").is_file()


def test_evaluate_mode_with_stand_ins(monkeypatch, standin, weights, tmp_path):
    """evaluate run(cfg): weights loaded, val loader built, metrics named as in evaluate_result.json."""
    import sys
    import types

    from pycocotools.coco import COCO

    import engine.evaluation.evaluator as evaluator
    from tests.coco_eval_fixture import make_gt_and_results

    gt, _ = make_gt_and_results(seed=3, n_images=4)
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    ids = sorted(coco.getImgIds())
    batch = {"image": paddle.zeros([len(ids), 3, 32, 32]), "scale_factor": paddle.ones([len(ids), 2]),
             "im_id": paddle.to_tensor(np.array(ids, np.int64)),
             "ori_shape": paddle.to_tensor(np.array([[120, 160]] * len(ids), np.int32))}
    dataset = types.SimpleNamespace(coco=coco, cat_ids=sorted(coco.getCatIds()), label_names=list("abcd"))
    fake = types.ModuleType("engine.data.loader")
    fake.build_loader = lambda cfg, split: ([batch], dataset) if split == "val" else None
    monkeypatch.setitem(sys.modules, "engine.data.loader", fake)
    cfg = load_config(f"configs/{NAME}.yaml", [f"Global.output={tmp_path / 'run'}", "Global.device=cpu"])
    result = evaluator.run(cfg)  # default weight path: {output}/best_model/best_model.pdparams
    assert result["weight_path"] == str(weights)
    m = result["metrics"]
    assert set(m["per_class_mask_AP"]) == set("abcd")
    assert 0 <= m["AP"] <= 1 and "bbox_AP" in m and "bbox_APl" in m and "APs" in m


def test_predict_mode_keeps_inputs_of_the_same_name_apart(standin, weights, tmp_path):
    from engine.prediction.predictor import run

    for sub, value in (("a", 0), ("b", 255)):
        (tmp_path / "in" / sub).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "in" / sub / "x.png"), _img(v=value))
    out = tmp_path / "out"
    overrides = [f"Global.output={out}", f"Predict.input={tmp_path / 'in'}", f"Predict.weight_path={weights}"]
    summary = run(load_config(f"configs/{NAME}.yaml", overrides))
    assert [Path(r["json"]).name for r in summary["results"]] == ["x_res.json", "x_res_1.json"]
    inputs = [json.loads(Path(r["json"]).read_text())["input_path"] for r in summary["results"]]
    assert inputs == [str(tmp_path / "in" / "a" / "x.png"), str(tmp_path / "in" / "b" / "x.png")]
    assert sorted(p.name for p in (out / "predict").iterdir()) == ["x_res.json", "x_res.png", "x_res_1.json",
                                                                   "x_res_1.png"]


def test_empty_folder_is_a_clear_error(standin, weights, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    p = create_model(NAME, weight_path=weights)
    with pytest.raises(DatasetError, match="empty' holds no images"):
        list(p.predict(str(tmp_path / "empty")))
