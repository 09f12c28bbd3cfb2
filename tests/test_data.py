"""Data pipeline: masks match pycocotools, transforms keep masks and boxes together, batches follow
docs/ENGINE.md, the loader's order and augmentations depend only on (seed, epoch)."""
import json

import numpy as np
import paddle
import pytest
from omegaconf import OmegaConf

from dataset_tools.synthetic import make_coco_dataset
from engine.config.schema import EvalReaderSection, InstSegConfig
from engine.data.batching import collate
from engine.data.coco import CocoInstances
from engine.data.loader import build_loader
from engine.data.transforms import apply_reader, fit_boxes_to_masks, hflip, resize
from engine.errors import DatasetError


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return make_coco_dataset(tmp_path_factory.mktemp("coco"), num_train=6, num_val=3, size=(48, 64),
                             crowd_every=4, seed=3)


def _cfg(root, **train):
    cfg = OmegaConf.structured(InstSegConfig)
    cfg.Global.dataset_dir = str(root)
    cfg.Train.batch_size = 2
    cfg.Train.num_workers = 0
    cfg.TrainReader.short_sizes = [40, 56, 72]
    cfg.TrainReader.max_size = 120
    cfg.TrainReader.flip_prob = 0.5
    cfg.EvalReader.target_size = [48, 120]
    for key, value in train.items():
        cfg.Train[key] = value
    return cfg


def _tight_boxes(masks):
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.array(boxes, np.float32)


def test_masks_equal_pycocotools(dataset_dir):
    data = CocoInstances(str(dataset_dir), "train")
    crowd_seen = 0
    for index, image_id in enumerate(data.image_ids):
        sample = data.load(index)
        anns = data.coco.imgToAnns[image_id]
        expected = np.stack([data.coco.annToMask(a) for a in anns])
        np.testing.assert_array_equal(sample["gt_mask"], expected)
        np.testing.assert_array_equal(sample["is_crowd"], [a["iscrowd"] for a in anns])
        crowd_seen += int(sample["is_crowd"].sum())
        assert sample["image"].shape[:2] == tuple(sample["ori_shape"]) == (48, 64)
    assert crowd_seen > 0
    assert data.label_names == ["ellipse", "rectangle", "triangle"]


def test_resize_and_flip_keep_boxes_on_masks(dataset_dir):
    data = CocoInstances(str(dataset_dir), "train")
    rng = np.random.default_rng(0)
    for trial in range(12):
        sample = data.load(trial % len(data))
        sample = resize(sample, int(rng.integers(20, 90)), 200, keep_ratio=bool(trial % 2))
        if rng.random() < 0.5:
            sample = hflip(sample)
        before = sample["gt_bbox"].copy()
        sample = fit_boxes_to_masks(sample)
        np.testing.assert_allclose(_tight_boxes(sample["gt_mask"]), sample["gt_bbox"], atol=1.0)
        moved = np.abs(sample["gt_bbox"] - before[: len(sample["gt_bbox"])]).max(axis=1)
        assert np.median(moved) <= 1.5  # the scaled annotation box and the mask agree up to rounding


def test_apply_reader_records_shapes(dataset_dir):
    data = CocoInstances(str(dataset_dir), "val")
    reader = OmegaConf.structured(EvalReaderSection(target_size=[96, 1000]))
    sample = apply_reader(data.load(0), reader, np.random.default_rng(0), train=False)
    assert sample["image"].shape == (3, 96, 128) and sample["image"].dtype == np.float32
    np.testing.assert_allclose(sample["im_shape"], [96, 128])
    np.testing.assert_allclose(sample["scale_factor"], [2.0, 2.0])


def test_collate_pads_to_stride():
    samples = []
    for h, w in ((30, 50), (40, 20)):
        samples.append({"image": np.ones((3, h, w), np.float32), "im_shape": np.array([h, w], np.float32),
                        "scale_factor": np.ones(2, np.float32), "ori_shape": np.array([h, w], np.int32),
                        "im_id": np.int64(h), "gt_bbox": np.zeros((1, 4), np.float32),
                        "gt_class": np.zeros(1, np.int32), "is_crowd": np.zeros(1, np.int32),
                        "gt_mask": np.ones((1, h, w), np.uint8)})
    batch = collate(samples, pad_stride=32)
    assert batch["image"].shape == (2, 3, 64, 64)
    assert batch["image"][1, :, 40:].sum() == 0 and batch["image"][1, :, :40, :20].all()
    assert [m.shape for m in batch["gt_mask"]] == [(1, 64, 64), (1, 64, 64)]
    assert batch["gt_mask"][0].sum() == 30 * 50


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_contract(dataset_dir, workers):
    loader = build_loader(_cfg(dataset_dir, num_workers=workers), "train")
    loader.batch_sampler.set_epoch(0)
    batches = list(loader)
    assert len(batches) == len(loader) == 3
    batch = batches[0]
    assert batch["image"].dtype == paddle.float32 and batch["image"].shape[0] == 2
    assert batch["image"].shape[2] % 32 == 0 and batch["image"].shape[3] % 32 == 0
    assert batch["im_id"].dtype == paddle.int64 and batch["ori_shape"].dtype == paddle.int32
    for key, dtype in (("gt_bbox", paddle.float32), ("gt_class", paddle.int32), ("gt_mask", paddle.uint8)):
        assert len(batch[key]) == 2 and all(t.dtype == dtype for t in batch[key])
    assert batch["gt_mask"][0].shape[1:] == batch["image"].shape[2:]


def _epoch(cfg, epoch):
    loader = build_loader(cfg, "train")
    loader.batch_sampler.set_epoch(epoch)
    return [(b["im_id"].numpy().tolist(), float(b["image"].sum())) for b in loader]


def test_order_and_augmentation_depend_on_seed_and_epoch(dataset_dir):
    cfg = _cfg(dataset_dir)
    assert _epoch(cfg, 1) == _epoch(cfg, 1)
    assert _epoch(cfg, 1) != _epoch(cfg, 2)


def test_bad_segmentation_names_annotation(tmp_path):
    root = make_coco_dataset(tmp_path / "bad", num_train=2, num_val=1, size=(32, 32), seed=1)
    path = root / "annotations" / "instance_train.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["segmentation"] = "not a polygon"
    path.write_text(json.dumps(doc))
    data = CocoInstances(str(root), "train")
    index = data.image_ids.index(doc["annotations"][0]["image_id"])
    with pytest.raises(DatasetError, match=f"annotation id {doc['annotations'][0]['id']}"):
        data.load(index)
