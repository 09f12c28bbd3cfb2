"""Input resolution: arrays, files, directories, URLs, lists; clear errors naming the bad item."""
import cv2
import numpy as np
import pytest

from engine.errors import DatasetError
from engine.prediction.inputs import iter_inputs


def _write(path, value):
    cv2.imwrite(str(path), np.full((8, 9, 3), value, np.uint8))
    return path


def test_array_file_directory_and_list(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    _write(d / "b.png", 20)
    _write(d / "a.jpg", 10)
    (d / "notes.txt").write_text("x")
    arr = np.zeros((5, 6, 3), np.uint8)
    got = list(iter_inputs([arr, str(d), _write(tmp_path / "c.bmp", 30)]))
    assert [p for p, _ in got] == [None, str(d / "a.jpg"), str(d / "b.png"), str(tmp_path / "c.bmp")]
    assert got[0][1] is arr
    assert got[2][1].shape == (8, 9, 3) and got[2][1].dtype == np.uint8
    assert got[3][1][0, 0, 0] == 30


def test_lazy_reading(tmp_path):
    good = _write(tmp_path / "g.png", 1)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    it = iter_inputs([str(good), str(bad)])
    assert next(it)[0] == str(good)
    with pytest.raises(DatasetError, match="bad.png"):
        next(it)


@pytest.mark.parametrize("item, msg", [
    ("/nope/missing.jpg", "missing.jpg.*does not exist"),
    (123, "unsupported input of type int"),
    (np.zeros((4, 4, 3), np.float32), "uint8 BGR"),
])
def test_bad_items_named(item, msg):
    with pytest.raises(DatasetError, match=msg):
        list(iter_inputs(item))


def test_empty_directory_and_unreachable_url(tmp_path):
    with pytest.raises(DatasetError, match="holds no images"):
        list(iter_inputs(str(tmp_path)))
    with pytest.raises(DatasetError, match="could not download input 'http://127.0.0.1:9/x.jpg'"):
        list(iter_inputs("http://127.0.0.1:9/x.jpg"))
