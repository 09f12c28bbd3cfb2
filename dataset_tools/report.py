"""Problems found in a dataset, and the check_dataset report built from them.

Each problem is `{file, id, message}`: `file` relative to the dataset root (an annotation JSON, a LabelMe
file or an image), `id` the image / annotation / category id at fault (or the list position such as
`annotations[17]` when the entry has no usable id; None when the whole file is at fault), `message` what
is wrong and what to do. A dataset with millions of annotations can repeat one problem many times: the
first `max_listed` of each kind and file are listed, then one summary entry gives the count of the rest.
Counts (`num_errors`, `num_warnings`) always include every problem, listed or not.
"""
import sys
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

ProblemId = Any  # int id, "annotations[17]"-style position, or None

MAX_LISTED = 20  # problems listed per (severity, file, kind); the rest are counted


class ProblemLog:
    """Collects errors (the dataset fails) and warnings (training can go on)."""

    def __init__(self, max_listed: int = MAX_LISTED) -> None:
        self.max_listed = max_listed
        # (severity, file, kind) -> [listed entries, total count]
        self._kinds: "OrderedDict[Tuple[str, str, str], List[Any]]" = OrderedDict()

    def error(self, kind: str, file: str, id: ProblemId, message: str) -> None:
        """Record one error. `kind` is a short name for its sort ("bbox outside the image")."""
        self._add("error", kind, file, [(id, message)], 1)

    def warning(self, kind: str, file: str, id: ProblemId, message: str) -> None:
        """Record one warning."""
        self._add("warning", kind, file, [(id, message)], 1)

    def add_many(
        self,
        severity: str,
        kind: str,
        file: str,
        positions: Iterable[int],
        describe: Callable[[int], Tuple[ProblemId, str]],
    ) -> None:
        """Record one problem per position; `describe(pos) -> (id, message)` runs only for listed ones.

        Args:
            severity: "error" or "warning".
            positions: indices (e.g. into the annotation list) that have this problem.
        """
        positions = list(positions)
        if not positions:
            return
        room = max(0, self.max_listed - self._listed_count(severity, file, kind))
        self._add(severity, kind, file, [describe(int(p)) for p in positions[:room]], len(positions))

    def seen(self, severity: str, file: str, kind: str) -> bool:
        """Whether a problem of this kind was already recorded for `file`."""
        return (severity, file, kind) in self._kinds

    def _listed_count(self, severity: str, file: str, kind: str) -> int:
        entry = self._kinds.get((severity, file, kind))
        return len(entry[0]) if entry else 0

    def _add(self, severity: str, kind: str, file: str, items: List[Tuple[ProblemId, str]],
             count: int) -> None:
        assert severity in ("error", "warning"), severity
        entry = self._kinds.setdefault((severity, file, kind), [[], 0])
        room = max(0, self.max_listed - len(entry[0]))
        entry[0].extend({"file": utf8_safe(file), "id": _plain(pid), "message": utf8_safe(msg)}
                        for pid, msg in items[:room])
        entry[1] += count

    def _count(self, severity: str) -> int:
        return sum(total for (sev, _, _), (_, total) in self._kinds.items() if sev == severity)

    @property
    def num_errors(self) -> int:
        return self._count("error")

    @property
    def num_warnings(self) -> int:
        return self._count("warning")

    def entries(self, severity: str) -> List[Dict[str, Any]]:
        """The listed problems of one severity, each kind followed by a summary of what was not listed."""
        out: List[Dict[str, Any]] = []
        for (sev, file, kind), (listed, total) in self._kinds.items():
            if sev != severity:
                continue
            out.extend(listed)
            if total > len(listed):
                out.append({"file": file, "id": None,
                            "message": f"... and {total - len(listed)} more of this kind: {kind}"})
        return out

    def first_errors(self, n: int = 3) -> List[str]:
        """`file: message` lines of the first n errors, for an exception message."""
        return [f"{e['file']}: {e['message']}" for e in self.entries("error")[:n]]


def progress(items: Any, desc: str, min_total: int = 1000, total: Optional[int] = None) -> Iterable[Any]:
    """`items` wrapped in a tqdm bar on stderr, or unwrapped when stderr is not a terminal or the scan is
    short."""
    total = len(items) if total is None else total
    if total < min_total or not sys.stderr.isatty():
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=total, unit="it", leave=False, dynamic_ncols=True)


def utf8_safe(value: str) -> str:
    """`value` writable as UTF-8: a lone surrogate (a JSON "\\ud800" escape, an undecodable file name) becomes
    a backslash escape instead of failing the result file's write."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _plain(value: ProblemId) -> ProblemId:
    """Ids as JSON-friendly scalars (numpy ints become int), strings writable as UTF-8."""
    if isinstance(value, str):
        return utf8_safe(value)
    if value is None or isinstance(value, bool):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


def build_report(
    log: ProblemLog,
    dataset_path: str,
    attributes: Dict[str, Any],
    histogram: Optional[str],
    extra: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """The check_dataset result (without `done_flag`, which the mode runner adds).

    PaddleX's fields (`check_pass`, `attributes`, `analysis`, `dataset_path`, `show_type`, `dataset_type`)
    plus ours: `errors`, `warnings`, `num_errors`, `num_warnings`, and `extra` (convert / split details).
    """
    report: Dict[str, Any] = {
        "check_pass": log.num_errors == 0,
        "attributes": attributes,
        "analysis": {"histogram": histogram},
        "dataset_path": dataset_path,
        "show_type": "image",
        "dataset_type": "COCOInstSegDataset",
        "num_errors": log.num_errors,
        "num_warnings": log.num_warnings,
        "errors": log.entries("error"),
        "warnings": log.entries("warning"),
    }
    report.update(extra or {})
    return report
