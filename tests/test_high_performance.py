"""The run-mode decision (engine.deployment.high_performance): use_hpip's table over CPU features, Paddle
build and measured AP changes; explicit run modes winning; mkldnn_bf16 on CPUs without bf16; the Paddle
Inference config calls of each run mode (TensorRT recorded with a stand-in, as no GPU is here); and the
choice reaching result JSON on a stand-in exported model.
"""
import logging
from pathlib import Path
from typing import Any, List, Tuple

import paddle
import pytest

import engine.deployment.inference as inference
from engine.deployment import high_performance as hp
from engine.deployment.inference import DeployPredictor, build_config
from engine.errors import ConfigError
from engine.runtime import cpu_features
from test_export import exported, images  # noqa: F401  (the stand-in exported model fixture)

OK_BF16 = {"fam": {"mkldnn_bf16": hp.APChange(mask=-0.3, box=-0.5, source="test")}}
BAD_BF16 = {"fam": {"mkldnn_bf16": hp.APChange(mask=-1.4, box=None, source="test")}}
BAD_FP16 = {"fam": {"trt_fp16": hp.APChange(mask=-0.2, box=-2.0, source="test")}}


def machine(monkeypatch, bf16: bool = False, onednn: bool = True, trt: bool = False, table=None) -> None:
    monkeypatch.setattr(cpu_features, "cpu_has_fast_bf16", lambda *a: bf16)
    monkeypatch.setattr(hp, "onednn_available", lambda: onednn)
    monkeypatch.setattr(hp, "tensorrt_available", lambda: trt)
    monkeypatch.setattr(hp, "MEASURED_AP_CHANGE", table if table is not None else {})


@pytest.mark.parametrize("setup, device, requested, use_hpip, expected", [
    (dict(bf16=True, table=OK_BF16), "cpu", "auto", True, "mkldnn_bf16"),  # bf16 CPU, bf16 validated
    (dict(bf16=True), "cpu", "auto", True, "mkldnn"),  # bf16 CPU, bf16 never measured for the family
    (dict(bf16=True, table=BAD_BF16), "cpu", "auto", True, "mkldnn"),  # measured drop 1.4 > 1.0
    (dict(bf16=False, table=OK_BF16), "cpu", "auto", True, "mkldnn"),  # plain CPU (this machine)
    (dict(onednn=False, bf16=True, table=OK_BF16), "cpu", "auto", True, "paddle"),  # no oneDNN build
    (dict(trt=True), "gpu", "auto", True, "trt_fp16"),  # GPU build with TensorRT
    (dict(trt=True, table=BAD_FP16), "gpu", "auto", True, "trt_fp32"),  # fp16 measured too lossy
    (dict(trt=False), "gpu", "auto", True, "paddle"),  # GPU build without TensorRT
    (dict(bf16=True, table=OK_BF16), "cpu", "paddle", True, "paddle"),  # explicit wins over use_hpip
    (dict(bf16=True, table=OK_BF16), "cpu", "mkldnn", True, "mkldnn"),
    (dict(trt=True), "gpu", "trt_fp32", True, "trt_fp32"),
    (dict(bf16=True), "cpu", "mkldnn_bf16", False, "mkldnn_bf16"),  # explicit bf16 needs no measurement
    (dict(bf16=True, table=OK_BF16), "cpu", "auto", False, "mkldnn"),  # auto without use_hpip
    (dict(bf16=True, trt=True), "gpu", None, False, "paddle"),
])
def test_decision_table(monkeypatch, setup, device, requested, use_hpip, expected) -> None:
    machine(monkeypatch, **setup)
    choice = hp.choose_run_mode(requested, device, use_hpip, "fam")
    assert choice.run_mode == expected, choice.reason
    assert choice.use_hpip is use_hpip and choice.device == device
    assert (choice.backend, choice.precision) == hp.BACKEND_PRECISION[expected]


def test_the_reason_says_why_bf16_was_not_picked(monkeypatch) -> None:
    machine(monkeypatch, bf16=True, table=BAD_BF16)
    assert "1.4 points" in hp.choose_run_mode("auto", "cpu", True, "fam").reason
    machine(monkeypatch, bf16=True)
    assert "not validated for the fam family" in hp.choose_run_mode("auto", "cpu", True, "fam").reason


def test_explicit_bf16_on_a_cpu_without_bf16_warns_and_runs_fp32(monkeypatch, caplog) -> None:
    machine(monkeypatch, bf16=False)
    with caplog.at_level(logging.WARNING, logger="instseg"):
        choice = hp.choose_run_mode("mkldnn_bf16", "cpu", False, "fam")
    assert (choice.run_mode, choice.precision) == ("mkldnn", "fp32")
    assert "no native bf16" in caplog.text and "fp32" in caplog.text


@pytest.mark.parametrize("setup, device, requested, message", [
    (dict(trt=True), "cpu", "trt_fp16", "needs a GPU"),
    (dict(trt=False), "gpu", "trt_fp16", "built with TensorRT"),
    (dict(bf16=True), "gpu", "mkldnn_bf16", "runs on CPU"),
    (dict(), "cpu", "bf16", "must be one of"),
])
def test_run_modes_a_machine_cannot_run_are_config_errors(monkeypatch, setup, device, requested,
                                                          message) -> None:
    machine(monkeypatch, **setup)
    with pytest.raises(ConfigError, match=message):
        hp.choose_run_mode(requested, device, True, "fam")


def test_cpu_flags_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    for flags, fast in (("fpu sse avx2 avx512f", False), ("avx512f avx512_bf16", True),
                        ("avx512f amx_bf16 amx_tile", True), ("fpu avx2", False)):
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
        assert cpu_features.cpu_flags(str(info)) == frozenset(flags.split())
        assert cpu_features.cpu_has_fast_bf16(str(info)) is fast


def test_cpu_detection_agrees_with_paddle_on_this_machine() -> None:
    assert cpu_features.cpu_has_fast_bf16() == paddle.base.core.supports_bfloat16_fast_performance()


class RecordingConfig:
    """Stands in for paddle.inference.Config: records every method call."""

    calls: List[Tuple[str, tuple, dict]] = []

    def __init__(self, *files: str) -> None:
        RecordingConfig.calls = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: RecordingConfig.calls.append((name, args, kwargs))


class FakeInfer:
    Config = RecordingConfig

    class PrecisionType:
        Half, Float32 = "half", "float32"


def config_calls(monkeypatch, device: str, run_mode: str) -> dict:
    monkeypatch.setattr(inference, "paddle_infer", FakeInfer)
    build_config(Path("m.json"), Path("m.pdiparams"), device, 2, run_mode)
    return {name: (args, kwargs) for name, args, kwargs in RecordingConfig.calls}


def test_gpu_build_uses_tensorrt_fp16_through_paddle_inference(monkeypatch) -> None:
    machine(monkeypatch, trt=True)
    calls = config_calls(monkeypatch, "gpu:1", hp.choose_run_mode("auto", "gpu", True, "fam").run_mode)
    assert calls["enable_use_gpu"][0] == (256, 1)
    assert calls["enable_tensorrt_engine"][1]["precision_mode"] == "half"
    assert "enable_mkldnn" not in calls and "disable_gpu" not in calls
    calls = config_calls(monkeypatch, "gpu", "trt_fp32")
    assert calls["enable_tensorrt_engine"][1]["precision_mode"] == "float32"
    assert "enable_tensorrt_engine" not in config_calls(monkeypatch, "gpu", "paddle")


def test_cpu_run_modes_configure_onednn(monkeypatch) -> None:
    machine(monkeypatch, bf16=True)
    calls = config_calls(monkeypatch, "cpu", "mkldnn_bf16")
    assert {"disable_gpu", "enable_mkldnn", "enable_mkldnn_bfloat16"} <= set(calls)
    assert calls["set_cpu_math_library_num_threads"][0] == (2,)
    calls = config_calls(monkeypatch, "cpu", "mkldnn")
    assert "enable_mkldnn" in calls and "enable_mkldnn_bfloat16" not in calls
    calls = config_calls(monkeypatch, "cpu", "paddle")
    assert "disable_mkldnn" in calls and "enable_mkldnn" not in calls


def test_use_hpip_choice_is_logged_once_and_in_every_result(exported, monkeypatch,  # noqa: F811
                                                            caplog) -> None:
    _, _, out, _ = exported
    machine(monkeypatch, bf16=False, onednn=paddle.base.core.is_compiled_with_mkldnn())
    with caplog.at_level(logging.INFO, logger="instseg"):
        deploy = DeployPredictor(out, device="cpu", cpu_threads=1, use_hpip=True)
        results = list(deploy.predict(images(), batch_size=2, threshold=0.0))
    expected = {**hp.choose_run_mode("auto", "cpu", True, "rcnn").as_json(), "graph": deploy.graph.name}
    assert expected["use_hpip"] is True and deploy.run_mode == expected["run_mode"]
    assert [r.json["res"]["inference"] for r in results] == [expected] * 3
    assert sum("use_hpip" in r.getMessage() for r in caplog.records) == 1


def test_bf16_config_path_runs_a_model(exported, monkeypatch) -> None:  # noqa: F811
    """With bf16 reported, mkldnn_bf16 builds and runs a predictor. On a CPU without bf16 (this machine)
    Paddle keeps fp32 inside, so outputs equal mkldnn's; the numbers of real bf16 are the accuracy
    tool's job (tools/check_run_mode_accuracy.py) on a CPU that has it."""
    _, _, out, _ = exported
    if not paddle.base.core.is_compiled_with_mkldnn():
        pytest.skip("this Paddle build has no oneDNN")
    machine(monkeypatch, bf16=True)
    deploy = DeployPredictor(out, device="cpu", cpu_threads=1, run_mode="mkldnn_bf16")
    assert deploy.run_mode == "mkldnn_bf16" and deploy.run_info()["precision"] == "bf16"
    out_bf16 = deploy.raw(images())
    assert out_bf16["bbox_num"].sum() > 0 and out_bf16["mask"].shape[0] == out_bf16["bbox"].shape[0]


def test_use_hpip_needs_an_exported_model(tmp_path: Path) -> None:
    from engine.api import create_model
    from engine.config.load import load_config
    from engine.prediction.predictor import run

    with pytest.raises(ConfigError, match="use_hpip runs exported models only.*model_dir=<export dir>"):
        create_model("MaskRCNN-ResNet50-FPN", use_hpip=True)
    cfg = load_config(None, ["Predict.use_hpip=true", f"Predict.input={tmp_path}",
                             "Predict.kernel_option.run_mode=mkldnn_bf16"])
    with pytest.raises(ConfigError, match=r"export the model first .*-o Predict.model_dir=<export dir>"):
        run(cfg)


def test_create_model_passes_use_hpip_to_the_exported_predictor(exported, monkeypatch) -> None:  # noqa: F811
    from engine.api import create_model

    _, _, out, _ = exported
    machine(monkeypatch, bf16=False, onednn=paddle.base.core.is_compiled_with_mkldnn())
    model = create_model(str(out), device="cpu", use_hpip=True, cpu_threads=1)
    assert model.choice.use_hpip is True and model.run_mode == hp.choose_run_mode(None, "cpu", True).run_mode
    plain = create_model(model_dir=str(out), model_name_or_model_dir="x", cpu_threads=1)
    assert plain.choice.use_hpip is False


def test_benchmark_tools_name_use_hpips_choice_hpip(exported, monkeypatch) -> None:  # noqa: F811
    _, _, out, _ = exported
    machine(monkeypatch, bf16=False, onednn=paddle.base.core.is_compiled_with_mkldnn())
    assert hp.predictor_options("mkldnn_bf16") == {"run_mode": "mkldnn_bf16"}
    deploy = DeployPredictor(out, device="cpu", cpu_threads=1, **hp.predictor_options(hp.HPIP))
    assert deploy.choice == hp.choose_run_mode("auto", "cpu", True, "rcnn")
