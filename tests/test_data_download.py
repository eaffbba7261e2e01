"""Resumable, verified downloads and extraction, against a local server and file:// URLs."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cagnet.data.download import RESOURCES, download, extract, fetch, verify
from cagnet.errors import DataError

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class RangeHandler(BaseHTTPRequestHandler):
    ranges: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        rng = self.headers.get("Range")
        type(self).ranges.append(rng or "")
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        body = PAYLOAD[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    RangeHandler.ranges = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/file.bin"
    httpd.shutdown()
    httpd.server_close()


def test_download_resumes_a_partial_file_with_a_range_request(tmp_path, server):
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:30_000])
    download(server, dest, md5=MD5, sha256=SHA256, size=len(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert RangeHandler.ranges == ["bytes=30000-"]
    assert not (tmp_path / "file.bin.part").exists()
    download(server, dest, md5=MD5, progress=False)  # verified, not fetched again
    assert len(RangeHandler.ranges) == 1


def test_a_server_ignoring_range_restarts_the_file(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "file.bin"
    dest.parent.mkdir()
    (dest.parent / "file.bin.part").write_bytes(b"garbage" * 10)
    download(source.as_uri(), dest, md5=MD5, progress=False)  # file:// has no ranges
    assert dest.read_bytes() == PAYLOAD


def test_a_bad_checksum_deletes_the_download(tmp_path, server):
    dest = tmp_path / "file.bin"
    with pytest.raises(DataError, match="corrupt.*md5"):
        download(server, dest, md5="0" * 32, progress=False)
    assert not dest.exists() and not (tmp_path / "file.bin.part").exists()


def test_mirrors_are_tried_in_order(tmp_path, server):
    dead = "http://127.0.0.1:9/nothing"  # the discard port: connection refused
    download([dead, server], tmp_path / "file.bin", md5=MD5, progress=False)
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD
    with pytest.raises(DataError, match="could not download.*by hand"):
        download([dead], tmp_path / "other.bin", progress=False)


def test_verify_checks_size_and_emptiness(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD)
    verify(path, md5=MD5, size=len(PAYLOAD))
    with pytest.raises(DataError, match="expected 5"):
        verify(path, size=5)
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        verify(path)


def test_extract_tar_and_zip_once_and_refuse_unsafe_paths(tmp_path):
    tar_path = tmp_path / "a.tar.gz"
    with tarfile.open(tar_path, "w:gz") as t:
        info = tarfile.TarInfo("VOCdevkit/VOC2012/x.txt")
        info.size = 5
        t.addfile(info, io.BytesIO(b"hello"))
    extract(tar_path, tmp_path / "root")
    assert (tmp_path / "root/VOCdevkit/VOC2012/x.txt").read_text() == "hello"
    (tmp_path / "root/VOCdevkit/VOC2012/x.txt").write_text("changed")
    extract(tar_path, tmp_path / "root")  # done before: left alone
    assert (tmp_path / "root/VOCdevkit/VOC2012/x.txt").read_text() == "changed"
    zip_path = tmp_path / "b.zip"
    with zipfile.ZipFile(zip_path, "w") as z:
        z.writestr("train2017/1.png", b"png")
    extract(zip_path, tmp_path / "root" / "annotations")
    assert (tmp_path / "root/annotations/train2017/1.png").read_bytes() == b"png"
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as t:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(DataError, match="cannot extract"):
        extract(evil, tmp_path / "root2")
    assert not (tmp_path / "outside.txt").exists()


def test_resources_have_checksums_where_published_and_fetch_rejects_toy():
    for dataset in ("voc", "context"):
        for r in RESOURCES[dataset]:
            assert r.md5 is not None and len(r.md5) == 32, r.filename
    names = [r.filename for r in RESOURCES["voc"]]
    assert names == ["VOCtrainval_11-May-2012.tar", "benchmark.tgz"]
    with pytest.raises(DataError, match="generated, not downloaded"):
        fetch("toy")
