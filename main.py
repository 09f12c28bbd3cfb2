"""InstSeg command line: `python main.py [-c CONFIG] [-o KEY=VALUE ...]`.

Parses argv, loads and validates the config, runs `Global.mode`, and exits with its code
(0 success, 1 failure, 2 bad config).
"""
import argparse
import sys
from typing import List, Optional

from engine.errors import ConfigError


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="InstSeg: instance segmentation with PaddlePaddle (check_dataset, train, evaluate, "
                    "predict, export).",
    )
    parser.add_argument("-c", "--config", default=None,
                        help="YAML config (default: configs/demo.yaml, the demo model on demo_data/)")
    parser.add_argument("-o", "--override", nargs="+", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. -o Global.mode=train Train.epochs_iters=3 "
                             "(values are YAML: null, true, 1e-4, [640, 640]); may repeat")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    overrides = [item for group in args.override for item in group]
    from engine.config.load import load_config

    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as exc:  # before Global.output is known: no result file, just the message
        print(f"ConfigError: {exc}", file=sys.stderr)
        return exc.exit_code
    from engine.modes import run_mode

    return run_mode(cfg, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
