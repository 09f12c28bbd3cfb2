"""Load a config: YAML files with `_base_`, then `-o` overrides, validated strictly against the schema.

Every layer (each YAML file, depth-first, bases before the child; then each `-o` pair) is merged key by
key into the structured config, so an unknown key or a wrong type is reported with its source
(`configs/X.yaml` or `-o #3`), its full key path and the closest valid keys. OmegaConf's own messages are
never shown: the checks here run before OmegaConf sees a value.
"""
import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from omegaconf.nodes import BooleanNode, FloatNode, IntegerNode, StringNode

from engine.config.architectures import FAMILY_ARCHITECTURES
from engine.config.model_names import MODEL_FAMILIES
from engine.config.overrides import Override, parse_overrides, yaml_load
from engine.config.schema import InstSegConfig
from engine.config.suggest import did_you_mean, model_name_hint
from engine.config.values import check_values
from engine.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
BASE_KEY = "_base_"

Layer = Tuple[str, Dict[str, Any]]  # (source label, mapping)


@dataclasses.dataclass
class NoArchitecture:
    """The Architecture section of a family whose model code is not built yet: no keys."""


def load_config(path: Optional[str], overrides: Sequence[str] = ()) -> DictConfig:
    """Read `path` (None: configs/demo.yaml) and its `_base_` files, apply `overrides`, validate.

    Returns a read-only DictConfig of `InstSegConfig` whose `Architecture` is the dataclass of the model's
    family. Raises ConfigError (exit code 2) naming the source, key path and closest valid keys.
    """
    config_path = Path(path) if path is not None else DEFAULT_CONFIG
    layers = read_layers(config_path)
    pairs = parse_overrides(list(overrides))
    model, model_source = _model_name(layers, pairs)
    cfg = OmegaConf.structured(schema_for(model))
    origins: Dict[str, str] = {}
    for source, data in layers:
        _merge(cfg, data, [], source, origins)
    for pair in pairs:
        _merge(cfg, _nest(pair.parts, pair.value), [], pair.source, origins)
    check_values(cfg, origins)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def schema_for(model: str) -> Any:
    """The InstSegConfig dataclass whose Architecture section is `model`'s family dataclass."""
    arch_cls = FAMILY_ARCHITECTURES.get(MODEL_FAMILIES[model], NoArchitecture)
    return dataclasses.make_dataclass(
        "InstSegConfig",
        [("Architecture", arch_cls, dataclasses.field(default_factory=arch_cls))],
        bases=(InstSegConfig,),
    )


# --------------------------------------------------------------------------------------------- YAML
def display_path(path: Path) -> str:
    """`path` relative to the repo (or cwd) when it lies inside, for short messages."""
    resolved = path.resolve()
    for root in (REPO_ROOT, Path.cwd()):
        try:
            return str(resolved.relative_to(root))
        except ValueError:
            continue
    return str(path)


def read_layers(path: Path, chain: Tuple[Path, ...] = ()) -> List[Layer]:
    """`path`'s layers in merge order: each `_base_` file's layers (depth-first), then `path` itself."""
    resolved = path.resolve()
    label = display_path(path)
    if resolved in chain:
        cycle = " -> ".join(display_path(p) for p in chain + (resolved,))
        raise ConfigError(f"Config files include each other in a cycle: {cycle}.")
    if not resolved.is_file():
        where = f" (a _base_ of {display_path(chain[-1])})" if chain else ""
        raise ConfigError(f"Config file not found: {label}{where}.")
    try:
        data = yaml_load(resolved.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"Config file {label} is not valid YAML{where}: {exc.problem or exc}.") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {label} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {label} must hold a mapping of sections, not {type(data).__name__}.")
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not (isinstance(bases, list) and all(isinstance(b, str) for b in bases)):
        raise ConfigError(f"{BASE_KEY} in {label} must be a path or a list of paths relative to the file.")
    layers: List[Layer] = []
    for base in bases:
        layers.extend(read_layers(resolved.parent / base, chain + (resolved,)))
    layers.append((label, data))
    return layers


def _model_name(layers: List[Layer], pairs: List[Override]) -> Tuple[str, str]:
    """The final Global.model (needed first: it picks the Architecture schema) and where it was set."""
    model: Any = InstSegConfig().Global.model
    source = "the schema default"
    for label, data in layers:
        section = data.get("Global")
        if isinstance(section, dict) and "model" in section:
            model, source = section["model"], label
    for pair in pairs:
        if pair.parts == ["Global", "model"]:
            model, source = pair.value, pair.source
        elif pair.parts == ["Global"] and isinstance(pair.value, dict) and "model" in pair.value:
            model, source = pair.value["model"], pair.source
    if not isinstance(model, str) or model not in MODEL_FAMILIES:
        hint = model_name_hint(str(model))
        raise ConfigError(f"Unknown model Global.model={model!r} (from {source}).{hint}")
    return model, source


# --------------------------------------------------------------------------------------------- merge
def _nest(parts: List[str], value: Any) -> Dict[str, Any]:
    """{'a': {'b': value}} for ['a', 'b']."""
    out: Any = value
    for part in reversed(parts):
        out = {part: out}
    return out


def _merge(node: DictConfig, data: Dict[str, Any], path: List[str], source: str,
           origins: Dict[str, str]) -> None:
    """Merge mapping `data` into section `node` (at `path`), checking every key and value first."""
    for key, value in data.items():
        key_path = ".".join(path + [str(key)])
        if not isinstance(key, str) or key not in node:
            raise ConfigError(_unknown_key(node, path, key, source))
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            if value is None:  # a section header whose keys are all commented out
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{key_path} (from {source}) is a section: give it a mapping of keys, "
                                  f"not {value!r}. Its keys: {', '.join(map(str, child.keys())) or 'none'}.")
            _merge(child, value, path + [key], source, origins)
            continue
        _check_type(child, value, key_path, source)
        value = _as_declared(child, value)
        try:
            node[key] = value
        except OmegaConfBaseException:
            raise ConfigError(f"Invalid value for {key_path} (from {source}): {value!r}.") from None
        origins[key_path] = source


def _unknown_key(node: DictConfig, path: List[str], key: Any, source: str) -> str:
    prefix = ".".join(path) + "." if path else ""
    full = f"{prefix}{key}"
    siblings = [str(k) for k in node.keys()]
    hint = did_you_mean(str(key), siblings, prefix)
    if not hint:
        where = ".".join(path) or "the top level"
        hint = f" Valid keys in {where}: {', '.join(siblings) or 'none'}."
        if path == ["Architecture"] and not siblings:
            hint = " This model family has no Architecture options yet."
    return f"Unknown key {full} (from {source}).{hint}"


_SCALAR_NODES = {IntegerNode: "int", FloatNode: "float", BooleanNode: "bool", StringNode: "str"}


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected == "bool":
        return isinstance(value, bool)
    if expected == "str":
        return isinstance(value, str)
    return True


def _as_declared(child: Any, value: Any) -> Any:
    """Ints given for float keys (or float lists) become floats, as the schema declares."""
    if isinstance(child, FloatNode) and isinstance(value, int):
        return float(value)
    if isinstance(child, ListConfig) and child._metadata.element_type is float and isinstance(value, list):
        return [float(v) for v in value]
    return value


def _check_type(child: Any, value: Any, key_path: str, source: str) -> None:
    """ConfigError unless `value` fits the schema node `child` (no silent str→int or int→str coercion)."""
    optional = child._is_optional()
    if isinstance(child, ListConfig):
        elem = getattr(child._metadata.element_type, "__name__", "any")
        expected = f"list of {elem}"
        ok = value is None and optional or isinstance(value, list) and all(_type_ok(elem, v) for v in value)
    else:
        expected = next((name for cls, name in _SCALAR_NODES.items() if isinstance(child, cls)), "any")
        ok = value is None and optional or value is not None and _type_ok(expected, value)
    if not ok:
        if optional:
            expected += " or null"
        raise ConfigError(f"Wrong type for {key_path} (from {source}): got {value!r} "
                          f"({type(value).__name__}), expected {expected}.")
