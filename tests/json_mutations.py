"""Hypothesis strategies that break JSON documents and files the way people and tools break them.

`mutate_document(data, doc)` walks from the root of a parsed JSON document to a node chosen by Hypothesis
and changes it: a wrong type (numbers as strings, lists as objects and back, flat vs nested lists, null,
NaN, infinity, huge and negative numbers, booleans), a deleted or extra key, an emptied list, a duplicated
entry (duplicate ids). `encode_file(data, doc)` then writes it as bytes, now and then truncated, with a
BOM, as UTF-16 or with a byte that is not UTF-8. Shared by the property tests of check_dataset, LabelMe
conversion and re-splitting.
"""
import copy
import json
import math
from itertools import chain
from typing import Any, List

from hypothesis import strategies as st

ODD_VALUES = st.one_of(
    st.sampled_from([None, True, False, math.nan, math.inf, -math.inf, 0, -1, -7.5, 2**63, -(2**63) - 1,
                     10**30, 1e308, -1e308, 0.5, "", " ", "1", "12.5", "NaN", "null", [], {}, [[]], [None],
                     [1, 2], {"": None}, "\u00fcml\u00e4ut \u6f22\u5b57", "a\x00b", "\ud800", 1e12, -1e15,
                     "sub/\x00.jpg", "d\ud800/x.png", "../x.jpg", "/abs.jpg", "C:\\x.jpg", "a b/c d.jpg"]),
    st.integers(),
    st.floats(),
    st.text(max_size=6),
)
EXTRA_KEYS = st.sampled_from(["extra", "", " id", "ID", "\u00e9t\u00e9", "segmentation ", "__proto__"])


def _children(node: Any) -> List[Any]:
    if isinstance(node, dict):
        return sorted(node)
    if isinstance(node, list):
        return list(range(len(node)))
    return []


def _pick(data: st.DataObject, holder: dict) -> tuple:
    """(container, key) of a node reached by walking down from holder["root"]; deeper nodes stay likely."""
    parent, key = holder, "root"
    while True:
        children = _children(parent[key])
        if not children or data.draw(st.integers(0, 3), label="stop here") == 0:
            return parent, key
        if isinstance(parent[key], list):
            child = data.draw(st.integers(0, len(children) - 1), label="index")
        else:
            child = data.draw(st.sampled_from(children), label="key")
        parent, key = parent[key], child


def _derived(value: Any) -> List[Any]:
    """Wrong-type variants of `value` that keep its content: the mistakes converters and hand edits make."""
    out: List[Any] = [[value], {"value": value}]
    if isinstance(value, bool):
        out += [int(value), str(value).lower()]
    elif isinstance(value, (int, float)):
        out += [str(value), -value if value else -1, value * 1e6, float(value), [value, value]]
    elif isinstance(value, str):
        out += [value + " ", value.upper(), [value], value.encode("utf-8", "replace").hex()]
    elif isinstance(value, list):
        out += [{str(i): v for i, v in enumerate(value)}, [], value[:1], value[:-1], value + value[-1:]]
        if value:
            out.append(value[0])  # unwrapped: nested -> flat
        if value and all(isinstance(v, list) for v in value):
            out.append(list(chain.from_iterable(value)))  # flattened polygons
        out.append([value])  # one level deeper: flat -> nested
    elif isinstance(value, dict):
        out += [list(value.values()), {}, json.dumps(value)]
    return out


def _mutate_once(data: st.DataObject, holder: dict) -> None:
    parent, key = _pick(data, holder)
    value = parent[key]
    ops = ["odd value", "derived"]
    if key != "root" and isinstance(parent, (dict, list)):
        ops.append("delete")
    if isinstance(value, dict):
        ops.append("extra key")
    if isinstance(value, list) and value:
        ops.append("duplicate entry")
    op = data.draw(st.sampled_from(ops), label="operation")
    if op == "odd value":
        parent[key] = copy.deepcopy(data.draw(ODD_VALUES, label="odd value"))  # never alias a shared constant
    elif op == "derived":
        parent[key] = copy.deepcopy(data.draw(st.sampled_from(_derived(value)), label="derived value"))
    elif op == "delete":
        del parent[key]
    elif op == "extra key":
        extra = data.draw(EXTRA_KEYS, label="extra key")
        value[extra] = copy.deepcopy(data.draw(ODD_VALUES, label="extra value"))
    else:
        k = data.draw(st.integers(0, len(value) - 1), label="duplicated index")
        value.insert(data.draw(st.integers(0, len(value)), label="at"), copy.deepcopy(value[k]))


def mutate_document(data: st.DataObject, doc: Any, max_mutations: int = 3) -> Any:
    """A changed deep copy of `doc` (1..max_mutations mutations)."""
    holder = {"root": copy.deepcopy(doc)}
    for _ in range(data.draw(st.integers(1, max_mutations), label="mutations")):
        _mutate_once(data, holder)
    return holder["root"]


def encode_file(data: st.DataObject, doc: Any) -> bytes:
    """`doc` as the bytes of a JSON file, sometimes damaged: truncated, BOM, UTF-16, latin-1, a stray byte."""
    text = json.dumps(doc, ensure_ascii=data.draw(st.booleans(), label="ascii only"))
    raw = text.encode("utf-8", "surrogatepass")
    damage = data.draw(st.sampled_from(["none"] * 6 + ["truncated", "bom", "utf-16", "latin-1", "stray byte",
                                                       "empty"]), label="file damage")
    if damage == "truncated":
        return raw[: data.draw(st.integers(0, max(0, len(raw) - 1)), label="cut at")]
    if damage == "bom":
        return b"\xef\xbb\xbf" + raw
    if damage == "utf-16":
        return text.encode("utf-16", "surrogatepass")
    if damage == "latin-1":
        return text.encode("latin-1", "replace")
    if damage == "stray byte":
        pos = data.draw(st.integers(0, len(raw)), label="stray byte at")
        return raw[:pos] + data.draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\x80"])) + raw[pos:]
    if damage == "empty":
        return b""
    return raw
