"""Training metrics as JSON lines: one record per logged training step and one per evaluation.

Records: `{"type": "train", "epoch", "iter", "step", "lr", "loss", "<loss name>": ..., "time", "eta_s"}`
(losses averaged over the steps since the previous record; `step` counts optimizer steps from 1) and
`{"type": "eval", "epoch", "step", "AP", ...every metric the evaluator returned}`. A resumed run first drops
the records written after its checkpoint, so every step appears once.
"""
import json
import math
from pathlib import Path
from typing import Any, Dict, List

from engine.runtime.atomic_io import write_text


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, numpy/paddle scalars become floats."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, int):
        return value
    return number if math.isfinite(number) else None


def read_records(path: Path) -> List[Dict[str, Any]]:
    """Every complete record in `path` (a line cut short by a crash is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class MetricsLog:
    """Appends records to `path`; does nothing when `enabled` is false (ranks other than 0)."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def start(self, resume_step: int = -1) -> None:
        """Begin a run: empty the file (fresh run) or keep the records up to `resume_step` (resumed run)."""
        if not self.enabled:
            return
        kept = [r for r in read_records(self.path) if int(r.get("step", 0)) <= resume_step]
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def append(self, record: Dict[str, Any]) -> None:
        """Write one record and flush it."""
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(_clean(record)) + "\n")
            fh.flush()

    def records(self) -> List[Dict[str, Any]]:
        return read_records(self.path)
