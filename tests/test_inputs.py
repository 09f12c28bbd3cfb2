"""Input resolution: arrays, files, directories, URLs, lists; clear errors naming the bad item."""
import http.server
import tempfile
import threading
import time

import cv2
import numpy as np
import pytest

from engine.errors import DatasetError
from engine.prediction import inputs
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


# ---------------------------------------------------------------- URLs, from a local server only
def _png(value: int, size=(6, 7)) -> bytes:
    ok, buf = cv2.imencode(".png", np.full(size + (3,), value, np.uint8))
    assert ok
    return buf.tobytes()


class _Handler(http.server.BaseHTTPRequestHandler):
    """/a/img.png and /b/img.png: two different images with the same file name; /big.png: 4 KiB of
    image; /nolength.png: the same without Content-Length; /slow.png: answers after 2 s; /dribble.png:
    one byte every 0.1 s."""

    protocol_version = "HTTP/1.0"
    files = {"/a/img.png": _png(10), "/b/img.png": _png(200), "/big.png": _png(7, (64, 64)) + b"\0" * 4096}

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path == "/slow.png":
            time.sleep(2.0)
        self.send_response(200 if self.path != "/missing.png" else 404)
        body = self.files.get(self.path.replace("/nolength", "/big"), _png(1))
        if self.path != "/nolength.png" and self.path != "/dribble.png":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if self.path == "/dribble.png":
                for byte in body[:30]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
                return
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up, as the size cap makes it
            pass

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Where the downloads' temporary folders go, to watch them come and go."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_urls_with_the_same_file_name_do_not_collide(server, private_tmp):
    urls = [f"{server}/a/img.png", f"{server}/b/img.png"]
    it = iter_inputs(urls)
    path, first = next(it)
    (folder,) = list(private_tmp.iterdir())  # one private folder per iteration, only its owner may enter
    assert path == urls[0] and folder.name.startswith("instseg_inputs_")
    assert folder.stat().st_mode & 0o077 == 0
    path, second = next(it)
    assert path == urls[1]
    assert first[0, 0].tolist() == [10, 10, 10] and second[0, 0].tolist() == [200, 200, 200]
    assert list(it) == [] and list(private_tmp.iterdir()) == []  # cleaned up at the end


def test_download_folder_goes_when_iteration_stops_early(server, private_tmp):
    it = iter_inputs([f"{server}/a/img.png", f"{server}/b/img.png"])
    next(it)
    assert len(list(private_tmp.iterdir())) == 1
    it.close()
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("name", ["big.png", "nolength.png"])
def test_url_size_cap(server, private_tmp, monkeypatch, name):
    monkeypatch.setattr(inputs, "URL_MAX_BYTES", 1024)
    with pytest.raises(DatasetError, match=f"'{server}/{name}' is larger than the limit of 1024 bytes"):
        list(iter_inputs(f"{server}/{name}"))
    assert list(private_tmp.iterdir()) == []
    monkeypatch.setattr(inputs, "URL_MAX_BYTES", 1 << 20)
    assert next(iter_inputs(f"{server}/{name}"))[1].shape == (64, 64, 3)


def test_url_time_limit(server, private_tmp, monkeypatch):
    monkeypatch.setattr(inputs, "URL_TIMEOUT_S", 0.5)
    with pytest.raises(DatasetError, match="could not download input .*slow.png.*timed out"):
        list(iter_inputs(f"{server}/slow.png"))  # no answer within the limit
    with pytest.raises(DatasetError, match="dribble.png' took longer than 0.5 s"):
        list(iter_inputs(f"{server}/dribble.png"))  # every read is quick, the whole is not
    with pytest.raises(DatasetError, match="could not download input .*missing.png.*404"):
        list(iter_inputs(f"{server}/missing.png"))
    assert list(private_tmp.iterdir()) == []
