"""Test-only stand-ins for the trainer: a tiny model, an in-memory loader, a real tiny metric.

Also a driver: `python tests/trainer_standins.py OUTPUT [KEY=VALUE ...] [--kill-after-save NAME]
[--kill-during-save NAME] [--sigterm-at-step N] [--kill-rank-at-step RANK N] [--stop-sync-every N]`
trains with these stand-ins (optionally killing itself at
a chosen moment) and, on every rank, dumps its final weights to `OUTPUT/rank<r>_weights.npz`. It runs
under `paddle.distributed.launch` too. Nothing here is used by the engine.
"""
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import paddle
import paddle.nn.functional as F
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config.schema import InstSegConfig  # noqa: E402
from engine.data.loader import EpochBatchSampler  # noqa: E402
from engine.training.trainer import TrainHooks  # noqa: E402

IMAGE = 8
NUM_TRAIN = 12
NUM_VAL = 6


class TinyDataset(paddle.io.Dataset):
    """Fixed random images; class 1 images are brighter. Training flips images at random, drawn per
    (seed, epoch, index) as the engine's ReaderDataset draws its augmentations."""

    label_names = ["dark", "bright"]

    def __init__(self, num: int, seed: int, train: bool) -> None:
        rng = np.random.RandomState(seed)
        self.labels = rng.randint(0, 2, size=num)
        brightness = self.labels[:, None, None, None] * 0.8
        self.images = (rng.randn(num, 3, IMAGE, IMAGE) + brightness).astype("float32")
        self.train, self.seed, self.epoch = train, seed, 0
        self.loads = 0  # __getitem__ calls in this process

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Tuple[np.ndarray, int, int]:
        self.loads += 1
        image = self.images[i]
        if self.train and np.random.default_rng([self.seed, self.epoch, i]).random() < 0.5:
            image = image[:, :, ::-1].copy()
        return image, int(self.labels[i]), i + 1


def collate(samples: List[Tuple[np.ndarray, int, int]]) -> Dict[str, Any]:
    """NumPy only (it may run in a worker process); the DataLoader turns the arrays into Tensors."""
    n = len(samples)
    return {
        "image": np.stack([s[0] for s in samples]),
        "im_shape": np.full([n, 2], float(IMAGE), dtype="float32"),
        "scale_factor": np.ones([n, 2], dtype="float32"),
        "im_id": np.array([s[2] for s in samples], dtype="int64"),
        "gt_class": [np.array([s[1]], dtype="int32") for s in samples],
    }


class TinyModel(paddle.nn.Layer):
    """Conv + BN + linear classifier; its loss draws random numbers (dropout, sampling) from Paddle,
    and the conv has a per-parameter LR multiplier, like a backbone's lr_mult."""

    draw_threshold = 0.5

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 3, padding=1, weight_attr=paddle.ParamAttr(learning_rate=0.5))
        self.bn = paddle.nn.BatchNorm2D(4)
        self.head = paddle.nn.Linear(4, num_classes)

    def _logits(self, image: paddle.Tensor) -> paddle.Tensor:
        feats = F.relu(self.bn(self.conv(image)))
        if self.training:
            feats = F.dropout(feats, 0.2)
        return self.head(feats.mean(axis=[2, 3]))

    def loss(self, batch: Dict[str, Any]) -> Dict[str, paddle.Tensor]:
        logits = self._logits(batch["image"])
        labels = paddle.concat(batch["gt_class"]).astype("int64")
        # the model draws from Paddle's stream only, as the engine's models do
        keep = (paddle.rand([len(batch["gt_class"])]) < 0.9).numpy()
        keep[0] = True
        idx = paddle.to_tensor(np.nonzero(keep)[0])
        loss_cls = F.cross_entropy(paddle.gather(logits, idx), paddle.gather(labels, idx))
        loss_aux = 0.01 * (logits ** 2).mean()
        return {"loss_cls": loss_cls, "loss_aux": loss_aux}

    def predict(self, batch: Dict[str, Any]) -> paddle.Tensor:
        return self._logits(batch["image"]).argmax(axis=1)


def build_loader(cfg: DictConfig, split: str) -> Tuple[paddle.io.DataLoader, TinyDataset]:
    train = split == "train"
    dataset = TinyDataset(NUM_TRAIN if train else NUM_VAL, seed=0 if train else 1, train=train)
    bs = int(cfg.Train.batch_size)
    world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    if not train and world > 1:  # the engine's val sharding: every image on exactly one rank
        from engine.data.loader import ShardBatchSampler

        sampler = ShardBatchSampler(dataset, bs, world, int(os.environ["PADDLE_TRAINER_ID"]))
    else:
        ranks = {} if train else {"num_replicas": 1, "rank": 0}
        sampler = EpochBatchSampler(dataset, batch_size=bs, shuffle=train, drop_last=train, **ranks)
    workers = int(cfg.Train.num_workers) if train else 0
    loader = paddle.io.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers)
    return loader, dataset


EVAL_LOG_ENV = "INSTSEG_TEST_EVAL_LOG"


def evaluate(model: paddle.nn.Layer, loader: Any, dataset: TinyDataset) -> Optional[Dict[str, float]]:
    """Accuracy over this rank's share of the images, gathered as the engine's evaluator does: reported as
    mask "AP" on rank 0, None elsewhere (each rank logs its share and rank 0 the gathered AP when asked)."""
    from engine.runtime import distributed as dist

    correct, ids = 0, []
    for batch in loader:
        pred = model.predict(batch).numpy()
        labels = np.concatenate([g.numpy() for g in batch["gt_class"]])
        correct += int((pred == labels).sum())
        ids += [int(i) for i in np.asarray(batch["im_id"]).reshape(-1)]
    parts = dist.all_gather_object((correct, len(ids)))
    ap = sum(c for c, _ in parts) / sum(n for _, n in parts) if dist.is_main() else None
    log = os.environ.get(EVAL_LOG_ENV)
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps({"rank": dist.rank(), "ids": ids, "dataset": len(dataset), "AP": ap}) + "\n")
    return None if ap is None else {"AP": ap, "bbox_AP": ap / 2}


def hooks(models: Optional[List[paddle.nn.Layer]] = None, scores: Optional[List[float]] = None) -> TrainHooks:
    """Stand-in hooks; `models` collects the built model, `scores` scripts the AP of successive evals."""
    calls = {"n": 0}

    def build_model(cfg: DictConfig) -> paddle.nn.Layer:
        model = TinyModel(int(cfg.Train.num_classes))
        if models is not None:
            models.append(model)
        return model

    def scripted(model: paddle.nn.Layer, loader: Any, dataset: Any) -> Optional[Dict[str, float]]:
        metrics = evaluate(model, loader, dataset)
        if scores is not None and metrics is not None:
            metrics["AP"] = scores[calls["n"]]
            calls["n"] += 1
        return metrics

    return TrainHooks(build_model, build_loader, scripted)


BASE = {
    "Global": {"model": "MaskRCNN-ResNet50-FPN", "device": "cpu", "seed": 7},
    "Train": {"epochs_iters": 3, "batch_size": 3, "learning_rate": 0.05, "warmup_steps": 3,
              "warmup_start_factor": 0.1, "milestones": [2], "base_epochs": 3, "log_interval": 2,
              "num_workers": 0, "export_best": False, "keep_checkpoints": 5},
}


def make_cfg(output: Path, overrides: Optional[List[str]] = None) -> DictConfig:
    cfg = OmegaConf.merge(OmegaConf.structured(InstSegConfig), BASE)
    cfg.Global.output = str(output)
    cfg.Global.mode = "train"
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    return cfg


def state_numpy(model: paddle.nn.Layer) -> Dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.state_dict().items()}


def _install_kill_hooks(args: List[str]) -> List[str]:
    """Parse the --kill-* / --sigterm-* options and patch the engine accordingly; returns the rest."""
    import engine.training.checkpoint as ckpt
    import engine.training.trainer as trainer

    rest: List[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--kill-after-save":
            name = next(it)
            save = ckpt.save_checkpoint

            def killing_save(output: Path, ckpt_name: str, *a: Any, _n: str = name, **k: Any) -> Path:
                path = save(output, ckpt_name, *a, **k)
                if ckpt_name == _n:
                    os.kill(os.getpid(), signal.SIGKILL)
                return path

            ckpt.save_checkpoint = killing_save
        elif arg == "--kill-during-save":
            name = next(it)
            write = ckpt._write_file

            def killing_write(obj: Any, path: Path, _n: str = name) -> None:
                write(obj, path)
                if Path(path).parent.name == f".{_n}.tmp":  # first file of that checkpoint written
                    os.kill(os.getpid(), signal.SIGKILL)

            ckpt._write_file = killing_write
        elif arg == "--sigterm-at-step":
            at = int(next(it))
            train_step = trainer._train_step

            def signalling_step(run_: Any, batch: Any, _at: int = at) -> Dict[str, float]:
                losses = train_step(run_, batch)
                if run_.state.step + 1 == _at:  # optimizer step number _at has just been taken
                    os.kill(os.getpid(), signal.SIGTERM)
                return losses

            trainer._train_step = signalling_step
        elif arg == "--kill-rank-at-step":  # that rank dies (SIGKILL, a lost node) after that step
            who, at = int(next(it)), int(next(it))
            step_fn = trainer._train_step

            def dying_step(run_: Any, batch: Any, _who: int = who, _at: int = at) -> Dict[str, float]:
                losses = step_fn(run_, batch)
                if run_.state.step + 1 == _at and int(os.environ.get("PADDLE_TRAINER_ID", "0")) == _who:
                    os.kill(os.getpid(), signal.SIGKILL)
                return losses

            trainer._train_step = dying_step
        elif arg == "--stop-sync-every":
            trainer._STOP_SYNC_EVERY = int(next(it))
        else:
            rest.append(arg)
    return rest


def main(argv: List[str]) -> int:
    from engine.errors import InstSegError
    from engine.training.trainer import train

    output = Path(argv[0])
    overrides = _install_kill_hooks(argv[1:])
    cfg = make_cfg(output, overrides)
    models: List[paddle.nn.Layer] = []
    try:
        train(cfg, hooks(models))
    except InstSegError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    rank = int(os.environ.get("PADDLE_TRAINER_ID", "0"))
    np.savez(output / f"rank{rank}_weights.npz", **state_numpy(models[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
