"""engine.runtime.json_read: orjson when installed, the same values as the standard library either way."""
import gc
import json
import math
from pathlib import Path

import pytest

from engine.data.coco import load_coco
from engine.runtime import json_read

# Standard JSON, plus what only the standard library accepts (orjson rejects these, the fallback reads them).
DOCUMENTS = [
    b'{"images": [{"id": 1, "file_name": "a b.jpg", "height": 4, "width": 5}], "x": [1.25, -3, 1e300]}',
    b'{"v": NaN, "w": [Infinity, -Infinity]}',
    b'\xef\xbb\xbf{"bom": true}',
    b'{"lone": "\\ud800"}',
    '{"utf16": "\u00e4"}'.encode("utf-16"),
]


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN-safe comparison


@pytest.mark.parametrize("data", DOCUMENTS)
def test_values_equal_the_standard_library_with_and_without_orjson(data: bytes, monkeypatch) -> None:
    expected = json.loads(data)
    assert _same(json_read.parse_json(data), expected)
    monkeypatch.setattr(json_read, "orjson", None)
    assert _same(json_read.parse_json(data), expected)
    assert json_read.json_backend() == "json"


def test_orjson_is_used_when_installed() -> None:
    pytest.importorskip("orjson")  # requirements.txt installs it; the fallback is tested above
    assert json_read.json_backend() == "orjson"
    assert math.isnan(json_read.parse_json(b"[NaN]")[0])
    big = json_read.parse_json(b'{"id": 123456789012345678901234567890}')["id"]
    assert big == pytest.approx(1.2345678901234568e29)  # beyond 64 bits: a float (an invalid id either way)


def test_errors_are_the_standard_librarys_and_gc_is_restored() -> None:
    assert gc.isenabled()
    with pytest.raises(json.JSONDecodeError) as info:
        json_read.parse_json(b'{"images": [1,\n 2')
    assert info.value.lineno == 2
    with pytest.raises(ValueError):
        json_read.parse_json(b'{"a": "\xff"}')
    assert gc.isenabled()
    gc.disable()
    try:
        json_read.parse_json(b"[]")
        assert not gc.isenabled()  # a pause inside a pause leaves the collector as it found it
    finally:
        gc.enable()


def test_coco_loader_reads_what_check_dataset_reads(tmp_path: Path) -> None:
    path = tmp_path / "instance_val.json"
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "height": 4, "width": 5}], "annotations": [],
           "categories": [{"id": 1, "name": "\u00e4"}]}
    # a BOM: pycocotools' own json.load of the text would fail, check_dataset reads it
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(doc, ensure_ascii=False).encode())
    coco = load_coco(path)
    assert coco.imgs[1]["file_name"] == "a.jpg" and coco.cats[1]["name"] == "\u00e4"
