"""Pulling one field out of every COCO entry at once: typed numpy arrays plus masks of the valid ones.

The fast path of each helper is C-level (`map`, `set`, `np.fromiter`) over the parsed JSON lists; a
per-entry Python pass runs only when the fast path sees a wrong type, to find which entries are bad.
"""
import json
import math
from itertools import chain, repeat
from typing import Any, List, Tuple

import numpy as np

from dataset_tools.report import ProblemLog

_I64 = (-(2**63), 2**63 - 1)


def short(value: Any) -> str:
    """A value as JSON-ish text for a message, cut to 60 characters."""
    text = json.dumps(value) if isinstance(value, (list, dict, str)) or value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_dicts(entries: List[Any]) -> Tuple[List[dict], np.ndarray]:
    """Entries with non-objects replaced by {} (so .get works), and the mask of real objects."""
    if set(map(type, entries)) <= {dict}:
        return entries, np.ones(len(entries), bool)
    ok = np.array([type(e) is dict for e in entries], bool)
    return [e if type(e) is dict else {} for e in entries], ok


def column(entries: List[dict], key: str) -> List[Any]:
    """`entry.get(key)` of every entry, by a C-level map (no Python frame per entry)."""
    return list(map(dict.get, entries, repeat(key)))


def int_field(entries: List[dict], key: str) -> Tuple[np.ndarray, np.ndarray, List[Any]]:
    """(int64 values with 0 where invalid, valid mask, raw values) of `key` in every entry."""
    values = column(entries, key)
    if set(map(type, values)) <= {int}:
        try:
            return np.fromiter(values, np.int64, len(values)), np.ones(len(values), bool), values
        except OverflowError:
            pass
    ok = np.array([type(v) is int and _I64[0] <= v <= _I64[1] for v in values], bool)
    arr = np.array([v if k else 0 for v, k in zip(values, ok)], np.int64)
    return arr, ok, values


def float_field(entries: List[dict], key: str) -> Tuple[np.ndarray, np.ndarray, List[Any]]:
    """(float64 values with NaN where not a number, is-a-number mask, raw values)."""
    values = column(entries, key)
    if set(map(type, values)) <= {int, float}:
        try:
            return np.fromiter(values, np.float64, len(values)), np.ones(len(values), bool), values
        except OverflowError:
            pass
    ok = np.array([type(v) in (int, float) and fits_float(v) for v in values], bool)
    arr = np.array([float(v) if k else math.nan for v, k in zip(values, ok)], np.float64)
    return arr, ok, values


def fits_float(v: Any) -> bool:
    try:
        float(v)
        return True
    except OverflowError:
        return False


def type_problem(key: str, raw: Any, expected: str) -> str:
    if raw is None:
        return f"'{key}' is missing or null; add {expected}"
    return f"'{key}' is {short(raw)}, expected {expected}"


def report_duplicates(log: ProblemLog, rel: str, what: str, ids: np.ndarray) -> np.ndarray:
    """Log one error per id used more than once; return the mask of entries carrying a duplicated id."""
    uniq, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    dup_ids = np.flatnonzero(counts > 1)
    log.add_many("error", f"duplicate {what} id", rel, dup_ids, lambda k: (
        uniq[k], f"{what} id {int(uniq[k])} is used by {int(counts[k])} {what}s; give each a unique id"))
    return counts[inverse.reshape(-1)] > 1


def bbox_field(anns: List[dict]) -> Tuple[np.ndarray, np.ndarray, List[Any]]:
    """(N, 4) float64 boxes (NaN rows where not a list of 4 numbers), well-formed mask, raw values."""
    raw = column(anns, "bbox")
    n = len(raw)
    if (set(map(type, raw)) <= {list} and set(map(len, raw)) <= {4}
            and set(map(type, chain.from_iterable(raw))) <= {int, float}):
        try:
            boxes = np.fromiter(chain.from_iterable(raw), np.float64, 4 * n).reshape(n, 4)
            return boxes, np.ones(n, bool), raw
        except OverflowError:
            pass
    ok = np.array([type(b) is list and len(b) == 4
                   and all(type(v) in (int, float) and fits_float(v) for v in b) for b in raw], bool)
    boxes = np.full((n, 4), np.nan)
    for i in np.flatnonzero(ok):
        boxes[i] = raw[i]
    return boxes, ok, raw


def lookup(keys: np.ndarray, key_ok: np.ndarray, query: np.ndarray, query_ok: np.ndarray) -> np.ndarray:
    """Index into `keys` of each query (first match among valid keys), -1 where absent or invalid."""
    valid = np.flatnonzero(key_ok)
    sorted_keys, first = np.unique(keys[valid], return_index=True)
    if sorted_keys.size == 0:
        return np.full(len(query), -1, np.int64)
    pos = np.clip(np.searchsorted(sorted_keys, query), 0, sorted_keys.size - 1)
    found = query_ok & (sorted_keys[pos] == query)
    return np.where(found, valid[first][pos], -1)
