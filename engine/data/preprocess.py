"""The one evaluation / prediction preprocessing, shared by the eval loader, the dynamic predictor and the
exported predictor: PaddleDetection's Resize, NormalizeImage, Permute and pad-to-stride.

A `Preprocess` is built from an `EvalReader` config section (`from_reader`) or from inference.yml's
`Preprocess` ops (`from_ops`), and written back as those ops (`to_ops`), so an exported model rebuilds
exactly the steps it was evaluated with. Semantics (ppdet `Resize`):

- keep_ratio: one scale `s = min(min(target) / min(h, w), max(target) / max(h, w))`, new size
  `floor(dim * s + 0.5)` per axis; keep_ratio false: exactly `target_size` as (h, w).
- `scale_factor` is reported per axis as (new_h / h, new_w / w), `im_shape` as (new_h, new_w).
- normalisation is `((x * 1/255) - mean) / std` per RGB channel with ppdet's float32 / float64 steps
  (one 256-entry table per channel), applied to the resized uint8 image, or with `normalize_first` (ppdet's
  SOLOv2 readers) to the original image, which is then resized in float32.
- a batch is zero-padded bottom/right to its largest image, rounded up to `pad_stride` (0 = no rounding).

Only numpy and OpenCV are imported here, so a deployment needs no training code.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import cv2
import numpy as np

from ..errors import ConfigError, DatasetError
from .batching import collate

INTERPOLATIONS = {0: "nearest", 1: "linear", 2: "cubic", 3: "area", 4: "lanczos4"}  # cv2.INTER_* codes
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OP_TYPES = ("Resize", "NormalizeImage", "Permute", "PadStride")  # the order they run in
NORMALIZE_FIRST_OP_TYPES = ("NormalizeImage", "Resize", "Permute", "PadStride")  # with normalize_first

Sample = Dict[str, Any]


def resized_size(height: int, width: int, target: Sequence[int], keep_ratio: bool) -> Tuple[int, int]:
    """(new_h, new_w) of an image of (height, width) for `target` = (a, b): with `keep_ratio` the short
    side goes to min(a, b) unless the long side would pass max(a, b); otherwise exactly (a, b) as (h, w)."""
    if not keep_ratio:
        return int(target[0]), int(target[1])
    scale = min(min(target) / min(height, width), max(target) / max(height, width))
    # ppdet rounds half up; at least one pixel so a sliver image still resizes
    return max(1, int(scale * float(height) + 0.5)), max(1, int(scale * float(width) + 0.5))


def normalize_table(mean: Sequence[float], std: Sequence[float], is_scale: bool = True) -> np.ndarray:
    """float32 [3, 256]: the normalised value of every uint8 level per channel, rounded as ppdet's
    NormalizeImage rounds it (float32 scaling, then float64 subtract / divide stored as float32)."""
    levels = np.arange(256, dtype=np.float32)
    if is_scale:
        levels = levels * np.float32(1.0 / 255.0)
    shifted = (levels[None, :].astype(np.float64) - np.asarray(mean, np.float64)[:, None]).astype(np.float32)
    return (shifted.astype(np.float64) / np.asarray(std, np.float64)[:, None]).astype(np.float32)


def normalize_image(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> float32 [H, W, 3] through `normalize_table`'s table."""
    out = np.empty(image.shape, np.float32)
    for c in range(3):  # three channels, not instances
        np.take(table[c], image[:, :, c], out=out[:, :, c])
    return out


def normalize_permute_image(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> float32 [3, H, W] through `normalize_table`'s table (a gather is ~3x faster
    than float arithmetic on the whole image)."""
    out = np.empty((3,) + image.shape[:2], np.float32)
    for c in range(3):  # three channels, not instances
        np.take(table[c], image[:, :, c], out=out[c])
    return out


@dataclass(frozen=True)
class Preprocess:
    """Evaluation / prediction preprocessing of RGB uint8 images (see the module docstring).

    Attributes:
        target_size: (a, b): keep_ratio -> (short-side size, long-side cap) in either order; else (h, w).
        keep_ratio: keep the aspect ratio (one scale for both axes) or stretch to `target_size`.
        interp: OpenCV interpolation code (`INTERPOLATIONS`).
        mean, std: per RGB channel, applied after scaling to [0, 1] when `is_scale`.
        is_scale: divide by 255 before normalising.
        pad_stride: pad the batch to a multiple of this (0 = to the largest image only).
        normalize_first: normalise the original image, then resize it in float32 (ppdet's SOLOv2 order);
            otherwise resize the uint8 image, then normalise.
    """

    target_size: Tuple[int, int]
    keep_ratio: bool = True
    interp: int = cv2.INTER_LINEAR
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    is_scale: bool = True
    pad_stride: int = 0
    normalize_first: bool = False

    def __post_init__(self) -> None:
        if len(self.target_size) != 2 or min(self.target_size) <= 0:
            raise ConfigError(f"Preprocessing target_size must be two sizes > 0, got "
                              f"{list(self.target_size)}.")
        if self.interp not in INTERPOLATIONS:
            raise ConfigError(f"Preprocessing interp must be one of {INTERPOLATIONS} (OpenCV codes), got "
                              f"{self.interp!r}.")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"Preprocessing needs 3 means and 3 stds > 0, got {self.mean} / {self.std}.")
        if self.pad_stride < 0:
            raise ConfigError(f"Preprocessing pad_stride must be >= 0, got {self.pad_stride}.")

    @classmethod
    def from_reader(cls, reader: Any) -> "Preprocess":
        """From an `EvalReader` section (engine.config.schema.EvalReaderSection)."""
        return cls(target_size=(int(reader.target_size[0]), int(reader.target_size[1])),
                   keep_ratio=bool(reader.keep_ratio), interp=int(reader.interp),
                   mean=tuple(float(v) for v in reader.mean), std=tuple(float(v) for v in reader.std),
                   pad_stride=int(reader.pad_stride), normalize_first=bool(reader.normalize_first))

    @classmethod
    def from_ops(cls, ops: Sequence[Dict[str, Any]], source: str = "inference.yml") -> "Preprocess":
        """From inference.yml `Preprocess` ops; ConfigError (naming `source`) for ops or an order this
        version cannot run."""
        types = [str(op.get("type")) for op in ops]
        unknown = sorted(set(types) - set(OP_TYPES))
        if unknown or "Resize" not in types:
            raise ConfigError(f"{source}: Preprocess must have a Resize and only {', '.join(OP_TYPES)}; got "
                              f"{types}. Re-export the model with this version of InstSeg.")
        orders = [[t for t in order if t in types] for order in (OP_TYPES, NORMALIZE_FIRST_OP_TYPES)]
        if types not in orders:
            raise ConfigError(f"{source}: Preprocess ops run in the order {', '.join(OP_TYPES)} (or with "
                              f"NormalizeImage first); got {types}.")
        by_type = {op["type"]: op for op in ops}
        resize, norm = by_type["Resize"], by_type.get("NormalizeImage")
        try:
            return cls(target_size=tuple(int(v) for v in resize["target_size"]),  # type: ignore[arg-type]
                       keep_ratio=bool(resize.get("keep_ratio", True)),
                       interp=int(resize.get("interp", cv2.INTER_LINEAR)),
                       mean=tuple(float(v) for v in norm["mean"]) if norm else (0.0, 0.0, 0.0),
                       std=tuple(float(v) for v in norm["std"]) if norm else (1.0, 1.0, 1.0),
                       is_scale=bool(norm.get("is_scale", True)) if norm else False,
                       pad_stride=int(by_type.get("PadStride", {}).get("stride", 0)),
                       normalize_first=bool(norm) and types.index("NormalizeImage") < types.index("Resize"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: malformed Preprocess op ({exc!r}): {list(ops)}") from None

    def to_ops(self) -> List[Dict[str, Any]]:
        """inference.yml `Preprocess` (PaddleDetection's op names and fields)."""
        resize = {"type": "Resize", "target_size": [int(v) for v in self.target_size],
                  "keep_ratio": self.keep_ratio, "interp": self.interp}
        normalize = {"type": "NormalizeImage", "mean": [float(v) for v in self.mean],
                     "std": [float(v) for v in self.std], "is_scale": self.is_scale}
        first = [normalize, resize] if self.normalize_first else [resize, normalize]
        return first + [{"type": "Permute"}, {"type": "PadStride", "stride": self.pad_stride}]

    def sample(self, sample: Sample) -> Sample:
        """Resize and normalise `sample["image"]` (uint8 RGB [H, W, 3]) to float32 [3, h, w]; set
        `im_shape` and `scale_factor` (float32 (h, w)). Other keys pass through untouched."""
        image = sample["image"]
        h, w = image.shape[:2]
        new_h, new_w = resized_size(h, w, self.target_size, self.keep_ratio)
        if self.normalize_first:
            normalized = normalize_image(image, self._table())
            resized = cv2.resize(normalized, (new_w, new_h), interpolation=self.interp)
            sample["image"] = np.ascontiguousarray(resized.reshape(new_h, new_w, 3).transpose(2, 0, 1))
        else:
            resized = cv2.resize(image, (new_w, new_h), interpolation=self.interp)
            sample["image"] = normalize_permute_image(resized, self._table())
        sample["im_shape"] = np.array([new_h, new_w], np.float32)
        sample["scale_factor"] = np.array([new_h / h, new_w / w], np.float32)
        return sample

    def batch(self, images: Sequence[np.ndarray]) -> Dict[str, np.ndarray]:
        """numpy inputs for BGR uint8 [H, W, 3] images (cv2.imread's layout): `image` float32 [N, 3, H, W]
        padded, `im_shape`, `scale_factor` float32 [N, 2], `ori_shape` int32 [N, 2], `im_id` int64 [N]
        (position in `images`): the eval loader's batch without ground truth (docs/ENGINE.md)."""
        samples = []
        for i, bgr in enumerate(images):
            if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
                raise DatasetError(f"Input image {i} must be uint8 BGR [H, W, 3], got {bgr.dtype} "
                                   f"{bgr.shape}.")
            samples.append(self.sample({"image": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), "im_id": np.int64(i),
                                        "ori_shape": np.array(bgr.shape[:2], np.int32)}))
        return collate(samples, self.pad_stride)

    def _table(self) -> np.ndarray:
        table = _TABLES.get((self.mean, self.std, self.is_scale))
        if table is None:
            table = normalize_table(self.mean, self.std, self.is_scale)
            _TABLES[(self.mean, self.std, self.is_scale)] = table
        return table


_TABLES: Dict[Tuple[Any, ...], np.ndarray] = {}  # normalisation tables by (mean, std, is_scale)
