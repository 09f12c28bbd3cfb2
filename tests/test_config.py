"""Config loading: every shipped YAML validates; strict keys, types and values with precise messages."""
from pathlib import Path
from typing import List

import pytest
from omegaconf import DictConfig
from omegaconf.errors import ReadonlyConfigError

from engine.config.load import DEFAULT_CONFIG, load_config
from engine.config.model_names import MODEL_FAMILIES
from engine.config.overrides import parse_overrides, parse_value
from engine.runtime.device import launch_command, needs_launch, parse_device
from engine.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
DEMOS = {p.stem for p in CONFIGS if p.stem == "demo" or p.stem.startswith("demo_")}  # demo, demo_<family>


def _error(path, overrides: List[str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(str(path) if path is not None else None, overrides)
    assert info.value.exit_code == 2
    return str(info.value)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------- shipped
def test_one_config_per_model():
    assert {p.stem for p in CONFIGS} == set(MODEL_FAMILIES) | DEMOS and "demo" in DEMOS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads(path):
    cfg = load_config(str(path), [])
    assert isinstance(cfg, DictConfig)
    if path.stem in DEMOS:  # demo-sized knobs and schedules of their own
        assert cfg.Global.model in MODEL_FAMILIES and cfg.Global.mode == "train"
        return
    assert cfg.Global.model == path.stem
    assert cfg.Train.epochs_iters == 40 and cfg.Train.warmup_steps == 100
    assert cfg.Train.num_classes == 2 and cfg.Train.log_interval == 10 and cfg.Train.eval_interval == 1
    if MODEL_FAMILIES[cfg.Global.model] in ("rcnn", "solov2"):
        assert cfg.Architecture.fpn_channels > 0
    elif MODEL_FAMILIES[cfg.Global.model] == "mask_rt_detr":
        assert cfg.Architecture.num_queries == 300 and cfg.Architecture.num_denoising == 100
    else:
        assert MODEL_FAMILIES[cfg.Global.model] == "ppyoloe_seg" and cfg.Architecture.depth_mult == 0.33


def test_paddlex_defaults_per_model():
    cascade = load_config(str(REPO / "configs/Cascade-MaskRCNN-ResNet50-FPN.yaml"), [])
    assert (cascade.Train.batch_size, cascade.Train.clip_grad_norm) == (1, 35.0)
    assert list(cascade.TrainReader.short_sizes) == [640, 672, 704, 736, 768, 800]
    resnext = load_config(str(REPO / "configs/MaskRCNN-ResNeXt101-vd-FPN.yaml"), [])
    assert list(resnext.Train.milestones) == [16, 22] and resnext.Train.base_epochs == 24
    c4 = load_config(str(REPO / "configs/MaskRCNN-ResNet50.yaml"), [])
    assert c4.TrainReader.pad_stride == 0 and list(c4.Train.milestones) == [8, 11]
    detr = load_config(str(REPO / "configs/Mask-RT-DETR-L.yaml"), [])
    assert (detr.Train.optimizer, detr.Train.learning_rate) == ("adamw", 1e-4)
    yoloe = load_config(str(REPO / "configs/PP-YOLOE_seg-S.yaml"), [])
    assert (yoloe.Train.batch_size, yoloe.Train.learning_rate) == (8, 0.001)
    assert yoloe.Train.lr_scheduler == "cosine"


def test_default_config_is_demo_wherever_cwd_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, [])
    assert DEFAULT_CONFIG == REPO / "configs" / "demo.yaml"
    assert cfg.Global.model == "MaskRCNN-ResNet50-FPN" and cfg.Train.num_classes == 3
    assert cfg.Architecture.base_channels == 16


def test_config_is_read_only():
    cfg = load_config(None, [])
    with pytest.raises(ReadonlyConfigError):
        cfg.Train.epochs_iters = 5


# --------------------------------------------------------------------------------------------- keys
def test_unknown_key_in_override_names_source_and_suggestion():
    msg = _error(None, ["Global.mode=train", "Train.epoch_iters=3"])
    assert msg == "Unknown key Train.epoch_iters (from -o #2). Did you mean Train.epochs_iters?"


def test_unknown_key_in_yaml_names_file(tmp_path):
    base = REPO / "configs/SOLOv2.yaml"
    path = _write(tmp_path / "bad.yaml", f"_base_: {base}\nTrain:\n  epoch_iters: 3\n")
    msg = _error(path, [])
    assert "Unknown key Train.epoch_iters" in msg and "Did you mean Train.epochs_iters?" in msg
    assert "bad.yaml" in msg


def test_unknown_section_and_nested_key():
    assert "Did you mean Train?" in _error(None, ["Trian.batch_size=2"])
    msg = _error(None, ["Predict.kernel_option.run_mod=paddle"])
    assert "Unknown key Predict.kernel_option.run_mod (from -o #1)" in msg
    assert "Predict.kernel_option.run_mode" in msg


def test_architecture_keys_follow_the_family():
    rcnn = _error(None, ["Architecture.fpn_channel=32"])
    assert "Did you mean Architecture.fpn_channels" in rcnn
    solo = _error(REPO / "configs/SOLOv2.yaml", ["Architecture.anchor_sizes=[8]"])
    assert "Unknown key Architecture.anchor_sizes" in solo
    cfg = load_config(str(REPO / "configs/SOLOv2.yaml"), ["Architecture.num_grids=[8,8,6,4,2]"])
    assert list(cfg.Architecture.num_grids) == [8, 8, 6, 4, 2]


def test_unknown_model_suggests_names():
    msg = _error(None, ["Global.model=MaskRCNN-Resnet50-FPN"])
    assert "Unknown model" in msg and "-o #1" in msg and "MaskRCNN-ResNet50-FPN" in msg


# --------------------------------------------------------------------------------------------- types
@pytest.mark.parametrize("override, fragment", [
    ("Train.epochs_iters=abc", "Train.epochs_iters (from -o #1): got 'abc' (str), expected int"),
    ("Train.epochs_iters=2.5", "expected int"),
    ("Train.epochs_iters=true", "expected int"),
    ("Train.epochs_iters=null", "expected int"),
    ("Train.amp=1", "expected bool"),
    ("TrainReader.short_sizes=[640, x]", "expected list of int"),
    ("Global.dataset_dir=5", "expected str"),
    ("Train=3", "Train (from -o #1) is a section"),
])
def test_wrong_type(override, fragment):
    assert fragment in _error(None, [override])


def test_wrong_type_in_yaml(tmp_path):
    path = _write(tmp_path / "t.yaml", "Train:\n  batch_size: two\n")
    msg = _error(path, [])
    assert "Wrong type for Train.batch_size" in msg and "t.yaml" in msg


@pytest.mark.parametrize("override, fragment", [
    ("Global.mode=trian", "choose one of check_dataset, train"),
    ("Train.epochs_iters=0", "Train.epochs_iters=0 (from -o #1): must be > 0"),
    ("Train.batch_size=-1", "Train.batch_size"),
    ("Train.optimizer=adam", "Did you mean adamw?"),
    ("Evaluate.backend=fastest", "pycocotools, fast"),
    ("Predict.kernel_option.run_mode=trt", "trt_fp32"),
    ("Predict.threshold=1.5", "in [0, 1]"),
    ("TrainReader.short_sizes=[]", "TrainReader.short_sizes"),
    ("Global.device=tpu", "Invalid Global.device 'tpu'"),
])
def test_bad_values(override, fragment):
    assert fragment in _error(None, [override])


# --------------------------------------------------------------------------------------------- merging
def test_base_precedence(tmp_path):
    _write(tmp_path / "base/a.yaml", "Train:\n  epochs_iters: 5\n  batch_size: 3\n  learning_rate: 0.5\n")
    _write(tmp_path / "base/b.yaml", "_base_: a.yaml\nTrain:\n  batch_size: 4\n")
    _write(tmp_path / "c.yaml", "Train:\n  learning_rate: 0.25\n")
    child = _write(tmp_path / "child.yaml", "_base_: [base/b.yaml, c.yaml]\nTrain:\n  epochs_iters: 7\n")
    cfg = load_config(str(child), [])
    assert (cfg.Train.epochs_iters, cfg.Train.batch_size, cfg.Train.learning_rate) == (7, 4, 0.25)
    cfg = load_config(str(child), ["Train.batch_size=9"])
    assert cfg.Train.batch_size == 9


def test_base_cycle_and_missing_base(tmp_path):
    _write(tmp_path / "x.yaml", "_base_: y.yaml\n")
    _write(tmp_path / "y.yaml", "_base_: x.yaml\n")
    assert "cycle" in _error(tmp_path / "x.yaml", [])
    _write(tmp_path / "z.yaml", "_base_: nowhere.yaml\n")
    msg = _error(tmp_path / "z.yaml", [])
    assert "Config file not found: " in msg and "nowhere.yaml" in msg and "a _base_ of" in msg


def test_lists_replace_not_merge():
    cfg = load_config(str(REPO / "configs/MaskRCNN-ResNet50-FPN.yaml"),
                      ["TrainReader.short_sizes=[640, 640]"])
    assert list(cfg.TrainReader.short_sizes) == [640, 640]


def test_repeated_and_grouped_overrides():
    cfg = load_config(None, ["Train.batch_size=3", "Train.epochs_iters=2", "Train.batch_size=5"])
    assert (cfg.Train.batch_size, cfg.Train.epochs_iters) == (5, 2)


def test_value_with_equals_and_shared_prefix():
    cfg = load_config(None, ["Predict.input=dir/a=b.png", "Train.num_classes=4", "Train.num_workers=0",
                             "Evaluate.log_interval=7", "Train.log_interval=3"])
    assert cfg.Predict.input == "dir/a=b.png"
    assert (cfg.Train.num_classes, cfg.Train.num_workers) == (4, 0)
    assert (cfg.Evaluate.log_interval, cfg.Train.log_interval) == (7, 3)


def test_yaml_scalar_parsing():
    assert parse_value("null") is None and parse_value("~") is None and parse_value("") is None
    assert parse_value("true") is True and parse_value("yes") is True  # YAML 1.1, documented
    assert parse_value("1e-4") == 1e-4 and isinstance(parse_value("1e-4"), float)
    assert parse_value("[640, 640]") == [640, 640]
    assert load_config(None, ["TrainReader.mean=[0, 0, 1]"]).TrainReader.mean == [0.0, 0.0, 1.0]
    assert parse_value("3") == 3 and parse_value("gpu:0,1") == "gpu:0,1"
    cfg = load_config(None, ["Train.learning_rate=1e-4", "Train.clip_grad_norm=null", "Train.amp=true",
                             "Train.warmup_start_factor=1"])
    assert cfg.Train.learning_rate == 1e-4 and cfg.Train.clip_grad_norm is None and cfg.Train.amp is True
    assert cfg.Train.warmup_start_factor == 1.0 and isinstance(cfg.Train.warmup_start_factor, float)


def test_yaml_file_reads_exponent_floats(tmp_path):
    path = _write(tmp_path / "e.yaml", "Train:\n  learning_rate: 5e-5\n")
    assert load_config(str(path), []).Train.learning_rate == 5e-5


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match=r"-o #2 'Train' is not KEY=VALUE"):
        parse_overrides(["Global.mode=train", "Train"])
    with pytest.raises(ConfigError, match="empty key path"):
        parse_overrides(["Train..batch_size=2"])
    assert [o.index for o in parse_overrides(["a=1", "b=2"])] == [1, 2]


def test_model_override_switches_architecture_schema():
    cfg = load_config(str(REPO / "configs/MaskRCNN-ResNet50-FPN.yaml"), ["Global.model=SOLOv2"])
    assert cfg.Global.model == "SOLOv2" and "num_grids" in cfg.Architecture
    assert "anchor_sizes" not in cfg.Architecture


# --------------------------------------------------------------------------------------------- device
@pytest.mark.parametrize("text, parsed", [
    ("cpu", ("cpu", [])), ("gpu", ("gpu", [])), ("gpu:0", ("gpu", [0])),
    ("GPU:0,1,2,3", ("gpu", [0, 1, 2, 3])),
    ("npu:1", ("npu", [1])), ("xpu", ("xpu", [])), ("mlu:0,2", ("mlu", [0, 2])),
])
def test_parse_device(text, parsed):
    assert parse_device(text) == parsed


@pytest.mark.parametrize("text", ["tpu", "gpu:", "gpu:a", "gpu:0,,1", "cpu:0", "gpu:0,0", "gpu:-1"])
def test_parse_device_rejects(text):
    with pytest.raises(ConfigError, match="Invalid Global.device"):
        parse_device(text)


def test_multi_device_training_relaunches(monkeypatch):
    monkeypatch.delenv("PADDLE_TRAINER_ID", raising=False)
    monkeypatch.delenv("PADDLE_TRAINERS_NUM", raising=False)
    cfg = load_config(None, ["Global.mode=train", "Global.device=gpu:0,1", "Global.output=out/x"])
    assert needs_launch(cfg)
    monkeypatch.setattr("engine.runtime.paddle_build.check_device", lambda *a, **k: None)  # a CPU build here
    cmd = launch_command(cfg, ["-o", "Global.device=gpu:0,1"])
    assert cmd[3:7] == ["-m", "paddle.distributed.launch", "--devices", "0,1"]
    assert cmd[cmd.index("--log_dir") + 1] == str(Path("out/x") / "distributed_train_logs")
    assert cmd[-3:] == [str(REPO / "main.py"), "-o", "Global.device=gpu:0,1"]
    assert not needs_launch(load_config(None, ["Global.mode=train", "Global.device=gpu:0"]))
    assert not needs_launch(load_config(None, ["Global.mode=evaluate", "Global.device=gpu:0,1"]))
    monkeypatch.setenv("PADDLE_TRAINER_ID", "1")
    assert not needs_launch(cfg)


def test_setup_device_on_cpu():
    import paddle

    from engine.runtime.device import resolve_device, setup_device

    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    expected = "gpu:0" if has_gpu else "cpu"
    assert resolve_device(None) == expected
    before = paddle.get_flags(["FLAGS_use_mkldnn"])
    try:
        assert setup_device(load_config(None, ["Global.device=cpu", "Global.cpu_threads=1",
                                               "Global.onednn=true"])) == "cpu"
        assert paddle.get_flags(["FLAGS_use_mkldnn"])["FLAGS_use_mkldnn"] is True
        setup_device(load_config(None, ["Global.device=cpu", "Global.onednn=false"]))
        assert paddle.get_flags(["FLAGS_use_mkldnn"])["FLAGS_use_mkldnn"] is False
    finally:
        paddle.set_flags(before)
        paddle.base.core.set_num_threads(1)


def test_duplicate_yaml_key_is_an_error(tmp_path):
    path = _write(tmp_path / "dup.yaml", "Train:\n  batch_size: 3\nTrain:\n  epochs_iters: 2\n")
    msg = _error(path, [])
    assert "dup.yaml" in msg and "duplicate key 'Train'" in msg and "line 3" in msg


def test_broken_yaml_names_file_and_line(tmp_path):
    path = _write(tmp_path / "broken.yaml", "Train:\n  batch_size: [1, 2\n")
    msg = _error(path, [])
    assert msg.startswith("Config file ") and "broken.yaml is not valid YAML, line " in msg
    assert "\n" not in msg


def test_empty_section_header_is_allowed(tmp_path):
    path = _write(tmp_path / "empty.yaml", "Train:\n  # epochs_iters: 3\nEvaluate:\n")
    cfg = load_config(str(path), [])
    assert cfg.Train.epochs_iters == 12 and cfg.Evaluate.batch_size == 1


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_saved_config_loads_back(path, tmp_path):
    """The trainer saves OmegaConf.to_yaml(cfg) as config.yaml; evaluate/predict/api load it again."""
    from omegaconf import OmegaConf

    cfg = load_config(str(path), ["Train.learning_rate=1e-5"])
    saved = _write(tmp_path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    again = load_config(str(saved), [])
    assert OmegaConf.to_container(again) == OmegaConf.to_container(cfg)


def test_export_save_dir_is_a_schema_key():
    assert load_config(None, []).Export.save_dir is None
    assert load_config(None, ["Export.save_dir=out/my_export"]).Export.save_dir == "out/my_export"
    assert "Did you mean Export.save_dir?" in _error(None, ["Export.save_dri=x"])
