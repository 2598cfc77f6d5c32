"""download(): loopback HTTP server on 127.0.0.1, sha256 refusal, atomic writes, --from DIR."""
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest

import minispike.text as T
from conftest import SHARED_DATA, needs_data
from minispike.text import ChecksumError, DownloadError, Source, Task, download

pytestmark = pytest.mark.usefixtures("restore_registry")
dl = __import__("minispike.text.download", fromlist=["download"])


class _Handler(http.server.SimpleHTTPRequestHandler):
    truncate = set()              # paths served with a lying Content-Length (connection cut short)

    def log_message(self, *a):
        pass

    def do_GET(self):
        rel = self.path.lstrip("/")
        if rel in self.truncate:
            data = (Path(self.directory) / rel).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        return super().do_GET()


@pytest.fixture
def server():
    """Serve a directory on 127.0.0.1; yields (root dir, base url)."""
    started = []

    def start(root):
        handler = lambda *a, **k: _Handler(*a, directory=str(root), **k)
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        t = threading.Thread(target=httpd.serve_forever, daemon=True)
        t.start()
        started.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for h in started:
        h.shutdown()
        h.server_close()
    _Handler.truncate = set()


def _fake_task(tmp_path, name="fakedl", base=None):
    """A task whose 'published' files are generated here, with their sha256 pinned."""
    src = tmp_path / "mirror"
    files = {"train": f"{name}/train.txt", "test": f"{name}/test.txt"}
    sources = {}
    for i, rel in enumerate(files.values()):
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"".join(b"%d line %d of file %d\n" % (j % 2, j, i) for j in range(2000)))
        url = (base or "http://127.0.0.1:9/nowhere") + "/" + rel
        sources[rel] = Source(url, hashlib.sha256(p.read_bytes()).hexdigest())
    T.register_task(Task(name, "en", ("a", "b"), files, sources=sources), replace=True)
    return src


def test_download_loopback_public_urls_and_skip(tmp_path, server):
    src = _fake_task(tmp_path)
    base = server(src)
    _fake_task(tmp_path, base=base)                 # pinned URLs now point at the loopback server
    dest = tmp_path / "data"
    paths = download("fakedl", data_dir=dest)
    assert sorted(p.relative_to(dest).as_posix() for p in paths) == ["fakedl/test.txt", "fakedl/train.txt"]
    assert len(T.load_task("fakedl", "train", data_dir=dest)) == 2000
    mtime = (dest / "fakedl/train.txt").stat().st_mtime_ns
    logs = []
    download("fakedl", data_dir=dest, log=logs.append)         # present and verified: left alone
    assert (dest / "fakedl/train.txt").stat().st_mtime_ns == mtime and any("present" in m for m in logs)


def test_download_refuses_tampered_file(tmp_path, server):
    src = _fake_task(tmp_path)
    bad = tmp_path / "tampered"
    shutil.copytree(src, bad)
    with open(bad / "fakedl/train.txt", "ab") as f:
        f.write(b"1 an extra line\n")
    base = server(bad)
    dest = tmp_path / "data"
    with pytest.raises(ChecksumError) as e:
        download("fakedl", data_dir=dest, base_url=base)
    msg = str(e.value)
    assert "sha256 mismatch" in msg and "fakedl/train.txt" in msg and "expected" in msg and "nothing was written" in msg
    assert not (dest / "fakedl/train.txt").exists()
    assert (dest / "fakedl/test.txt").is_file()                 # the good file still arrives
    assert [p.name for p in (dest / "fakedl").iterdir()] == ["test.txt"]   # no partial files left


def test_interrupted_transfer_leaves_nothing(tmp_path, server):
    src = _fake_task(tmp_path)
    base = server(src)
    _Handler.truncate = {"fakedl/train.txt"}
    dest = tmp_path / "data"
    with pytest.raises(DownloadError, match="stopped after"):
        download("fakedl", data_dir=dest, base_url=base)
    assert not (dest / "fakedl/train.txt").exists()
    assert sorted(p.name for p in (dest / "fakedl").iterdir()) == ["test.txt"]


def test_interrupt_mid_write_leaves_nothing(tmp_path, monkeypatch):
    src = _fake_task(tmp_path)
    dest = tmp_path / "data"
    real = dl.hashlib.sha256
    calls = {"n": 0}

    class Boom:
        def __init__(self):
            self.h = real()

        def update(self, b):
            calls["n"] += 1
            if calls["n"] == 3:          # two chunks already in the partial file
                raise KeyboardInterrupt
            self.h.update(b)

        def hexdigest(self):
            return self.h.hexdigest()

    monkeypatch.setattr(dl.hashlib, "sha256", Boom)
    monkeypatch.setattr(dl, "CHUNK", 1024)
    with pytest.raises(KeyboardInterrupt):
        download("fakedl", data_dir=dest, from_dir=src)
    assert not any(p.is_file() for p in dest.rglob("*"))


def test_from_dir_and_http_errors(tmp_path, server):
    src = _fake_task(tmp_path)
    dest = tmp_path / "data"
    assert len(download("fakedl", data_dir=dest, from_dir=src)) == 2
    with pytest.raises(DownloadError, match="not found in"):
        download("fakedl", data_dir=tmp_path / "d2", from_dir=tmp_path / "empty")
    base = server(tmp_path / "empty_root")
    (tmp_path / "empty_root").mkdir()
    with pytest.raises(DownloadError, match="HTTP 404"):
        download("fakedl", data_dir=tmp_path / "d3", base_url=base)
    with pytest.raises(T.DataError, match="no public source"):
        download("builtin", data_dir=dest)


def test_cli_functions(tmp_path, capsys):
    import argparse
    src = _fake_task(tmp_path)
    p = argparse.ArgumentParser()
    dl.add_download_arguments(p)
    args = p.parse_args(["fakedl", "--data-dir", str(tmp_path / "d"), "--from", str(src)])
    assert dl.run_download(args) == 0
    assert "2 file(s) verified" in capsys.readouterr().out


@needs_data
def test_download_all_real_files_over_loopback(tmp_path, server):
    mirror = tmp_path / "mirror"
    shutil.copytree(SHARED_DATA, mirror, ignore=shutil.ignore_patterns("README.md"))
    base = server(mirror)
    dest = tmp_path / "data"
    paths = download("all", data_dir=dest, base_url=base)
    assert len(paths) == 10
    for p in paths:
        assert p.read_bytes() == (SHARED_DATA / p.relative_to(dest)).read_bytes()
    # every pinned URL is on the two pinned commits of the README
    for t in T.TASKS.values():
        for rel, s in t.sources.items():
            assert s.url.startswith((T.tasks.BASE_A, T.tasks.BASE_B)) and len(s.sha256) == 64
    tampered = mirror / "sst2" / "dev.txt"
    tampered.chmod(0o644)
    tampered.write_bytes(tampered.read_bytes().replace(b"1 ", b"0 ", 1))
    dest2 = tmp_path / "data2"
    with pytest.raises(ChecksumError, match=r"sst2/dev.txt"):
        download("sst2", data_dir=dest2, base_url=base)
    assert not (dest2 / "sst2" / "dev.txt").exists() and (dest2 / "sst2" / "train.txt").is_file()
