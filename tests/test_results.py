"""InstanceSegResult: RLE round trip, drawing, file naming."""
import json

import cv2
import numpy as np
import pytest

from engine.prediction.results import InstanceSegResult, class_colour, rle_to_mask


def _result(input_path=None):
    rng = np.random.default_rng(0)
    img = np.full((60, 80, 3), 128, np.uint8)
    m1 = np.zeros((60, 80), np.uint8)
    m1[10:30, 10:40] = 1
    m2 = (rng.random((60, 80)) > 0.7).astype(np.uint8)
    m2[:, :45] = 0
    boxes = [
        {"cls_id": 0, "label": "cat", "score": 0.91, "coordinate": [10.0, 10.0, 39.0, 29.0]},
        {"cls_id": np.int64(2), "label": "dog", "score": np.float32(0.55), "coordinate": [45, 0, 79, 59]},
    ]
    return InstanceSegResult(input_path, img, boxes, [m1, m2]), img, [m1, m2]


def test_json_masks_decode_back_exactly(tmp_path):
    res, _, masks = _result()
    out = res.save_to_json(str(tmp_path))
    assert out.name.endswith("_res.json")
    data = json.loads(out.read_text())
    assert data["page_index"] is None and data["input_path"] is None
    assert data["boxes"][1] == {"cls_id": 2, "label": "dog", "score": pytest.approx(0.55),
                                "coordinate": [45.0, 0.0, 79.0, 59.0]}
    for rle, m in zip(data["masks"], masks):
        assert rle["size"] == [60, 80] and isinstance(rle["counts"], str)
        np.testing.assert_array_equal(rle_to_mask(rle), m)


def test_print_hides_masks(capsys):
    res, _, _ = _result("/x/a.jpg")
    res.print()
    printed = json.loads(capsys.readouterr().out)
    assert printed["res"]["masks"] == "..."
    assert printed["res"]["input_path"] == "/x/a.jpg"


def test_save_to_img_draws_inside_masks(tmp_path):
    res, img, masks = _result(str(tmp_path / "pic.png"))
    out = res.save_to_img(str(tmp_path / "outdir"))
    assert out.name == "pic_res.png"
    drawn = cv2.imread(str(out)).astype(int)
    diff = np.abs(drawn - img.astype(int)).sum(-1)
    for m in masks:
        inside = m.astype(bool)
        assert (diff[inside] > 30).mean() > 0.95
    # far from any mask and box nothing changes
    assert diff[45:, :40].max() == 0
    # the semi-transparent blend keeps part of the original: not pure class colour
    bgr = class_colour(0)[::-1].astype(int)
    assert np.abs(drawn[20, 25] - bgr).sum() > 30
    assert res.img["res"].size == (80, 60)


def test_explicit_paths_used_as_is(tmp_path):
    res, _, _ = _result()
    assert res.save_to_json(str(tmp_path / "r.json")) == tmp_path / "r.json"
    assert res.save_to_img(str(tmp_path / "v.jpg")) == tmp_path / "v.jpg"
    assert cv2.imread(str(tmp_path / "v.jpg")).shape == (60, 80, 3)


def test_palette_is_not_mutated():
    before = class_colour(3).copy()
    res, _, _ = _result()
    res._render()
    c = class_colour(3)
    c[:] = 0
    np.testing.assert_array_equal(class_colour(3), before)


def test_dict_constructor_same_as_fields():
    res, img, masks = _result("a.png")
    other = InstanceSegResult({"input_path": "a.png", "page_index": None, "input_img": img,
                               "boxes": res.boxes, "masks": masks})
    assert other.json == res.json
