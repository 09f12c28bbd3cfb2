"""Training-loader throughput (images/s) with the Mask R-CNN transforms: random short side 640–800, long
side ≤ 1333, flip, normalise, pad to 32, batched by paddle.io.DataLoader worker processes.

Also times the two ways of bringing masks to the training size (why the pipeline resizes bitmaps):
nearest-neighbour resize of the whole [M, H, W] stack with cv2 vs re-rasterising every polygon at the
target scale with pycocotools.

    python tools/benchmark_loader.py --images 64 --workers 2 --epochs 3
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from pycocotools import mask as mask_utils

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dataset_tools.synthetic import make_coco_dataset  # noqa: E402
from engine.config.schema import InstSegConfig  # noqa: E402
from engine.data.coco import CocoInstances  # noqa: E402
from engine.data.loader import build_loader  # noqa: E402
from engine.data.transforms import resize_masks  # noqa: E402


def loader_rate(root: Path, workers: int, batch: int, epochs: int) -> float:
    cfg = OmegaConf.structured(InstSegConfig)
    cfg.Global.dataset_dir = str(root)
    cfg.Train.batch_size, cfg.Train.num_workers = batch, workers
    reader = cfg.TrainReader
    reader.short_sizes, reader.max_size = [640, 672, 704, 736, 768, 800], 1333
    reader.flip_prob, reader.pad_stride = 0.5, 32
    built = build_loader(cfg, "train")
    loader = built[0] if isinstance(built, tuple) else built
    for _ in loader:  # warm-up epoch: worker start, first reads
        pass
    seen, start = 0, time.perf_counter()
    for epoch in range(1, epochs + 1):
        loader.batch_sampler.set_epoch(epoch)
        for b in loader:
            seen += int(b["image"].shape[0])
    return seen / (time.perf_counter() - start)


def mask_resize_costs(root: Path, repeat: int = 20) -> tuple:
    """ms per image: bitmap stack resize vs polygon re-rasterisation, to the 800-short-side size."""
    ds = CocoInstances(str(root), "train")
    samples = [ds.load(i) for i in range(min(len(ds), 16))]
    polys = [[a["segmentation"] for a in ds.coco.imgToAnns[int(s["im_id"])]] for s in samples]
    h, w = samples[0]["image"].shape[:2]
    scale = 800 / min(h, w)
    th, tw = int(round(h * scale)), int(round(w * scale))
    t0 = time.perf_counter()
    for _ in range(repeat):
        for s in samples:
            resize_masks(s["gt_mask"], th, tw)
    bitmap = (time.perf_counter() - t0) / (repeat * len(samples)) * 1e3
    t0 = time.perf_counter()
    for _ in range(repeat):
        for segs in polys:
            rles = [mask_utils.merge(mask_utils.frPyObjects([[v * scale for v in p] for p in seg], th, tw))
                    for seg in segs]
            np.ascontiguousarray(mask_utils.decode(rles).transpose(2, 0, 1))
    poly = (time.perf_counter() - t0) / (repeat * len(samples)) * 1e3
    return bitmap, poly, float(np.mean([len(s["gt_mask"]) for s in samples]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/instseg_bench_loader")
    args = ap.parse_args()
    root = Path(args.dir)
    if not (root / "annotations" / "instance_train.json").is_file():  # COCO-like 480x640, up to 12 shapes
        make_coco_dataset(root, num_train=args.images, num_val=1, size=(480, 640), max_shapes=12, seed=0)
    bitmap, poly, per_image = mask_resize_costs(root)
    print(f"mask resize to 800x1067, {per_image:.1f} instances/image: bitmap stack {bitmap:.2f} ms, "
          f"polygon re-rasterisation {poly:.2f} ms")
    rate = loader_rate(root, args.workers, args.batch, args.epochs)
    print(f"loader: {rate:.1f} images/s ({args.workers} workers, batch {args.batch}, {args.images} images x "
          f"{args.epochs} epochs)")


if __name__ == "__main__":
    main()
