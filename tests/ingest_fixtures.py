"""Helpers shared by the ingest tests: hostile XML, a connection-counting server, bulk packages."""

from __future__ import annotations

import io
import socket
import tarfile
import threading
from pathlib import Path

ARTICLE = (
    b"<article article-type='research-article'><front><article-meta/></front><body><p>%s</p></body></article>"
)


class CountingServer:
    """A local TCP server that counts connections: proves nothing reaches the network."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


FILELIST_HEADER = (
    "Article File,Article Citation,AccessionID,LastUpdated (YYYY-MM-DD HH:MM:SS),PMID,License,Retracted\n"
)


def make_package(
    pmc_sample: Path, tmp_path: Path, names: list[str], extra: dict[str, bytes] | None = None
) -> Path:
    """A real-looking oa_bulk package: `PMC000xxxxxx/<file>` members, plus non-article members."""
    path = tmp_path / "oa_comm_xml.PMC000xxxxxx.baseline.2026-01-01.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo("PMC000xxxxxx")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name in names:
            data = (pmc_sample / name).read_bytes()
            info = tarfile.TarInfo(f"PMC000xxxxxx/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def hostile_documents(port: int) -> dict[str, bytes]:
    url = f"http://127.0.0.1:{port}"
    laughs = b"".join(
        b'<!ENTITY lol%d "&lol%d;&lol%d;&lol%d;&lol%d;&lol%d;&lol%d;&lol%d;&lol%d;&lol%d;&lol%d;">'
        % ((i,) + (i - 1,) * 10)
        for i in range(1, 10)
    )
    return {
        "xxe_file": b'<?xml version="1.0"?><!DOCTYPE article [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        + ARTICLE % b"&xxe;",
        "xxe_http": b'<?xml version="1.0"?><!DOCTYPE article [<!ENTITY xxe SYSTEM "%s/secret">]>'
        % url.encode()
        + ARTICLE % b"&xxe;",
        "parameter_entity": b'<!DOCTYPE article [<!ENTITY %% remote SYSTEM "%s/evil.dtd"> %%remote;]>'
        % url.encode()
        + ARTICLE % b"text",
        "billion_laughs": b'<?xml version="1.0"?><!DOCTYPE article [<!ENTITY lol0 "lol">'
        + laughs
        + b"]>"
        + ARTICLE % b"&lol9;",
    }
