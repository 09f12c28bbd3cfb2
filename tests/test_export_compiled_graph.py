"""Exported graphs with the compiled CPU operators (engine.deployment.exporter, engine.deployment.graphs):
export writes the compiled graph next to the portable one (one shared parameter file), DeployPredictor runs
the compiled graph when its operators load and the portable one otherwise (switch off, source changed,
no compiler: also in a fresh process with the compiler hidden), with the same detections either way; a
graph whose operator nobody can load is a clear error.

Tolerance: the compiled operators compute what Paddle's roi_align / grid_sample compute up to float32
rounding of the bilinear sums (tests/test_roi_align_fast.py, tests/test_ms_deform_attn.py); the difference
then travels through the layers after them (tests/export_tolerance.py).
"""
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
import yaml

from compiled_op_helpers import require_built
from engine.deployment import exporter
from engine.deployment.exporter import export_model
from engine.deployment.inference import DeployPredictor
from engine.errors import WeightsError
from engine.models.ops import ms_deform_attn, roi_align_fast
from engine.models.zoo import build_model
from export_tolerance import assert_same_detections, float32_rtol
from test_export import copy_model, images, make_cfg, tiny_rcnn_arch, tiny_rcnn_with_detections
from test_mask_rt_detr_model import TINY

ROOT = Path(__file__).resolve().parents[1]
# the tiny R-CNN after RoIAlign: the box head's 2 FCs over fpn_channels * 7 * 7 pooled values, the mask head
RCNN_RTOL = float32_rtol(depth=8, fan_in=tiny_rcnn_arch().fpn_channels * 7 * 7)
# the tiny Mask-RT-DETR after the first deformable attention: 2 decoder layers and the mask head
DETR_RTOL = float32_rtol(depth=20, fan_in=32 * 9)


def export_rcnn(out: Path) -> Path:
    require_built(roi_align_fast.OP)
    model = tiny_rcnn_with_detections("MaskRCNN-ResNet50-FPN")
    model.eval()
    export_model(model, make_cfg(out), str(out / "inference"))
    return out / "inference"


@pytest.fixture(scope="module")
def rcnn_dir(tmp_path_factory) -> Path:
    return export_rcnn(tmp_path_factory.mktemp("compiled"))


def run_both(model_dir: Path, run_mode: str, monkeypatch) -> tuple:
    """(compiled outputs, portable outputs) of one batch; asserts which graph each predictor ran."""
    compiled = DeployPredictor(model_dir, device="cpu", cpu_threads=1, run_mode=run_mode)
    assert compiled.run_info()["graph"] == "compiled"
    with monkeypatch.context() as env:
        env.setenv("INSTSEG_NATIVE_OPS", "0")
        portable = DeployPredictor(model_dir, device="cpu", cpu_threads=1, run_mode=run_mode)
    assert portable.run_info()["graph"] == "portable"
    return compiled.raw(images()), portable.raw(images())


def test_export_writes_both_graphs_sharing_the_parameters(rcnn_dir):
    info = yaml.safe_load((rcnn_dir / "inference.yml").read_text())
    compiled, portable = info["graphs"]
    assert compiled == {"name": "compiled", "model_file": "inference_compiled.json",
                        "params_file": "inference.pdiparams",
                        "compiled_ops": {"instseg_roi_align": roi_align_fast.OP.source_digest()}}
    assert portable == {"name": "portable", "model_file": "inference.json",
                        "params_file": "inference.pdiparams", "compiled_ops": {}}
    assert info["model_file"] == "inference.json" and info["params_file"] == "inference.pdiparams"
    assert not (rcnn_dir / "inference_compiled.pdiparams").exists()
    assert not [p.name for p in rcnn_dir.iterdir() if p.name.startswith(".")]  # no temporary folder left
    assert "instseg_roi_align" in (rcnn_dir / "inference_compiled.json").read_text()
    assert "instseg_roi_align" not in (rcnn_dir / "inference.json").read_text()


def test_model_without_compiled_operators_is_traced_once(tmp_path, monkeypatch):
    """SOLOv2's inference path reaches no compiled operator: the exporter writes the portable graph alone
    and does not spend a second trace finding that out."""
    from test_solov2 import tiny_model
    traces = []
    real = exporter._save_graph
    monkeypatch.setattr(exporter, "_save_graph", lambda *a, **k: traces.append(a[1]) or real(*a, **k))
    cfg = make_cfg(tmp_path)
    cfg.Global.model = "SOLOv2"
    export_model(tiny_model(), cfg, str(tmp_path / "inference"))
    info = yaml.safe_load((tmp_path / "inference" / "inference.yml").read_text())
    assert [g["name"] for g in info["graphs"]] == ["portable"]
    assert traces == [tmp_path / "inference"]
    assert not (tmp_path / "inference" / "inference_compiled.json").exists()


@pytest.mark.parametrize("run_mode", ["paddle", "mkldnn"])
def test_rcnn_compiled_graph_matches_portable(rcnn_dir, run_mode, monkeypatch):
    """oneDNN included: its blocked layouts must reach the custom operator converted (they once did not)."""
    compiled, portable = run_both(rcnn_dir, run_mode, monkeypatch)
    assert portable["bbox_num"].min() > 0 and portable["mask"].sum() > 0
    assert_same_detections(compiled, portable, images(), RCNN_RTOL, run_mode)


@pytest.mark.parametrize("run_mode", ["paddle", "mkldnn"])
def test_mask_rt_detr_compiled_graph_matches_portable(run_mode, tmp_path, monkeypatch):
    require_built(ms_deform_attn.NATIVE)
    paddle.seed(0)
    model = build_model("Mask-RT-DETR-S", TINY, 3)
    model.eval()
    cfg = make_cfg(tmp_path)
    cfg.Global.model = "Mask-RT-DETR-S"
    cfg.EvalReader.target_size, cfg.EvalReader.keep_ratio, cfg.EvalReader.pad_stride = [96, 96], False, 0
    export_model(model, cfg, str(tmp_path / "inference"))
    graphs = yaml.safe_load((tmp_path / "inference" / "inference.yml").read_text())["graphs"]
    assert [g["compiled_ops"] for g in graphs] == [
        {"instseg_ms_deform_attn": ms_deform_attn.NATIVE.source_digest()}, {}]
    compiled, portable = run_both(tmp_path / "inference", run_mode, monkeypatch)
    assert portable["bbox_num"].tolist() == [TINY.num_top_queries] * 3
    assert_same_detections(compiled, portable, images(), DETR_RTOL, run_mode)


@pytest.mark.parametrize("why", ["switch", "digest", "build"])
def test_portable_graph_runs_when_the_compiled_one_cannot(rcnn_dir, why, tmp_path, monkeypatch, caplog):
    model_dir = copy_model(rcnn_dir, tmp_path / "m")
    if why == "switch":
        monkeypatch.setenv("INSTSEG_NATIVE_ROI_ALIGN", "0")
    elif why == "digest":  # exported with another version of the operator's source
        info = yaml.safe_load((model_dir / "inference.yml").read_text())
        info["graphs"][0]["compiled_ops"]["instseg_roi_align"] = "0" * 16
        (model_dir / "inference.yml").write_text(yaml.safe_dump(info, sort_keys=False))
    else:
        failed = {"tried": True, "op": None, "error": "no compiler\nx"}
        monkeypatch.setattr(roi_align_fast.OP, "state", failed)
    with caplog.at_level(logging.INFO, logger="instseg"):
        deploy = DeployPredictor(model_dir, device="cpu", cpu_threads=1, run_mode="paddle")
    assert deploy.run_info()["graph"] == "portable"
    assert deploy.raw(images())["bbox_num"].min() > 0
    said = [r.getMessage() for r in caplog.records if "inference_compiled.json is not used" in r.getMessage()]
    expected = {"switch": "INSTSEG_NATIVE_ROI_ALIGN=0", "digest": "source changed",
                "build": "could not be built or loaded (no compiler)"}[why]
    assert len(said) == 1 and "running the portable graph inference.json" in said[0] and expected in said[0]


def test_graph_needing_an_op_nobody_can_load_is_a_clear_error(rcnn_dir, tmp_path, monkeypatch):
    """A deployment that kept only the compiled graph, on a machine that cannot build its operator."""
    model_dir = copy_model(rcnn_dir, tmp_path / "m")
    info = yaml.safe_load((model_dir / "inference.yml").read_text())
    info["graphs"] = info["graphs"][:1]
    (model_dir / "inference.yml").write_text(yaml.safe_dump(info, sort_keys=False))
    (model_dir / "inference.json").unlink()
    monkeypatch.setattr(roi_align_fast.OP, "state", {"tried": True, "op": None, "error": "g++: not found"})
    with pytest.raises(WeightsError, match=r"instseg_roi_align could not be built or loaded "
                                           r"\(g\+\+: not found\).*install one \(g\+\+\).*re-export"):
        DeployPredictor(model_dir, device="cpu")


def test_missing_compiled_graph_file_is_a_clear_error(rcnn_dir, tmp_path):
    model_dir = copy_model(rcnn_dir, tmp_path / "m")
    (model_dir / "inference_compiled.json").unlink()
    with pytest.raises(WeightsError, match=r"inference_compiled.json is missing \(the compiled graph\)"):
        DeployPredictor(model_dir, device="cpu")


FRESH_PROCESS = """
import json, sys
import numpy as np
from engine.deployment.inference import DeployPredictor
batch = np.load(sys.argv[2])
deploy = DeployPredictor(sys.argv[1], device="cpu", cpu_threads=1)
np.savez(sys.argv[3], **deploy.raw([batch[k] for k in sorted(batch.files)]))
print(json.dumps(deploy.run_info()))
"""


@pytest.mark.parametrize("compiler", [True, False])
def test_fresh_process_with_and_without_a_compiler(rcnn_dir, compiler, tmp_path, monkeypatch):
    """A new process loads the export: with the operator library in INSTSEG_CACHE it runs the compiled graph;
    with no compiler on PATH (CXX / CC pointing nowhere) and an empty cache, the portable graph, saying so
    in one line; the detections are the same."""
    np.savez(tmp_path / "images.npz", **{f"i{n}": image for n, image in enumerate(images())})
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    if not compiler:
        (tmp_path / "bin").mkdir()
        (tmp_path / "cache").mkdir()
        env.update(PATH=str(tmp_path / "bin"), CXX="/nonexistent/c++", CC="/nonexistent/cc",
                   INSTSEG_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(rcnn_dir), str(tmp_path / "images.npz"),
                           str(tmp_path / "out.npz")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ran = json.loads(done.stdout.strip().splitlines()[-1])
    assert ran["graph"] == ("compiled" if compiler else "portable")
    fell_back = [line for line in done.stderr.splitlines() if "inference_compiled.json is not used" in line]
    assert len(fell_back) == (0 if compiler else 1)
    assert compiler or "instseg_roi_align could not be built or loaded" in fell_back[0]
    fresh = dict(np.load(tmp_path / "out.npz"))
    with monkeypatch.context() as patch:
        patch.setenv("INSTSEG_NATIVE_OPS", "0")
        portable = DeployPredictor(rcnn_dir, device="cpu", cpu_threads=1).raw(images())
    assert_same_detections(fresh, portable, images(), RCNN_RTOL, "fresh process")
