"""Python API: ``create_model(...)`` returns a predictor whose ``predict()`` yields InstanceSegResult.

- A directory holding ``inference.yml`` (or ``model_dir=``) → ``engine.deployment.inference.DeployPredictor``.
- A model name → ``engine.prediction.predictor.DynamicPredictor`` built from ``configs/<name>.yaml``, with the
  weights of ``weight_path``. The config is the training run's ``config.yaml`` found next to the
  weights (or one folder up, as ``best_model/`` sits in the output), else the model's default config.
  Without ``weight_path`` the model is randomly initialised: allowed (smoke tests, timing) but warned
  about loudly (a ``UserWarning`` and a log line), since its predictions mean nothing.
"""
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

from engine.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


def _config_for(name: str, weight_path: Optional[str], overrides: List[str]) -> Any:
    from engine.config.load import load_config
    from engine.config.model_names import MODEL_FAMILIES
    from engine.config.suggest import model_name_hint

    if name not in MODEL_FAMILIES:
        raise ConfigError(f"{name!r} is neither a model name nor an exported model directory."
                          f"{model_name_hint(name)}")
    if weight_path:
        w = Path(weight_path)
        for cand in (w.parent / "config.yaml", w.parent.parent / "config.yaml"):
            if cand.is_file():
                return load_config(str(cand), [f"Global.model={name}", *overrides])
    default = REPO_ROOT / "configs" / f"{name}.yaml"
    if not default.is_file():
        raise ConfigError(f"no default config for {name}: {default} is missing")
    return load_config(str(default), overrides)


def create_model(
    model_name_or_model_dir: Union[str, Path],
    model_dir: Optional[Union[str, Path]] = None,
    device: Optional[str] = None,
    threshold: Optional[float] = None,
    weight_path: Optional[Union[str, Path]] = None,
    config_overrides: Sequence[str] = (),
    use_hpip: bool = False,
    **deploy_kwargs: Any,
) -> Any:
    """A predictor with ``predict(input, batch_size=1, threshold=None)`` (a generator of results).

    Args:
        model_name_or_model_dir: a model name (``MaskRCNN-ResNet50-FPN``) or an export directory.
        model_dir: an export directory (PaddleX's keyword); wins over the first argument.
        device: cpu | gpu | gpu:<id>; None = GPU when available.
        threshold: default score threshold (predict()'s argument overrides it).
        weight_path: dynamic-graph ``.pdparams`` for a model name.
        config_overrides: ``Key.sub=value`` overrides for a model name's config.
        use_hpip: high-performance mode (PaddleX's name): the fastest run mode validated for this machine
            and the model's family (engine.deployment.high_performance); exported models only, an
            explicit ``run_mode`` wins. The choice is logged and each result's JSON records it.
        deploy_kwargs: passed to DeployPredictor (``cpu_threads``, ``run_mode``).
    """
    target = Path(model_dir) if model_dir is not None else Path(str(model_name_or_model_dir))
    if model_dir is not None or (target.is_dir() and (target / "inference.yml").is_file()):
        from engine.deployment.inference import DeployPredictor

        if use_hpip:
            deploy_kwargs["use_hpip"] = True
        return DeployPredictor(str(target), device=device, threshold=threshold, **deploy_kwargs)
    if target.is_dir():
        raise ConfigError(f"{target} is a directory without inference.yml; export a model into it first "
                          f"(-o Global.mode=export) or pass a model name")
    if use_hpip:
        from engine.deployment.high_performance import HPIP_NEEDS_EXPORT

        raise ConfigError(HPIP_NEEDS_EXPORT.format(where="model_dir=<export dir>"))
    if deploy_kwargs:
        raise ConfigError(f"options {sorted(deploy_kwargs)} apply to exported models only")
    overrides = list(config_overrides)
    if device is not None:
        overrides.append(f"Global.device={device}")
    cfg = _config_for(str(model_name_or_model_dir), str(weight_path) if weight_path else None, overrides)
    from engine.runtime.device import setup_device
    from engine.prediction.predictor import build_dynamic

    setup_device(cfg)
    return build_dynamic(cfg, str(weight_path) if weight_path else None, threshold)
