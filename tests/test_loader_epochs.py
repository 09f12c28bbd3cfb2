"""The training loader across epochs and mid-epoch: batch multi-scale draws change with the epoch (and only
with it), and `start_at` begins a pass after its first batches without decoding them."""
from typing import Any, List, Tuple

import numpy as np
import pytest
from omegaconf import OmegaConf

from dataset_tools.synthetic import make_coco_dataset
from engine.config.schema import InstSegConfig
from engine.data.coco import CocoInstances
from engine.data.loader import build_loader


@pytest.fixture(scope="module")
def root(tmp_path_factory: Any) -> Any:
    return make_coco_dataset(tmp_path_factory.mktemp("epochs"), num_train=6, num_val=2, size=(48, 64),
                             max_shapes=3, seed=11)


def _cfg(root: Any, workers: int, batch_sizes: Tuple[int, ...] = ()) -> Any:
    cfg = OmegaConf.structured(InstSegConfig)
    cfg.Global.dataset_dir, cfg.Global.seed = str(root), 3
    cfg.Train.num_workers, cfg.Train.batch_size = workers, 2
    cfg.TrainReader.short_sizes, cfg.TrainReader.max_size, cfg.TrainReader.flip_prob = [40], 80, 0.5
    cfg.TrainReader.batch_sizes, cfg.TrainReader.pad_stride = list(batch_sizes), 0
    return cfg


def _sizes(loader: Any, epoch: int) -> List[int]:
    loader.batch_sampler.set_epoch(epoch)
    return [int(batch["image"].shape[2]) for batch in loader]


@pytest.mark.parametrize("workers", [0, 1])
def test_batch_multiscale_draws_change_with_the_epoch(root: Any, workers: int) -> None:
    # Unshuffled, so every epoch has the very same batches: only the epoch can change their sizes.
    loader = build_loader(_cfg(root, workers, (32, 40, 48, 56, 64, 72, 80)), "train", shuffle=False)
    per_epoch = [_sizes(loader, epoch) for epoch in range(4)]
    assert len({tuple(s) for s in per_epoch}) > 1, per_epoch
    assert _sizes(loader, 2) == per_epoch[2]  # the same epoch draws the same sizes again (resume)


def _batches(loader: Any) -> List[Tuple[List[int], np.ndarray]]:
    return [(batch["im_id"].numpy().tolist(), batch["image"].numpy()) for batch in loader]


def test_start_at_skips_batches_without_decoding_them(root: Any, monkeypatch: Any) -> None:
    cfg = _cfg(root, 0, (32, 48, 64))
    cfg.TrainReader.distort = True
    loader = build_loader(cfg, "train")
    loader.batch_sampler.set_epoch(5)
    full = _batches(loader)
    assert len(full) == 3
    decoded: List[int] = []
    load = CocoInstances.load
    monkeypatch.setattr(CocoInstances, "load", lambda self, i: decoded.append(int(i)) or load(self, i))
    loader.batch_sampler.set_epoch(5)
    loader.batch_sampler.start_at(2)
    resumed = _batches(loader)
    assert len(decoded) == 2  # the last batch's two images, nothing of the two skipped batches
    assert [ids for ids, _ in resumed] == [ids for ids, _ in full[2:]]
    for (_, got), (_, want) in zip(resumed, full[2:]):
        np.testing.assert_array_equal(got, want)  # same augmentation draws as the uninterrupted pass
    decoded.clear()
    assert len(_batches(loader)) == 3 and len(decoded) == 6  # the offset applies to one pass only
