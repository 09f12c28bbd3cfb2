"""Print a model's state_dict (name, shape, dtype, in order) in the format of
../shared/reference/params/<Model>.json, to diff against PaddleDetection's own list.

    python tools/dump_params.py -c configs/MaskRCNN-ResNet50-FPN.yaml [-o Train.num_classes=80] [> out.json]
    diff <(python tools/dump_params.py -c configs/X.yaml) ../shared/reference/params/X.json

The reference lists were made at num_classes 80. `aliases` lists second names of one tensor (a layer
registered twice, as PaddleDetection's SOLOv2 does) as [second name, first name].
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# our detector class -> PaddleDetection's architecture name, where they differ
PPDET_ARCHITECTURE = {"CascadeMaskRCNN": "CascadeRCNN", "PPYOLOESeg": "PPYOLOE", "MaskRTDETR": "DETR"}


def describe(model: Any, name: str, num_classes: int) -> Dict[str, Any]:
    """The reference-file record of `model`: model, num_classes, architecture, aliases, params."""
    params: List[List[Any]] = []
    aliases: List[List[str]] = []
    first_name: Dict[int, str] = {}
    for key, tensor in model.state_dict().items():
        params.append([key, [int(d) for d in tensor.shape], str(tensor.dtype).replace("paddle.", "")])
        if id(tensor) in first_name:
            aliases.append([key, first_name[id(tensor)]])
        else:
            first_name[id(tensor)] = key
    arch = type(model).__name__
    return {"model": name, "num_classes": num_classes, "architecture": PPDET_ARCHITECTURE.get(arch, arch),
            "aliases": aliases, "params": params}


def dumps(record: Dict[str, Any]) -> str:
    """The reference files' layout: header fields on one line, aliases on one, one parameter a line."""
    head = {k: record[k] for k in ("model", "num_classes", "architecture")}
    lines = [json.dumps(head)[:-1] + ",", f' "aliases": {json.dumps(record["aliases"])},', ' "params": [']
    rows = [f"  {json.dumps(p)}" for p in record["params"]]
    lines.append(",\n".join(rows))
    lines.append(" ]}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", required=True, help="config YAML (configs/<Model>.yaml)")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable (e.g. Train.num_classes=80)")
    args = parser.parse_args(argv)
    from engine.config.load import load_config
    from engine.errors import InstSegError
    from engine.models.zoo import build_model

    try:
        cfg = load_config(args.config, args.override)
        name, num_classes = str(cfg.Global.model), int(cfg.Train.num_classes)
        model = build_model(name, cfg.Architecture, num_classes)
    except InstSegError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    sys.stdout.write(dumps(describe(model, name, num_classes)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
