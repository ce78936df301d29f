"""Small shared test utilities: a PDF writer, a Chroma server starter, the CLI runner and index snapshots.

Nothing here fakes a component: the PDF is a real PDF (pypdf reads it), the server is the real
`chroma run`, the CLI is the installed `psyqa` entry point, and snapshots read the real collection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PSYQA = str(BIN / "psyqa") if (BIN / "psyqa").exists() else str(REPO / ".venv" / "bin" / "psyqa")
CHROMA = str(BIN / "chroma") if (BIN / "chroma").exists() else str(REPO / ".venv" / "bin" / "chroma")


# ----------------------------------------------------------------------------- corpus files

def write_doc(path: Path, title: str | None, body: str, **fields) -> Path:
    """A Markdown file with YAML front matter (`title` plus `fields`); title=None writes none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fm = dict(fields)
    if title is not None:
        fm = {"title": title} | fm
    head = "---\n" + yaml.safe_dump(fm, sort_keys=False, allow_unicode=True) + "---\n\n" if fm else ""
    path.write_text(head + body, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- PDF

def _pdf_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[str | None], title: str | None = None) -> bytes:
    """A valid PDF 1.4 with one page per entry of `pages`.

    A string becomes that page's text layer (one BT/Tf/Td/Tj/ET line per text line, Helvetica);
    None makes a page without any content stream (what a scanned page looks like to a text
    extractor, minus the image). The xref table carries the real byte offset of every object.
    """
    objects: list[bytes] = []  # objects[i] is object number i + 1

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in below
    pages_no = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    kids = []
    for text in pages:
        contents = ""
        if text is not None:
            ops = ["BT", "/F1 11 Tf", "14 TL", "72 740 Td"]
            for line in text.split("\n"):
                ops.append(f"({_pdf_escape(line)}) Tj T*")
            ops.append("ET")
            stream = "\n".join(ops).encode("latin-1")
            c = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
            contents = f" /Contents {c} 0 R"
        page = add(f"<< /Type /Page /Parent {pages_no} 0 R /MediaBox [0 0 612 792] "
                   f"/Resources << /Font << /F1 {font} 0 R >> >>{contents} >>".encode())
        kids.append(page)
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {pages_no} 0 R >>".encode()
    objects[pages_no - 1] = (f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] "
                             f"/Count {len(kids)} >>").encode()
    info = add(f"<< /Title ({_pdf_escape(title)}) /Producer (psyqa tests) >>".encode()) if title else None

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for no, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{no} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n".encode()
    out += b"0000000000 65535 f \n"
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    trailer = f"<< /Size {len(objects) + 1} /Root {catalog} 0 R"
    if info:
        trailer += f" /Info {info} 0 R"
    out += f"trailer\n{trailer} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


# ----------------------------------------------------------------------------- Chroma server

# One starter for the tests and `psyqa bench latency`: a real `chroma run` on loopback.
from assistant.bench.server import free_port, start_chroma_server, stop_process  # noqa: E402,F401 (re-exported)


def unique_collection(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def fresh_like(settings, base: Path, **overrides):
    """Same backend, another empty store: a new data dir, and on a server a new collection."""
    from assistant.settings import Settings

    values = {"data_dir": base / "data", "corpus_dir": settings.corpus_dir}
    if settings.chroma_host:
        values |= {"chroma_host": settings.chroma_host, "chroma_port": settings.chroma_port,
                   "collection": unique_collection("clean")}
    return Settings(**(values | overrides))


# ----------------------------------------------------------------------------- CLI

def cli_env(settings=None, **extra: str) -> dict[str, str]:
    """The current environment without inherited PSYQA_* knobs, plus those of `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSYQA_")}
    if settings is not None:
        env["PSYQA_DATA_DIR"] = str(settings.data_dir)
        env["PSYQA_CORPUS_DIR"] = str(settings.corpus_dir)
        env["PSYQA_COLLECTION"] = settings.collection
        if settings.chroma_host:
            env["PSYQA_CHROMA_HOST"] = settings.chroma_host
            env["PSYQA_CHROMA_PORT"] = str(settings.chroma_port)
        env["PSYQA_MAX_TOKENS"] = str(settings.max_tokens)
        env["PSYQA_OVERLAP_SENTENCES"] = str(settings.overlap_sentences)
        env["PSYQA_MAX_FILE_MB"] = str(settings.max_file_mb)
    env.update(extra)
    return env


def psyqa(*args: str, settings=None, cwd: Path | None = None, timeout: float = 300,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PSYQA, *map(str, args)], cwd=str(cwd or REPO), capture_output=True,
                          text=True, timeout=timeout, env=env if env is not None else cli_env(settings))


def error_lines(stderr: str, name: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if name in ln]


# ----------------------------------------------------------------------------- index snapshots

def open_collection(settings, name: str | None = None):
    """The collection as a fresh client sees it now (also after another process wrote to it)."""
    from assistant import store

    if not settings.chroma_host:
        try:  # the embedded client caches one system per path: drop it to see other writers
            from chromadb.api.client import SharedSystemClient

            SharedSystemClient.clear_system_cache()
        except Exception:
            pass
    client = store.open_client(settings)
    return store.get_collection(client, name or settings.collection)


def snapshot(settings, name: str | None = None) -> dict[str, tuple[str, str, int]]:
    """chunk id -> (doc_id, doc_hash, doc_chunks) of every chunk in the collection."""
    col = open_collection(settings, name)
    if col is None:
        return {}
    got = col.get(include=["metadatas"])
    assert len(got["ids"]) == len(set(got["ids"])), "duplicate chunk ids in the collection"
    return {cid: (m["doc_id"], m.get("doc_hash", ""), int(m.get("doc_chunks", -1)))
            for cid, m in zip(got["ids"], got["metadatas"])}


def comparable(snap: dict[str, tuple[str, str, int]]) -> dict[str, tuple[str, str, int]]:
    return dict(sorted(snap.items()))


def doc_ids(snap: dict[str, tuple[str, str, int]]) -> set[str]:
    return {v[0] for v in snap.values()}


def assert_consistent(snap: dict[str, tuple[str, str, int]]) -> None:
    """No orphans or half-written documents: every doc has exactly doc_chunks chunks of one hash."""
    per_doc: dict[str, list[tuple[str, int]]] = {}
    for _, (did, h, n) in snap.items():
        per_doc.setdefault(did, []).append((h, n))
    for did, rows in per_doc.items():
        hashes = {h for h, _ in rows}
        assert len(hashes) == 1, f"{did}: chunks of several versions {hashes}"
        assert {n for _, n in rows} == {len(rows)}, f"{did}: has {len(rows)} chunks, metadata says {rows[0][1]}"


def parse_one_json(stdout: str):
    """stdout must be exactly one JSON value (whitespace around it allowed)."""
    dec = json.JSONDecoder()
    s = stdout.strip()
    value, end = dec.raw_decode(s)
    assert end == len(s), f"more than one JSON value on stdout: {stdout!r}"
    return value
