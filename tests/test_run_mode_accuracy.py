"""A tiny demo Mask R-CNN trained for two steps through main.py (exported by training), then: the accuracy
guard tools/check_run_mode_accuracy.py scores it with every run mode this machine runs, and
`Global.mode=predict` with Predict.use_hpip runs it on the run mode use_hpip picks here and records it.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.deployment import high_performance as hp
from engine.runtime import cpu_features
from tiny_rcnn_run import REPO, TINY, demo_subset, main_py, whole_image_val_targets

sys.path.insert(0, str(REPO / "tools"))
import check_run_mode_accuracy as tool  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hpip")
    data = demo_subset(tmp / "data", train=4, val=3)
    whole_image_val_targets(data)  # two steps already score above 0 on these
    out = tmp / "out"
    run = main_py(["Global.mode=train", f"Global.dataset_dir={data}", f"Global.output={out}",
                   "Train.epochs_iters=1", "Train.num_workers=0", *TINY])
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return tmp, data, out, out / "best_model" / "inference"


def test_accuracy_tool_reports_ap_per_run_mode(trained) -> None:
    tmp, data, out, model_dir = trained
    report = tmp / "accuracy.json"
    cmd = [sys.executable, str(REPO / "tools" / "check_run_mode_accuracy.py"), "--model-dir", str(model_dir),
           "--dataset-dir", str(data), "--threads", "1", "--out", str(report)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(report.read_text())
    rows = {r["run_mode"]: r for r in doc["run_modes"]}
    assert list(rows) == tool.available_run_modes() and doc["family"] == "rcnn" and doc["images"] == 3
    paddle_row = rows["paddle"]
    # the exported graph on Paddle's kernels scores what the dynamic graph scored in training's evaluation
    evaluated = json.loads((out / "train_result.json").read_text())["models"]["best"]["score"]
    assert paddle_row["AP"] == pytest.approx(evaluated, abs=1e-6) and paddle_row["bbox_AP"] > 0
    for row in rows.values():
        assert row["mask_AP_change"] == pytest.approx(round(100 * (row["AP"] - paddle_row["AP"]), 2))
        box_change = round(100 * (row["bbox_AP"] - paddle_row["bbox_AP"]), 2)
        assert row["bbox_AP_change"] == pytest.approx(box_change)
        assert row["within_limit"] == (min(row["mask_AP_change"], row["bbox_AP_change"]) >= -hp.MAX_AP_DROP)
        assert f"{row['run_mode']:<12} {row['backend']:<8}" in done.stdout
    assert (tool.main(["--model-dir", str(model_dir), "--dataset-dir", str(data), "--out", str(report)])
            == 1)  # never overwrites a report without --force


def test_accuracy_tool_lists_bf16_as_not_measured_without_bf16(trained, monkeypatch, capsys) -> None:
    tmp, data, _, model_dir = trained
    monkeypatch.setattr(cpu_features, "cpu_has_fast_bf16", lambda *a: False)
    assert "mkldnn_bf16" not in tool.available_run_modes()
    code = tool.main(["--model-dir", str(model_dir), "--dataset-dir", str(data), "--threads", "1",
                      "--run-modes", "mkldnn_bf16", "--out", str(tmp / "bf16.json")])
    assert code == 0
    rows = json.loads((tmp / "bf16.json").read_text())["run_modes"]
    assert [r["run_mode"] for r in rows] == ["paddle", "mkldnn_bf16"]  # paddle is always the reference
    assert "AP" in rows[0] and "AP" not in rows[1] and "runs mkldnn in its place" in rows[1]["skipped"]
    assert "mkldnn_bf16  not measured: this machine runs mkldnn" in capsys.readouterr().out


def test_predict_with_use_hpip_records_what_ran(trained) -> None:
    tmp, data, _, model_dir = trained
    pred = tmp / "pred"
    run = main_py(["Global.mode=predict", f"Global.output={pred}", f"Predict.model_dir={model_dir}",
                   f"Predict.input={data / 'images'}", "Predict.use_hpip=true", "Predict.threshold=0.0"])
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    expected = hp.choose_run_mode("auto", "cpu", True, "rcnn").as_json()  # mkldnn here: no bf16 on this CPU
    summary = json.loads((pred / "predict_result.json").read_text())
    # which exported graph ran (engine.deployment.graphs; test_export_compiled_graph.py covers the choice)
    assert summary["inference"].get("graph") in ("compiled", "portable")
    expected["graph"] = summary["inference"]["graph"]
    assert summary["inference"] == expected and expected["use_hpip"] is True
    saved = [json.loads(Path(r["json"]).read_text()) for r in summary["results"]]
    assert len(saved) == 7 and all(s["inference"] == expected for s in saved)
    assert sum("use_hpip)" in line for line in (run.stdout + run.stderr).splitlines()) == 1

    dygraph = main_py(["Global.mode=predict", f"Global.output={tmp / 'dyn'}",
                       f"Predict.input={data / 'images'}", "Predict.use_hpip=true"])
    assert dygraph.returncode == 2 and "use_hpip runs exported models only" in dygraph.stdout + dygraph.stderr
