"""`-o KEY=VALUE` parsing: split on the first `=`, value read as a YAML scalar or flow collection.

Values go through `yaml.safe_load`, never `eval`: `null`/`~` → None, `true`/`false` → bool, `1e-4` →
float (`1e-4` too: unlike plain PyYAML, exponents without a dot are floats here, as in YAML 1.2),
`[640, 640]` → list, `{a: 1}` → mapping; anything else stays a string. Note that PyYAML follows
YAML 1.1, so `yes`/`no`/`on`/`off` also read as booleans: quote them (`-o 'Key="on"'`) to keep a string.
An empty value (`Key=`) is null.
"""
import re
from dataclasses import dataclass
from typing import Any, List, Sequence

import yaml

from engine.errors import ConfigError


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader that reads `1e-4` / `5E3` as floats (PyYAML's YAML 1.1 needs `1.0e-4`) and rejects
    duplicate keys (PyYAML keeps the last silently: a second `Train:` would drop the first one's keys)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def yaml_load(text: str) -> Any:
    """Parse YAML text with `ConfigLoader` (config files and `-o` values alike)."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - a SafeLoader subclass


@dataclass(frozen=True)
class Override:
    """One KEY=VALUE pair; `index` is its 1-based position over all `-o` pairs (for messages)."""

    index: int
    key: str
    value: Any
    text: str

    @property
    def source(self) -> str:
        return f"-o #{self.index}"

    @property
    def parts(self) -> List[str]:
        return self.key.split(".")


def parse_value(text: str) -> Any:
    """The YAML reading of `text`; text YAML cannot parse (e.g. `a: b: c`) is kept as the raw string."""
    try:
        return yaml_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(items: Sequence[str]) -> List[Override]:
    """Parse `KEY=VALUE` strings in order; a missing `=` or an empty key path is a ConfigError."""
    result = []
    for index, item in enumerate(items, start=1):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"Override -o #{index} {item!r} is not KEY=VALUE "
                              "(e.g. -o Train.epochs_iters=3).")
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"Override -o #{index} {item!r} has an empty key path "
                              "(e.g. Train.batch_size=2).")
        result.append(Override(index, key, parse_value(raw), item))
    return result
