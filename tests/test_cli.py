"""main.py and engine.modes: exit codes, messages on stderr, and the {mode}_result.json files."""
import json
import subprocess
import sys
from pathlib import Path

from engine import modes
from engine.config.load import load_config
from engine.errors import DatasetError

REPO = Path(__file__).resolve().parents[1]


def _main(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_typo_in_override_exits_2_with_hint(tmp_path):
    proc = _main("-o", "Train.epoch_iters=3", "-o", f"Global.output={tmp_path}")
    assert proc.returncode == 2
    assert "Unknown key Train.epoch_iters (from -o #1). Did you mean Train.epochs_iters?" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # the config never loaded: no output


def test_typo_in_yaml_exits_2(tmp_path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text(f"_base_: {REPO / 'configs/demo.yaml'}\nTrain:\n  learning_rat: 0.1\n", encoding="utf-8")
    proc = _main("-c", str(cfg))
    assert proc.returncode == 2
    assert "Unknown key Train.learning_rat" in proc.stderr and "typo.yaml" in proc.stderr
    assert "Did you mean Train.learning_rate?" in proc.stderr


def test_check_dataset_runs_without_paddle(tmp_path):
    """check_dataset through main.main on the demo data: exit 0, result file, and Paddle never imported."""
    out = tmp_path / "out"
    code = ("import sys, main; rc = main.main(['-o', 'Global.mode=check_dataset', 'Global.output=%s']); "
            "assert 'paddle' not in sys.modules, 'paddle imported'; sys.exit(rc)" % out)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "check_dataset_result.json").read_text())
    assert result["done_flag"] is True and result["check_pass"] is True


def test_mode_not_built_yet(tmp_path, monkeypatch):
    monkeypatch.setitem(modes.MODE_MODULES, "export", "engine.no_such_exporter")
    cfg = load_config(None, ["Global.mode=export", f"Global.output={tmp_path}"])
    assert modes.run_mode(cfg, []) == 1
    result = json.loads((tmp_path / "export_result.json").read_text())
    assert result == {"done_flag": False, "err_type": "ModeNotAvailableError",
                      "err_msg": "mode export is not built yet (engine.no_such_exporter does not exist)."}


def _fake_mode(monkeypatch, tmp_path, func) -> int:
    module = type(sys)("fake_mode_module")
    module.run = func
    monkeypatch.setitem(sys.modules, "fake_mode_module", module)
    monkeypatch.setitem(modes.MODE_MODULES, "check_dataset", "fake_mode_module")
    cfg = load_config(None, ["Global.mode=check_dataset", f"Global.output={tmp_path / 'o'}"])
    return modes.run_mode(cfg, [])


def test_success_result_has_done_flag(tmp_path, monkeypatch):
    assert _fake_mode(monkeypatch, tmp_path, lambda cfg: {"answer": 42, "model": cfg.Global.model}) == 0
    result = json.loads((tmp_path / "o/check_dataset_result.json").read_text())
    assert result == {"done_flag": True, "answer": 42, "model": "MaskRCNN-ResNet50-FPN"}
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["check_dataset_result.json"]


def test_instseg_error_with_report(tmp_path, monkeypatch, capsys):
    def fail(cfg):
        exc = DatasetError("2 errors in instance_val.json")
        exc.report = {"check_pass": False, "num_errors": 2}
        raise exc

    assert _fake_mode(monkeypatch, tmp_path, fail) == 1
    result = json.loads((tmp_path / "o/check_dataset_result.json").read_text())
    assert result == {"done_flag": False, "err_type": "DatasetError",
                      "err_msg": "2 errors in instance_val.json",
                      "check_pass": False, "num_errors": 2}
    err = capsys.readouterr().err
    assert "DatasetError: 2 errors in instance_val.json" in err and "Traceback" not in err


def test_unexpected_exception_prints_traceback(tmp_path, monkeypatch, capsys):
    def crash(cfg):
        raise ZeroDivisionError("boom")

    assert _fake_mode(monkeypatch, tmp_path, crash) == 1
    result = json.loads((tmp_path / "o/check_dataset_result.json").read_text())
    assert result["done_flag"] is False
    assert (result["err_type"], result["err_msg"]) == ("ZeroDivisionError", "boom")
    assert "Traceback" in capsys.readouterr().err


def test_config_error_inside_a_mode_exits_2(tmp_path, monkeypatch):
    from engine.errors import ConfigError

    def bad(cfg):
        raise ConfigError("CheckDataset.split.train_percent must be in (0, 100)")

    assert _fake_mode(monkeypatch, tmp_path, bad) == 2
    assert json.loads((tmp_path / "o/check_dataset_result.json").read_text())["err_type"] == "ConfigError"


def test_several_pairs_after_one_o():
    import main

    argv = ["-o", "Train.batch_size=3", "Train.epochs_iters=2", "-o", "Global.seed=7"]
    args = main.parse_args(argv)
    assert args.override == [["Train.batch_size=3", "Train.epochs_iters=2"], ["Global.seed=7"]]
    assert args.config is None


def test_setup_logging_is_idempotent_and_writes_file(tmp_path, capsys):
    import logging

    from engine.runtime.log import setup_logging

    setup_logging()
    logger = setup_logging(log_file=tmp_path / "x.log")
    own = [h for h in logger.handlers if getattr(h, "_instseg_setup", False)]
    assert len(own) == 2
    logger.info("hello %d", 5)
    assert "hello 5" in (tmp_path / "x.log").read_text()
    assert capsys.readouterr().err.count("hello 5") == 1
    setup_logging()
    assert logger.level == logging.INFO


def test_multi_gpu_training_goes_through_paddle_launch(tmp_path, monkeypatch):
    calls = []
    monkeypatch.delenv("PADDLE_TRAINER_ID", raising=False)
    monkeypatch.delenv("PADDLE_TRAINERS_NUM", raising=False)
    monkeypatch.setattr("engine.runtime.device.subprocess.call", lambda cmd: calls.append(cmd) or 7)
    monkeypatch.setattr("engine.runtime.paddle_build.check_device", lambda *a, **k: None)  # a CPU build here
    argv = ["-o", "Global.mode=train", "Global.device=gpu:0,1", f"Global.output={tmp_path}"]
    cfg = load_config(None, argv[1:])
    assert modes.run_mode(cfg, argv) == 7  # the launcher's exit code
    (cmd,) = calls
    assert cmd[0] == sys.executable and cmd[3:7] == ["-m", "paddle.distributed.launch", "--devices", "0,1"]
    assert cmd[-4:] == argv and cmd[-5] == str(REPO / "main.py")
    assert not (tmp_path / "train_result.json").exists()  # rank 0 of the launched run writes it
