"""The config schema: one dataclass per section. The schema is the documentation of every key.

Section names follow PaddleX (CamelCase sections, snake_case keys). `Architecture` is picked by the
model family of `Global.model` (see `architectures.py`).
"""
from dataclasses import dataclass, field
from typing import Any, List, Optional

MODES = ("check_dataset", "train", "evaluate", "predict", "export")


@dataclass
class GlobalSection:
    model: str = "MaskRCNN-ResNet50-FPN"  # PaddleX model name (engine/models/zoo.py)
    mode: str = "check_dataset"  # check_dataset | train | evaluate | predict | export
    dataset_dir: str = "demo_data/instance_seg"  # COCO layout: images/, annotations/instance_{train,val}.json
    device: Optional[str] = None  # cpu | gpu | gpu:0 | gpu:0,1,2,3 | xpu/npu/mlu[:ids]; None = auto
    ips: Optional[str] = None  # comma-separated node IPs for multi-node training (paddle.distributed.launch)
    output: str = "output"  # every mode writes here
    seed: int = 42  # seeds splits, conversion and training
    cpu_threads: Optional[int] = None  # CPU math threads; None = all cores
    # oneDNN kernels on CPU for training/eval (demo steps ~12% faster; see engine.runtime.device)
    onednn: bool = False


@dataclass
class ConvertSection:
    enable: bool = False  # convert the source format to COCO before checking
    src_dataset_type: Optional[str] = None  # LabelMe


@dataclass
class SplitSection:
    enable: bool = False  # re-split train+val into new train/val files
    train_percent: Optional[float] = None  # in (0, 100); train + val = 100
    val_percent: Optional[float] = None


@dataclass
class CheckDatasetSection:
    convert: ConvertSection = field(default_factory=ConvertSection)
    split: SplitSection = field(default_factory=SplitSection)
    sample_num: int = 10  # demo images drawn per split
    bbox_tolerance: float = 2.0  # pixels a box may exceed the image before it is an error


@dataclass
class KernelOptionSection:
    # auto (mkldnn on CPU, paddle on GPU) | mkldnn (oneDNN fp32) | mkldnn_bf16 (oneDNN bf16; CPUs with
    # AVX512_BF16 / AMX, else mkldnn with a warning) | paddle (Paddle's own kernels) | trt_fp32 | trt_fp16
    # (GPU with TensorRT); exported models only. An explicit value wins over Predict.use_hpip.
    run_mode: str = "auto"
    cpu_threads: Optional[int] = None  # None = Global.cpu_threads


@dataclass
class TrainSection:
    num_classes: int = 2  # must match the dataset's categories
    epochs_iters: int = 12  # number of epochs
    batch_size: int = 2  # per device
    learning_rate: float = 0.01  # base LR (not scaled by device count)
    pretrain_weight_path: Optional[str] = None  # local .pdparams; shape mismatches are skipped and logged
    warmup_steps: int = 100  # linear warm-up iterations
    warmup_start_factor: float = 0.001  # warm-up starts at learning_rate * this
    lr_scheduler: str = "piecewise"  # piecewise | cosine | constant
    milestones: List[int] = field(default_factory=lambda: [8, 11])  # epochs, for base_epochs
    base_epochs: int = 12  # milestones are scaled by epochs_iters / base_epochs
    gamma: float = 0.1  # piecewise decay factor
    optimizer: str = "momentum"  # momentum | adamw
    momentum: float = 0.9
    weight_decay: float = 1e-4
    clip_grad_norm: Optional[float] = None  # global-norm gradient clipping
    ema_decay: Optional[float] = None  # keep an EMA of the weights with this decay
    amp: bool = False  # mixed precision (GPU only)
    resume_path: Optional[str] = None  # a checkpoint .pdparams to resume from exactly
    auto_resume: bool = False  # resume from the last complete checkpoint in Global.output
    log_interval: int = 10  # iterations between log lines
    eval_interval: int = 1  # epochs between evaluations on val
    save_interval: int = 1  # epochs between checkpoints
    keep_checkpoints: int = 5  # epoch checkpoints kept (best_model is kept apart)
    num_workers: int = 2  # data loader worker processes
    export_best: bool = True  # export best_model/inference after training


@dataclass
class EvaluateSection:
    weight_path: Optional[str] = None  # default {output}/best_model/best_model.pdparams
    log_interval: int = 10  # val batches between progress log lines (evaluate and training evaluations)
    backend: str = "pycocotools"  # pycocotools | fast (same numbers, faster); also for training evaluations
    batch_size: int = 1


@dataclass
class ExportSection:
    weight_path: Optional[str] = None  # default {output}/best_model/best_model.pdparams
    save_dir: Optional[str] = None  # where the inference model is written; default {output}/inference
    # paddle: the Paddle Inference model only; onnx: also model.onnx (ONNX opset 16, through paddle2onnx:
    # pip install -r requirements-onnx.txt), next to the Paddle model, which predict keeps using
    format: str = "paddle"


@dataclass
class PredictSection:
    batch_size: int = 1
    model_dir: Optional[str] = None  # exported model dir; None = weights from Predict.weight_path
    weight_path: Optional[str] = None  # dygraph weights; default {output}/best_model/best_model.pdparams
    input: Optional[str] = None  # image, directory or URL
    threshold: Optional[float] = None  # None = the model's draw_threshold (0.5)
    # high-performance mode (PaddleX's name): the fastest run mode validated for this machine and the model
    # family (engine/deployment/high_performance.py); needs Predict.model_dir (an exported model)
    use_hpip: bool = False
    kernel_option: KernelOptionSection = field(default_factory=KernelOptionSection)


@dataclass
class ReaderSection:
    """Data pipeline knobs (PaddleDetection reader equivalents)."""

    short_sizes: List[int] = field(default_factory=lambda: [800])  # train: one picked per image
    max_size: int = 1333  # long-side cap when keep_ratio
    keep_ratio: bool = True  # False: resize to [short_sizes[0], max_size] as (h, w)
    flip_prob: float = 0.0  # horizontal flip probability
    pad_stride: int = 32  # pad batch to a multiple of this (0 = none)
    mean: List[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: List[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    distort: bool = False  # random photometric distortion
    expand: bool = False  # random expand (zoom out)
    expand_fill: Optional[List[float]] = None  # canvas colour (RGB, 0-1) of expand; None = `mean`
    crop: bool = False  # random IoU crop
    batch_sizes: List[int] = field(default_factory=list)  # batch-level multi-scale sizes (square)
    skip_empty: bool = True  # drop images without (non-crowd) annotations in training


@dataclass
class EvalReaderSection:
    """Evaluation and prediction preprocessing (PaddleDetection's EvalReader / TestReader: Resize,
    NormalizeImage, Permute, PadBatch), run by engine.data.preprocess for `evaluate`, `predict` and the
    exported model (export writes it into inference.yml)."""

    # keep_ratio: [short side, long-side cap] (either order); keep_ratio false: [h, w]
    target_size: List[int] = field(default_factory=lambda: [800, 1333])
    keep_ratio: bool = True  # one scale for both axes; False: stretch to target_size exactly
    interp: int = 1  # OpenCV interpolation: 0 nearest, 1 linear, 2 cubic, 3 area, 4 lanczos4
    mean: List[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])  # RGB, after / 255
    std: List[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    pad_stride: int = 32  # pad the batch to a multiple of this (0 = none)
    normalize_first: bool = False  # normalise, then resize in float32 (ppdet's SOLOv2 order)


@dataclass
class InstSegConfig:
    Global: GlobalSection = field(default_factory=GlobalSection)
    CheckDataset: CheckDatasetSection = field(default_factory=CheckDatasetSection)
    Train: TrainSection = field(default_factory=TrainSection)
    Evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    Export: ExportSection = field(default_factory=ExportSection)
    Predict: PredictSection = field(default_factory=PredictSection)
    TrainReader: ReaderSection = field(default_factory=ReaderSection)
    EvalReader: EvalReaderSection = field(default_factory=EvalReaderSection)
    Architecture: Any = None  # replaced by the family's dataclass (architectures.py)
