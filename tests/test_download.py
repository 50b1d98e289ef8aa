"""Named datasets: downloaded from a local HTTP server, checksum-verified, resumable, clear when offline."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading

import pytest

from alexnet.data import download
from alexnet.data.dataset import PreparedDataset
from alexnet.data.download import DownloadError, Remote
from alexnet.data.prepare import ensure_prepared
from alexnet.errors import UserError
from tests import kit


class Server:
    """A local HTTP server for ``files`` (name -> bytes) that honours Range like S3 does, and logs requests."""

    def __init__(self, files: dict[str, bytes], ranges: bool = True):
        self.files, self.ranges, self.requests = files, ranges, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                data, start = server.files[name], 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and server.ranges:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB: more than one read block


def test_download_writes_the_file_and_checks_its_md5(tmp_path):
    with Server({"a.bin": PAYLOAD}) as server:
        path = download.download(server.url("a.bin"), tmp_path / "a.bin", md5(PAYLOAD), progress=False)
    assert path.read_bytes() == PAYLOAD and not (tmp_path / "a.bin.part").exists()


def test_interrupted_download_resumes_with_a_range_request(tmp_path):
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:300_000])  # what a killed download left
    with Server({"a.bin": PAYLOAD}) as server:
        download.download(server.url("a.bin"), tmp_path / "a.bin", md5(PAYLOAD), progress=False)
    assert server.requests == [("a.bin", "bytes=300000-")]
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_server_ignoring_the_range_restarts_from_scratch(tmp_path):
    (tmp_path / "a.bin.part").write_bytes(b"x" * 1000)
    with Server({"a.bin": PAYLOAD}, ranges=False) as server:
        download.download(server.url("a.bin"), tmp_path / "a.bin", md5(PAYLOAD), progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_is_an_error_and_deletes_the_download(tmp_path):
    with Server({"a.bin": PAYLOAD}) as server:
        with pytest.raises(DownloadError, match="checksum mismatch: expected MD5 0123.*, got "):
            download.download(server.url("a.bin"), tmp_path / "a.bin", "0123" + "0" * 28, progress=False)
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "a.bin.part").exists()


def test_offline_is_a_clear_user_error_that_keeps_the_partial_download(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "a.bin.part").write_bytes(b"partial")
    with pytest.raises(DownloadError, match=r"cannot download http://127.0.0.1.*put it at .*a.bin.*"
                       r"resume the 7 bytes downloaded so far") as err:
        download.download(f"http://127.0.0.1:{port}/a.bin", tmp_path / "a.bin", md5(PAYLOAD), progress=False)
    assert isinstance(err.value, UserError)
    assert (tmp_path / "a.bin.part").read_bytes() == b"partial"


def _never_fetch(*args, **kwargs):
    raise AssertionError("nothing may be downloaded here")


def test_a_file_put_in_place_by_hand_is_checked_against_the_published_md5(tmp_path, monkeypatch, capsys):
    from alexnet.cli import main

    monkeypatch.setattr(download, "download", _never_fetch)
    placed = kit.write(tmp_path / "cache" / "downloads" / "imagenette2-320.tgz", b"not the archive" * 100)
    assert main(["prepare", "imagenette", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert f"{placed}: checksum mismatch: expected MD5 {download.DATASETS['imagenette'].md5}, " \
           f"got {md5(placed.read_bytes())}" in err
    assert placed.exists() and not (tmp_path / "out").exists()

    kit.imagenette_archive(placed)  # the right file, put there by hand: used as it is
    monkeypatch.setitem(download.DATASETS, "imagenette", Remote("http://unreachable.invalid/imagenette2-320.tgz",
                                                                md5(placed.read_bytes())))
    assert main(["prepare", "imagenette", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
                 "--size", "16"]) == 0
    assert len(PreparedDataset(tmp_path / "out", "train")) == 2


def test_offline_with_nothing_downloaded_says_so_and_leaves_no_trace(tmp_path, monkeypatch, capsys):
    from alexnet.cli import main

    def offline(*args, **kwargs):
        raise download.urllib.error.URLError("no network")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    assert main(["prepare", "cifar10", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert "cannot download" in err and "(no network)" in err and "run again once online" in err
    assert "resume" not in err
    assert not (tmp_path / "out").exists()


def test_http_error_names_the_status(tmp_path):
    with Server({}) as server, pytest.raises(DownloadError, match="HTTP 404"):
        download.download(server.url("missing.tgz"), tmp_path / "m.tgz", md5(b""), progress=False)


def test_named_dataset_is_downloaded_and_prepared_once_into_the_cache(tmp_path, monkeypatch):
    archive = kit.imagenette_archive(tmp_path / "imagenette2-320.tgz").read_bytes()
    with Server({"imagenette2-320.tgz": archive}) as server:
        monkeypatch.setitem(download.DATASETS, "imagenette",
                            Remote(server.url("imagenette2-320.tgz"), md5(archive)))
        out = ensure_prepared("imagenette", cache_dir=tmp_path / "cache")
        assert ensure_prepared("imagenette", cache_dir=tmp_path / "cache") == out
        assert ensure_prepared(out) == out
    assert len(server.requests) == 1
    assert (tmp_path / "cache" / "downloads" / "imagenette2-320.tgz").read_bytes() == archive
    train, val = PreparedDataset(out, "train"), PreparedDataset(out, "val")
    assert (len(train), len(val)) == (2, 2)
    assert train.class_names == ["tench, Tinca tinca", "goldfish, Carassius auratus"]


def test_cache_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "env-cache"))
    assert download.cache_root() == tmp_path / "env-cache"
    assert download.cache_root(tmp_path / "given") == tmp_path / "given"


def test_unknown_data_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a prepared dataset .*imagenette, cifar10"):
        ensure_prepared(tmp_path / "nothing-here")
