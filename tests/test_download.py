"""Fetching IDX files from mirrors, against a real HTTP server on 127.0.0.1 (no network mocks):
a good copy is kept, a corrupted or missing one makes the next mirror be tried, and when all
fail the one error line lists every URL and says where to put the file by hand."""
from __future__ import annotations

import functools
import gzip
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import IDX_NAMES, idx_bytes, run_script
from convnet.cli import UserError
from convnet.download import content_sha256, download

LABELS = "train-labels-idx1-ubyte"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www over HTTP; yield (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: the connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def serve(root: Path, mirror: str, name: str, content: bytes) -> None:
    (root / mirror).mkdir(exist_ok=True)
    (root / mirror / f"{name}.gz").write_bytes(gzip.compress(content))


def test_good_copy_is_downloaded_verified_and_kept(server, tmp_path):
    root, base = server
    content = idx_bytes(np.arange(10, dtype=np.uint8))
    serve(root, "a", LABELS, content)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = download(LABELS, data_dir, [f"{base}/a/"], content_sha256(content))
    assert path == data_dir / f"{LABELS}.gz"
    assert gzip.decompress(path.read_bytes()) == content
    assert sorted(p.name for p in data_dir.iterdir()) == [f"{LABELS}.gz"]  # no temp file left


def test_bad_copies_are_rejected_and_the_next_mirror_tried(server, tmp_path, capsys):
    root, base = server
    content = idx_bytes(np.arange(10, dtype=np.uint8))
    serve(root, "corrupted", LABELS, content[:-1] + b"\x00")  # one label changed
    (root / "html").mkdir()
    (root / "html" / f"{LABELS}.gz").write_text("<html>moved</html>")  # not gzip at all
    serve(root, "good", LABELS, content)
    mirrors = [closed_port_url(), f"{base}/missing/", f"{base}/corrupted/", f"{base}/html/", f"{base}/good/"]
    data_dir = tmp_path / "data"
    path = download(LABELS, data_dir, mirrors, content_sha256(content))
    assert gzip.decompress(path.read_bytes()) == content
    warnings = capsys.readouterr().err
    assert "refused" in warnings.lower()
    assert f"{base}/missing/{LABELS}.gz: HTTP 404" in warnings
    assert f"{base}/corrupted/{LABELS}.gz: checksum mismatch" in warnings
    assert f"{base}/html/{LABELS}.gz: not a valid gzip file" in warnings
    assert sorted(p.name for p in data_dir.iterdir()) == [f"{LABELS}.gz"]


def test_all_mirrors_failing_gives_one_clear_message(server, tmp_path):
    root, base = server
    content = idx_bytes(np.arange(10, dtype=np.uint8))
    serve(root, "corrupted", LABELS, content[:-1] + b"\x00")
    data_dir = tmp_path / "data"
    with pytest.raises(UserError) as caught:
        download(LABELS, data_dir, [f"{base}/missing", f"{base}/corrupted"], content_sha256(content))
    message = str(caught.value)
    assert "\n" not in message
    assert f"{base}/missing/{LABELS}.gz (HTTP 404" in message
    assert f"{base}/corrupted/{LABELS}.gz (checksum mismatch" in message
    assert f"put it at {data_dir / LABELS}.gz" in message
    assert list(data_dir.iterdir()) == []  # nothing half-downloaded


def test_convert_downloads_real_mnist_through_user_mirrors(server, tmp_path, real_mnist_dir):
    """convert.py with --mirror: the first mirror's corrupted copy is rejected, the second's used."""
    root, base = server
    for name in IDX_NAMES:
        (root / "good").mkdir(exist_ok=True)
        (root / "good" / f"{name}.gz").symlink_to(real_mnist_dir / f"{name}.gz")
    labels = bytearray(gzip.decompress((real_mnist_dir / f"{LABELS}.gz").read_bytes()))
    labels[-1] = (labels[-1] + 1) % 10  # a plausible but wrong copy: still valid IDX
    serve(root, "bad", LABELS, bytes(labels))
    data_dir = tmp_path / "data"
    result = run_script("convert.py", "--data-dir", data_dir, "--limit", "50",
                        "--mirror", f"{base}/bad/", "--mirror", f"{base}/good/")
    assert result.returncode == 0, result.stderr
    assert f"{base}/bad/{LABELS}.gz: checksum mismatch" in result.stderr
    for name in IDX_NAMES:
        assert (data_dir / f"{name}.gz").read_bytes() == (real_mnist_dir / f"{name}.gz").read_bytes()
    assert "converted 50 train + 50 test MNIST images" in result.stdout
