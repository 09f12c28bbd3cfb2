"""COCO metrics: every backend reproduces pycocotools' COCOeval run directly, to 1e-9."""
import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from engine.evaluation.coco_metrics import BACKENDS, evaluate_coco, summary_lines
from engine.errors import ConfigError
from tests.coco_eval_fixture import make_gt_and_results


def _reference(gt_path, res_path, iou_type):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(str(res_path)), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev, buf.getvalue()


@pytest.fixture(scope="module", params=[0, 1, 2])
def files(request, tmp_path_factory):
    gt, res = make_gt_and_results(seed=request.param, n_images=15)
    d = tmp_path_factory.mktemp(f"coco{request.param}")
    (d / "gt.json").write_text(json.dumps(gt))
    (d / "res.json").write_text(json.dumps(res))
    return d / "gt.json", d / "res.json"


@pytest.mark.parametrize("backend", BACKENDS)
def test_stats_equal_pycocotools(files, backend):
    gt_path, res_path = files
    gt = json.loads(gt_path.read_text())
    assert any(a["iscrowd"] for a in gt["annotations"])
    assert any(isinstance(a["segmentation"], list) for a in gt["annotations"])
    assert any(isinstance(a["segmentation"], dict) for a in gt["annotations"])
    out = evaluate_coco(str(gt_path), json.loads(res_path.read_text()), backend=backend)
    assert out["backend"] == backend  # "fast" must have run faster-coco-eval, not fallen back to pycocotools
    for t in ("bbox", "segm"):
        ev, _ = _reference(gt_path, res_path, t)
        np.testing.assert_allclose(out[t]["stats"], ev.stats, rtol=0, atol=1e-9)
        assert out[t]["AP"] == pytest.approx(ev.stats[0], abs=1e-9)
        assert out[t]["ARl"] == pytest.approx(ev.stats[11], abs=1e-9)
        # per-class AP averages to the overall AP over classes that have GT
        per = np.array(list(out["per_class_AP"][t].values()))
        assert per[per > -1].mean() == pytest.approx(ev.stats[0], abs=1e-9)
        names = [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
        assert list(out["per_class_AP"][t]) == names


def test_segm_differs_from_bbox(files):
    gt_path, res_path = files
    out = evaluate_coco(str(gt_path), json.loads(res_path.read_text()))
    assert out["bbox"]["stats"] != out["segm"]["stats"]
    assert 0 < out["segm"]["AP"] < 1


def test_summary_lines_match_pycocotools_print(files):
    gt_path, res_path = files
    ev, printed = _reference(gt_path, res_path, "segm")
    expected = [ln for ln in printed.splitlines() if ln.startswith(" Average")]
    assert summary_lines(ev.stats, "segm") == expected


def test_empty_results_and_bad_backend(files):
    gt_path, _ = files
    out = evaluate_coco(str(gt_path), [])
    assert out["segm"]["stats"] == [0.0] * 12
    with pytest.raises(ConfigError, match="backend"):
        evaluate_coco(str(gt_path), [], backend="nope")


def test_fast_without_faster_coco_eval_says_pycocotools_ran(files, monkeypatch, caplog):
    import sys

    gt_path, res_path = files
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # import fails as if not installed
    out = evaluate_coco(str(gt_path), json.loads(res_path.read_text()), backend="fast")
    assert out["backend"] == "pycocotools" and "needs faster-coco-eval" in caplog.text


class _PerfectModel:
    """Stand-in model: returns every non-crowd GT instance of the batch's images (padded masks)."""

    training = True

    def __init__(self, coco, cat_ids):
        self.coco, self.index = coco, {c: k for k, c in enumerate(cat_ids)}

    def eval(self):
        self.training = False

    def train(self):
        self.training = True

    def predict(self, batch):
        import paddle

        assert not self.training
        rows, masks, nums = [], [], []
        for im_id in batch["im_id"].numpy():
            anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[int(im_id)]))
            anns = [a for a in anns if not a["iscrowd"]]
            nums.append(len(anns))
            for a in anns:
                x, y, w, h = a["bbox"]
                rows.append([self.index[a["category_id"]], 0.9, x, y, x + w, y + h])
                m = np.zeros((128, 168), np.uint8)  # larger than the 120x160 images: evaluator crops
                m[:120, :160] = self.coco.annToMask(a)
                masks.append(m)
        return {"bbox": paddle.to_tensor(np.array(rows, np.float32).reshape(-1, 6)),
                "bbox_num": paddle.to_tensor(np.array(nums, np.int32)),
                "mask": paddle.to_tensor(np.array(masks, np.uint8).reshape(-1, 128, 168))}


def test_evaluate_model_perfect_predictions(files, caplog):
    import logging

    import paddle

    from engine.evaluation.evaluator import evaluate_model

    gt_path, _ = files
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_path))
    cat_ids = sorted(coco.getCatIds())
    ids = sorted(coco.getImgIds())
    loader = [{"im_id": paddle.to_tensor(np.array(ids[i:i + 2], np.int64)),
               "ori_shape": paddle.to_tensor(np.array([[120, 160]] * len(ids[i:i + 2]), np.int32))}
              for i in range(0, len(ids), 2)]
    dataset = type("D", (), {"coco": coco, "cat_ids": cat_ids, "label_names": ["a", "b", "c", "d"]})()
    model = _PerfectModel(coco, cat_ids)
    caplog.set_level(logging.INFO, logger="instseg")
    m = evaluate_model(model, loader, dataset, backend="fast", log_interval=3)
    assert m["eval_backend"] == "fast"
    messages = [r.getMessage() for r in caplog.records]
    progress = [m.split(":")[0] for m in messages if m.startswith("Eval iter")]
    assert progress == ["Eval iter 3/8", "Eval iter 6/8", "Eval iter 8/8"]  # every log_interval, and the last
    assert model.training  # training mode restored
    assert m["AP"] == pytest.approx(1.0) and m["bbox_AP"] == pytest.approx(1.0)
    assert set(m["per_class_mask_AP"]) == {"a", "b", "c", "d"}
    assert all(v == pytest.approx(1.0) or v == -1 for v in m["per_class_mask_AP"].values())
    for k in ("AP50", "AP75", "APs", "APm", "APl", "bbox_AP50", "bbox_APl"):
        assert k in m


def test_eval_results_tool(files, tmp_path, capsys):
    from tools.eval_results import main

    gt_path, res_path = files
    out = tmp_path / "m.json"
    args = ["--gt", str(gt_path), "--results", str(res_path), "--iou-type", "segm", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    ev, reference = _reference(gt_path, res_path, "segm")
    expected = [ln for ln in reference.splitlines() if ln.startswith(" Average")]
    assert [ln for ln in printed.splitlines() if ln.startswith(" Average")] == expected
    assert "per-class AP (segm)" in printed
    data = json.loads(out.read_text())
    np.testing.assert_allclose(data["segm"]["stats"], ev.stats, atol=1e-9)
    assert "bbox" not in data
    assert main(["--gt", str(gt_path), "--results", str(res_path), "--out", str(out)]) == 1  # no overwrite


@pytest.mark.parametrize("backend", BACKENDS)
def test_tied_scores_and_over_100_detections(tmp_path, backend):
    """Score ties (order must follow pycocotools' stable sort) and maxDets truncation."""
    gt, res = make_gt_and_results(seed=7, n_images=8)
    for r in res:
        r["score"] = float(np.round(r["score"], 1))
    first = gt["images"][0]["id"]
    res += [json.loads(json.dumps(dict(res[i % len(res)], image_id=first, score=0.5))) for i in range(150)]
    (tmp_path / "g.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(res))
    results = json.loads((tmp_path / "r.json").read_text())
    out = evaluate_coco(str(tmp_path / "g.json"), results, backend=backend)
    assert out["backend"] == backend
    for t in ("bbox", "segm"):
        ev, _ = _reference(tmp_path / "g.json", tmp_path / "r.json", t)
        np.testing.assert_allclose(out[t]["stats"], ev.stats, rtol=0, atol=1e-9)


def test_backends_share_one_gt_object(files):
    """One COCO object evaluated by both backends in turn: same numbers; fast leaves its annotations as
    they were."""
    import copy

    from engine.evaluation.coco_metrics import load_gt

    gt_path, res_path = files
    gt = load_gt(str(gt_path))
    before = copy.deepcopy(gt.dataset["annotations"])
    fast = evaluate_coco(gt, json.loads(res_path.read_text()), backend="fast")
    assert fast["backend"] == "fast"
    assert gt.dataset["annotations"] == before
    ref = evaluate_coco(gt, json.loads(res_path.read_text()), backend="pycocotools")
    for t in ("bbox", "segm"):
        np.testing.assert_allclose(fast[t]["stats"], ref[t]["stats"], rtol=0, atol=1e-9)
