"""Fake model servers speaking the real wire protocols, on loopback, scripted per test.

`FakeLLMServer("openai")` serves `/v1/chat/completions` (SSE `data: {...}` chunks when the
request asks to stream, one JSON body otherwise) and `/v1/models`; `FakeLLMServer("ollama")`
serves `/api/chat` (NDJSON lines when streaming, one JSON body otherwise) and `/api/tags`.
Both are real HTTP servers (`http.server.ThreadingHTTPServer` in a thread, free port), so the
real LangChain/OpenAI/Ollama client code runs against them.

Script a server with `server.responder = fn(body) -> str | Fault`: a string is the model's
reply (streamed in small pieces so the answerer's sentence buffering is exercised); a `Fault`
makes the server misbehave (HTTP 500, hang, non-text garbage, empty reply). Every request body
is recorded in `server.requests` (parsed JSON, with `path`), so tests can assert what reached
the model.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from assistant.bench.server import free_port


@dataclass
class Fault:
    kind: str            # "http500" | "hang" | "nontext" | "empty" | "drop"
    seconds: float = 30.0


HTTP500 = Fault("http500")
HANG = Fault("hang")
NONTEXT = Fault("nontext")
EMPTY = Fault("empty")
DROP = Fault("drop")     # send two pieces, then close the connection mid-stream



def pieces(text: str, size: int = 7) -> list[str]:
    """The reply in small token-like pieces (a marker may be split across pieces)."""
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def user_text(body: dict) -> str:
    """The last user message of a chat request (content as a string)."""
    for m in reversed(body.get("messages", [])):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                return "".join(p.get("text", "") for p in c if isinstance(p, dict))
            return str(c or "")
    return ""


def system_text(body: dict) -> str:
    for m in body.get("messages", []):
        if m.get("role") == "system":
            c = m.get("content")
            return c if isinstance(c, str) else json.dumps(c)
    return ""


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # clients hanging up (timeouts) are expected
        pass


class FakeLLMServer:
    def __init__(self, kind: str, model: str = "fake-model") -> None:
        assert kind in ("openai", "ollama")
        self.kind = kind
        self.model = model
        self.requests: list[dict] = []
        self.responder: Callable[[dict], str | Fault] = lambda body: "OK"
        self._closing = threading.Event()
        self.port = free_port()
        self.httpd = _QuietServer(("127.0.0.1", self.port), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        root = f"http://127.0.0.1:{self.port}"
        return root + "/v1" if self.kind == "openai" else root

    def chat_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"].endswith(("/chat/completions", "/api/chat"))]

    def start(self) -> FakeLLMServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ HTTP

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _json(self, code: int, obj) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                server.requests.append({"path": self.path, "method": "GET"})
                if self.path.startswith("/api/tags"):
                    self._json(200, {"models": [{"name": server.model, "model": server.model}]})
                elif self.path.startswith("/v1/models"):
                    self._json(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode("latin-1")}
                body["path"] = self.path
                server.requests.append(body)
                if not self.path.endswith(("/chat/completions", "/api/chat")):
                    self._json(404, {"error": "not found"})
                    return
                try:
                    reply = server.responder(body)
                except Exception as exc:  # a broken script is a server error, visibly
                    reply = Fault("http500")
                    body["_script_error"] = repr(exc)
                stream = body.get("stream", server.kind == "ollama")
                if isinstance(reply, Fault):
                    self._fault(reply, stream)
                elif server.kind == "openai":
                    self._openai(reply, stream)
                else:
                    self._ollama(reply, stream)

            # --------------------------------------------------------- faults

            def _fault(self, fault: Fault, stream: bool) -> None:
                if fault.kind == "http500":
                    self._json(500, {"error": {"message": "internal error", "type": "server_error"}})
                elif fault.kind == "hang":
                    server._closing.wait(fault.seconds)
                    try:
                        self._json(200, {})
                    except OSError:
                        pass
                elif fault.kind == "nontext":
                    data = b"\x00\xff\xfe garbage {{{ not json \x01\x02\n"
                    self.send_response(200)
                    self.send_header("Content-Type",
                                     "text/event-stream" if server.kind == "openai" and stream
                                     else "application/x-ndjson" if stream else "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                elif fault.kind == "empty":
                    if server.kind == "openai":
                        self._openai("", stream)
                    else:
                        self._ollama("", stream)
                elif fault.kind == "drop":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-ndjson" if server.kind == "ollama"
                                     else "text/event-stream")
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    for p in ("MDMA was", " studied"):
                        self.wfile.write(self._frame(p))
                    self.wfile.flush()
                    self.close_connection = True

            # --------------------------------------------------------- OpenAI

            def _frame(self, content: str, done: bool = False) -> bytes:
                if server.kind == "openai":
                    chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                             "model": server.model,
                             "choices": [{"index": 0, "delta": {} if done else {"role": "assistant",
                                                                               "content": content},
                                          "finish_reason": "stop" if done else None}]}
                    return b"data: " + json.dumps(chunk).encode() + b"\n\n"
                line = {"model": server.model, "created_at": "2025-01-01T00:00:00Z",
                        "message": {"role": "assistant", "content": content}, "done": done}
                if done:
                    line.update(done_reason="stop", total_duration=1, load_duration=1,
                                prompt_eval_count=1, prompt_eval_duration=1, eval_count=1,
                                eval_duration=1)
                return json.dumps(line).encode() + b"\n"

            def _chunked_start(self, ctype: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _openai(self, text: str, stream: bool) -> None:
                if not stream:
                    self._json(200, {
                        "id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
                        "model": server.model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
                    return
                self._chunked_start("text/event-stream")
                for p in pieces(text):
                    self._chunk(self._frame(p))
                self._chunk(self._frame("", done=True))
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

            # --------------------------------------------------------- Ollama

            def _ollama(self, text: str, stream: bool) -> None:
                if not stream:
                    self._json(200, json.loads(self._frame(text, done=True)))
                    return
                self._chunked_start("application/x-ndjson")
                for p in pieces(text):
                    self._chunk(self._frame(p))
                self._chunk(self._frame("", done=True))
                self._chunk(b"")

        return Handler


def wait_until_listening(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {port}")
