"""Segmentation decoding (polygon / uncompressed / compressed RLE vs pycocotools annToMask), bad-annotation
errors that name the id, and the random augmentations (expand, IoU crop, distort) keeping masks and boxes
together."""
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from dataset_tools.synthetic import make_coco_dataset
from engine.config.schema import ReaderSection
from engine.data.augment import distort, expand, iou_crop, random_augment
from engine.data.coco import CocoInstances
from engine.data.masks import decode_segmentations, mask_boxes
from engine.data.transforms import hflip, resize
from engine.errors import DatasetError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_coco_dataset(tmp_path_factory.mktemp("aug"), num_train=6, num_val=2, size=(48, 64),
                             max_shapes=4, crowd_every=3, seed=5)


def test_masks_match_pycocotools_for_polygons_and_rle(root):
    coco = COCO(str(root / "annotations" / "instance_train.json"))
    anns = list(coco.anns.values())
    assert {type(a["segmentation"]) for a in anns} == {list, dict}  # both kinds present
    uncompressed = {"size": [48, 64], "counts": [48 * 64 - 100, 100]}  # last 100 pixels (column-major)
    segs = [a["segmentation"] for a in anns] + [uncompressed]
    got = decode_segmentations(segs, 48, 64, [str(a["id"]) for a in anns] + ["u"])
    assert got.shape == (len(anns) + 1, 48, 64) and got.dtype == np.uint8
    for i, ann in enumerate(anns):
        np.testing.assert_array_equal(got[i], coco.annToMask(ann))
    assert got[-1].sum() == 100 and got[-1][:, -1].sum() == 48


def test_dataset_keeps_crowd_as_ignore_regions(root):
    ds = CocoInstances(str(root), "train")
    coco = ds.coco
    for index in range(len(ds)):
        sample = ds.load(index)
        anns = coco.imgToAnns[int(sample["im_id"])]
        np.testing.assert_array_equal(sample["is_crowd"], [a["iscrowd"] for a in anns])
        np.testing.assert_array_equal(sample["gt_mask"].sum(axis=(1, 2)),
                                      [coco.annToMask(a).sum() for a in anns])
    assert ds.label_names == ["ellipse", "rectangle", "triangle"] and ds.cat_ids == [1, 2, 3]


@pytest.mark.parametrize("field, value, words", [
    ("segmentation", [[1, 2, 3]], "polygon"),
    ("segmentation", {"size": [10, 10], "counts": "abc"}, "RLE size"),
    ("segmentation", None, "neither"),
    ("bbox", [1, 2], "bbox"),
    ("category_id", 99, "category_id 99"),
])
def test_bad_annotation_names_its_id(tmp_path, field, value, words):
    root = make_coco_dataset(tmp_path / "d", num_train=2, num_val=1, size=(32, 32), seed=1)
    path = root / "annotations" / "instance_train.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0][field] = value
    bad_id, bad_image = doc["annotations"][0]["id"], doc["annotations"][0]["image_id"]
    path.write_text(json.dumps(doc))
    ds = CocoInstances(str(root), "train")
    with pytest.raises(DatasetError) as err:
        ds.load(ds.image_ids.index(bad_image))
    assert f"annotation id {bad_id}" in str(err.value) and words in str(err.value)


def _assert_boxes_fit_masks(sample):
    masks, boxes = sample["gt_mask"], sample["gt_bbox"]
    assert masks.shape[1:] == sample["image"].shape[:2] and len(masks) == len(boxes)
    assert masks.any(axis=(1, 2)).all()
    np.testing.assert_allclose(mask_boxes(masks), boxes, atol=1.0)


@pytest.mark.parametrize("seed", range(12))
def test_random_geometry_keeps_masks_and_boxes_together(root, seed):
    rng = np.random.default_rng(seed)
    ds = CocoInstances(str(root), "train")
    sample = ds.load(seed % len(ds))
    sample["gt_bbox"] = mask_boxes(sample["gt_mask"])  # pixel-exact start, so any drift shows
    reader = ReaderSection(distort=True, expand=True, crop=True)
    sample = random_augment(sample, reader, rng)
    _assert_boxes_fit_masks(sample)
    sample = resize(sample, int(rng.choice([40, 56, 80])), 200, True)
    if rng.random() < 0.5:
        sample = hflip(sample)
    keep = sample["gt_mask"].any(axis=(1, 2))  # nearest resize may erase slivers
    sample = {k: (v[keep] if k in ("gt_bbox", "gt_mask") else v) for k, v in sample.items()}
    _assert_boxes_fit_masks(sample)


def test_expand_shifts_boxes_and_pads_masks():
    masks = np.zeros((1, 10, 20), np.uint8)
    masks[0, 2:5, 3:9] = 1
    sample = {"image": np.full((10, 20, 3), 7, np.uint8), "gt_mask": masks,
              "gt_bbox": np.array([[3, 2, 9, 5]], np.float32)}
    for seed in range(20):
        out = expand(dict(sample), np.random.default_rng(seed), [0.5, 0.5, 0.5])
        h, w = out["image"].shape[:2]
        assert h >= 10 and w >= 20 and out["gt_mask"].sum() == 18
        np.testing.assert_array_equal(mask_boxes(out["gt_mask"]), out["gt_bbox"])
        assert (out["image"] == 7).sum() == 10 * 20 * 3  # the original pixels are all still there


def test_iou_crop_drops_instances_that_leave_the_window():
    masks = np.zeros((2, 100, 100), np.uint8)
    masks[0, 5:15, 5:15] = 1
    masks[1, 60:95, 60:95] = 1
    base = {"image": np.zeros((100, 100, 3), np.uint8), "gt_mask": masks, "gt_bbox": mask_boxes(masks),
            "gt_class": np.array([0, 1], np.int32), "is_crowd": np.array([0, 1], np.int32)}
    sizes = set()
    for seed in range(30):
        out = iou_crop(dict(base), np.random.default_rng(seed))
        sizes.add(out["image"].shape[:2])
        assert 1 <= len(out["gt_class"]) <= 2 and len(out["is_crowd"]) == len(out["gt_class"])
        np.testing.assert_array_equal(out["gt_class"], out["is_crowd"])  # class and crowd flags stay paired
        _assert_boxes_fit_masks(out)
    assert len(sizes) > 3  # it does crop


def test_distort_changes_colours_only():
    image = np.random.default_rng(0).integers(0, 255, (16, 24, 3), dtype=np.uint8)
    outs = [distort({"image": image.copy()}, np.random.default_rng(s))["image"] for s in range(8)]
    assert all(o.shape == image.shape and o.dtype == np.uint8 for o in outs)
    assert any(not np.array_equal(o, image) for o in outs)


def _jpeg_with_orientation(image, orientation):
    """JPEG bytes of `image` with an EXIF APP1 segment holding only the Orientation tag."""
    import cv2
    import struct
    ok, jpg = cv2.imencode(".jpg", image)
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpg.tobytes()[:2] + app1 + jpg.tobytes()[2:]


def test_exif_orientation_is_honoured(tmp_path):
    root = make_coco_dataset(tmp_path / "d", num_train=1, num_val=1, size=(20, 40), seed=2)
    path = root / "annotations" / "instance_train.json"
    doc = json.loads(path.read_text())
    info = doc["images"][0]
    image = np.zeros((20, 40, 3), np.uint8)
    image[:6, :6] = 255  # white corner top-left
    (root / "images" / info["file_name"]).write_bytes(_jpeg_with_orientation(image, 6))  # rotate 90° CW
    info["height"], info["width"] = 40, 20
    poly = [[1.0, 1.0, 10.0, 1.0, 10.0, 30.0, 1.0, 30.0]]
    doc["annotations"] = [{"id": 1, "image_id": info["id"], "category_id": 1, "bbox": [1, 1, 9, 29],
                           "area": 261.0, "iscrowd": 0, "segmentation": poly}]
    path.write_text(json.dumps(doc))
    sample = CocoInstances(str(root), "train").load(0)
    assert sample["image"].shape == (40, 20, 3) and sample["gt_mask"].shape == (1, 40, 20)
    assert sample["image"][:4, -4:].min() > 200 and sample["image"][:4, :4].max() < 60  # corner now top-right
    np.testing.assert_array_equal(sample["ori_shape"], [40, 20])


def test_loader_with_all_augmentations_and_batch_multiscale(root):
    from omegaconf import OmegaConf
    from engine.config.schema import InstSegConfig
    from engine.data.loader import build_loader
    cfg = OmegaConf.structured(InstSegConfig)
    cfg.Global.dataset_dir = str(root)
    cfg.Train.batch_size, cfg.Train.num_workers = 2, 2
    reader = cfg.TrainReader
    reader.distort, reader.expand, reader.crop, reader.flip_prob = True, True, True, 0.5
    reader.batch_sizes, reader.pad_stride = [32, 48, 64], 0
    built = build_loader(cfg, "train")
    loader = built[0] if isinstance(built, tuple) else built
    sizes = set()
    for epoch in range(2):
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            n, c, h, w = batch["image"].shape
            assert (n, c) == (2, 3) and h == w and h in (32, 48, 64)
            assert str(batch["image"].dtype).endswith("float32")
            sizes.add(h)
            for boxes, masks, cls, crowd in zip(batch["gt_bbox"], batch["gt_mask"], batch["gt_class"],
                                                batch["is_crowd"]):
                masks = masks.numpy()
                assert masks.shape[1:] == (h, w) and masks.dtype == np.uint8
                assert len(cls) == len(crowd) == len(masks) == boxes.shape[0]
                np.testing.assert_allclose(mask_boxes(masks), boxes.numpy(), atol=1.0)
    assert len(sizes) >= 2


def test_normalize_permute_matches_the_formula():
    from engine.data.transforms import normalize_permute
    image = np.random.default_rng(1).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    out = normalize_permute({"image": image}, mean, std)["image"]
    want = ((image / 255.0 - np.array(mean)) / np.array(std)).transpose(2, 0, 1)
    assert out.shape == (3, 7, 9) and out.dtype == np.float32
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_fit_boxes_handles_no_instances_and_vanished_masks():
    from engine.data.transforms import fit_boxes_to_masks
    empty = {"gt_mask": np.zeros((0, 5, 6), np.uint8), "gt_bbox": np.zeros((0, 4), np.float32),
             "gt_class": np.zeros(0, np.int32), "is_crowd": np.zeros(0, np.int32)}
    assert fit_boxes_to_masks(empty)["gt_bbox"].shape == (0, 4)
    masks = np.zeros((2, 5, 6), np.uint8)
    masks[1, 1:3, 2:5] = 1
    out = fit_boxes_to_masks({"gt_mask": masks[:, :, ::-1], "gt_bbox": np.zeros((2, 4), np.float32),
                              "gt_class": np.array([4, 7], np.int32), "is_crowd": np.array([0, 1], np.int32)})
    np.testing.assert_array_equal(out["gt_bbox"], [[1, 1, 4, 3]])
    assert out["gt_class"].tolist() == [7] and out["is_crowd"].tolist() == [1] and len(out["gt_mask"]) == 1


def test_val_loader_shards_images_without_repeats_and_reuses_a_dataset(root, monkeypatch):
    from omegaconf import OmegaConf
    from engine.config.schema import InstSegConfig
    from engine.data.loader import build_loader
    cfg = OmegaConf.structured(InstSegConfig)
    cfg.Global.dataset_dir = str(root)
    cfg.Train.num_workers, cfg.Evaluate.batch_size = 0, 1
    whole = build_loader(cfg, "val")  # one process: every image
    assert len(whole) == len(whole.dataset) == 2
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "3")  # more ranks than images: one rank gets none
    seen = []
    for rank in range(3):
        monkeypatch.setenv("PADDLE_TRAINER_ID", str(rank))
        share = build_loader(cfg, "val", dataset=whole.dataset)
        assert share.dataset is whole.dataset
        seen += [int(b["im_id"][0]) for b in share]
        assert all("gt_mask" not in b for b in share)
    assert sorted(seen) == sorted(whole.dataset.source.image_ids)  # each image once, on one rank


def test_shuffle_order_depends_on_the_seed_too(root):
    from omegaconf import OmegaConf
    from engine.config.schema import InstSegConfig
    from engine.data.loader import build_loader

    def order(seed, epoch):
        cfg = OmegaConf.structured(InstSegConfig)
        cfg.Global.dataset_dir, cfg.Global.seed = str(root), seed
        cfg.Train.num_workers, cfg.Train.batch_size = 0, 1
        loader = build_loader(cfg, "train")
        loader.batch_sampler.set_epoch(epoch)
        assert loader.dataset.epoch == epoch
        return [b for batch in loader.batch_sampler for b in batch]

    assert order(1, 3) == order(1, 3)
    assert len({tuple(order(s, 3)) for s in range(6)}) > 1  # 6 images: seeds give different orders


def test_images_without_instances_skipped_in_training_only(tmp_path):
    root = make_coco_dataset(tmp_path / "d", num_train=3, num_val=3, size=(32, 32), seed=4)
    for split in ("train", "val"):
        path = root / "annotations" / f"instance_{split}.json"
        doc = json.loads(path.read_text())
        first, second = doc["images"][0]["id"], doc["images"][1]["id"]
        doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] != first]  # no annotations
        for a in doc["annotations"]:
            a["iscrowd"] = 1 if a["image_id"] == second else a["iscrowd"]  # crowd only
        path.write_text(json.dumps(doc))
    assert len(CocoInstances(str(root), "train", skip_empty=True)) == 1
    assert len(CocoInstances(str(root), "train", skip_empty=False)) == 3
    from omegaconf import OmegaConf
    from engine.config.schema import InstSegConfig
    from engine.data.loader import build_loader
    cfg = OmegaConf.structured(InstSegConfig)
    cfg.Global.dataset_dir, cfg.Train.num_workers, cfg.Train.batch_size = str(root), 0, 1
    assert len(build_loader(cfg, "train").dataset) == 1 and len(build_loader(cfg, "val").dataset) == 3
    cfg.TrainReader.skip_empty = False
    batches = list(build_loader(cfg, "train"))
    assert len(batches) == 3 and sorted(len(b["gt_class"][0]) for b in batches)[0] == 0  # empty image batches
