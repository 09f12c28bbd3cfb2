"""Loaders over `paddle.io.DataLoader`: seeded per epoch, worker processes, data-parallel sampling."""
import functools
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import paddle
from omegaconf import DictConfig

from engine.runtime import distributed as dist

from .augment import multiscale_collate
from .batching import collate
from .coco import CocoInstances
from .transforms import apply_reader


class ReaderDataset(paddle.io.Dataset):
    """A CocoInstances with the reader's transforms; randomness from (seed, epoch, index) only, so a
    resumed run and any worker layout see the same augmentations."""

    def __init__(self, source: CocoInstances, reader: Any, train: bool, seed: int) -> None:
        super().__init__()
        self.source, self.reader, self.train, self.seed = source, reader, train, seed
        self.epoch = 0
        self.coco, self.cat_ids, self.label_names = source.coco, source.cat_ids, source.label_names
        self.ann_file = source.ann_file

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        sample = self.source.load(int(index))
        if not self.train:
            for key in ("gt_bbox", "gt_mask", "gt_class", "is_crowd"):
                sample.pop(key)
        return apply_reader(sample, self.reader, rng, self.train)


class EpochBatchSampler(paddle.io.DistributedBatchSampler):
    """DistributedBatchSampler whose `set_epoch` also reseeds the dataset's augmentations; the shuffle
    seed mixes in Global.seed (the parent shuffles with RandomState(epoch) alone). `start_at(n)` makes
    the next pass begin after its first `n` batches without loading them (mid-epoch resume)."""

    def __init__(self, dataset: ReaderDataset, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self._start = 0
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch((int(self.dataset.seed) * 1_000_003 + int(epoch)) % 2**32)
        self.dataset.epoch = int(epoch)

    def start_at(self, batches: int) -> None:
        """Skip the first `batches` batches of the next pass only (their indices are drawn, not loaded)."""
        self._start = max(int(batches), 0)

    def __iter__(self) -> Iterator[List[int]]:
        start, self._start = self._start, 0
        for i, indices in enumerate(super().__iter__()):
            if i >= start:
                yield indices


class EpochCollate:
    """Batch-level multi-scale collate that reads the dataset's current epoch when called (a plain
    object, so it travels to worker processes with the dataset it refers to)."""

    def __init__(self, dataset: ReaderDataset, reader: Any) -> None:
        self.dataset = dataset
        self.sizes = [int(v) for v in reader.batch_sizes]
        self.mean, self.std, self.pad_stride = list(reader.mean), list(reader.std), int(reader.pad_stride)

    def __call__(self, samples: List[Dict[str, Any]]) -> Dict[str, Any]:
        return multiscale_collate(samples, self.sizes, self.mean, self.std, self.pad_stride,
                                  seed=int(self.dataset.seed), epoch=int(self.dataset.epoch))


class ShardBatchSampler(paddle.io.BatchSampler):
    """Batches of every `num_replicas`-th index from `rank`, in order and without padding, so each image is
    evaluated by exactly one rank (DistributedBatchSampler repeats images to even out the shares)."""

    def __init__(self, dataset: ReaderDataset, batch_size: int, num_replicas: int, rank: int) -> None:
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, False
        mine = list(range(rank, len(dataset), num_replicas))
        self.batches = [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]

    def __iter__(self) -> Iterator[List[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class Loader:
    """Iterates batches of paddle tensors (docs/ENGINE.md); samples are collated in the workers."""

    def __init__(self, dataset: ReaderDataset, batch_sampler: paddle.io.BatchSampler, num_workers: int,
                 pad_stride: int,
                 collate_fn: Optional[Callable[[List[Dict[str, Any]]], Dict[str, Any]]] = None) -> None:
        self.dataset, self.batch_sampler, self.num_workers = dataset, batch_sampler, num_workers
        collate_fn = collate_fn or functools.partial(collate, pad_stride=pad_stride)
        self._loader = paddle.io.DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers,
                                            collate_fn=collate_fn, return_list=True)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        for batch in self._loader:
            yield to_tensors(batch)


def to_tensors(batch: Dict[str, Any]) -> Dict[str, Any]:
    """Batch leaves as paddle tensors (the DataLoader converts most; lists stay lists of tensors)."""
    out: Dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, list):
            out[key] = [v if isinstance(v, paddle.Tensor) else paddle.to_tensor(v) for v in value]
        else:
            out[key] = value if isinstance(value, paddle.Tensor) else paddle.to_tensor(value)
    return out


def build_loader(cfg: DictConfig, split: str, dataset: Optional[ReaderDataset] = None,
                 shuffle: Optional[bool] = None, distributed: Optional[bool] = None,
                 batch_size: Optional[int] = None) -> Loader:
    """Loader of `split` ("train": TrainReader, shuffled, drop_last; "val": EvalReader, every image once).

    `dataset` reuses an already-read split; `distributed` (default: yes when data-parallel) shards it over
    the ranks: train batches through DistributedBatchSampler, val images without repeats (ShardBatchSampler;
    the evaluator gathers every rank's results, docs/ENGINE.md).
    """
    train = split == "train"
    reader = cfg.TrainReader if train else cfg.EvalReader
    if dataset is None:
        source = CocoInstances(cfg.Global.dataset_dir, split, skip_empty=train and bool(reader.skip_empty))
        dataset = ReaderDataset(source, reader, train, int(cfg.Global.seed))
    size = batch_size or (int(cfg.Train.batch_size) if train else int(cfg.Evaluate.batch_size))
    shard = (train or dist.world_size() > 1) if distributed is None else distributed
    ranks = {} if shard else {"num_replicas": 1, "rank": 0}
    if not train and shard:
        return Loader(dataset, ShardBatchSampler(dataset, size, dist.world_size(), dist.rank()),
                      int(cfg.Train.num_workers), int(reader.pad_stride))
    sampler = EpochBatchSampler(dataset, batch_size=size, shuffle=train if shuffle is None else shuffle,
                                drop_last=train and len(dataset) >= size, **ranks)
    workers = int(cfg.Train.num_workers)
    collate_fn = None
    if train and len(reader.batch_sizes) > 0:  # batch-level multi-scale: resize + normalise per batch
        collate_fn = EpochCollate(dataset, reader)
    return Loader(dataset, sampler, workers, int(reader.pad_stride), collate_fn)
