"""A fake OpenAI-compatible server on 127.0.0.1 for tests and benchmarks (a real HTTP server, in a thread).

Implements POST /v1/chat/completions, POST /v1/files, GET /v1/files/{id}/content, POST /v1/batches and
GET /v1/batches/{id}. Answers come from recorded teacher labels (by the paragraph text inside the
prompt), so they are realistic; unknown paragraphs get a deterministic label. Faults are injected
per (paragraph, attempt) with fixed probabilities and a seed, so every run is reproducible:
429 with Retry-After, 500, 503, slow answers, timeouts, a malformed HTTP body, malformed JSON
content, out-of-taxonomy labels, truncated (cut-off) responses, refusals and `length` truncation.
A concurrency cap answers 429 to requests beyond it. Run standalone: `python tests/fake_openai.py`.
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import json
import math
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from annotators.cache import text_sha256
from annotators.prompts import paragraph_from_prompt
from annotators.taxonomy import DOCUMENT_TYPE_LABELS, DOMAIN_LABELS, EDUCATIONAL_SCORES

FAULTS = (
    "rate_limit",
    "server_error",
    "unavailable",
    "slow",
    "timeout",
    "malformed_body",
    "malformed_json",
    "out_of_taxonomy",
    "truncated_stream",
    "refusal",
    "length",
)


@dataclass
class FakeConfig:
    latency_s: float = 0.0
    max_concurrent: int | None = None  # requests beyond this get 429 + Retry-After
    retry_after_s: float = 0.01
    faults: dict[str, float] = field(default_factory=dict)  # fault -> probability per attempt
    always: dict[str, str] = field(default_factory=dict)  # text sha256 -> fault on every attempt
    slow_s: float = 0.05
    timeout_s: float = 1.0  # how long a "timeout" fault hangs
    json_schema: bool = True  # False: 400 on response_format json_schema
    logprobs: bool = True  # False: 400 when logprobs are requested
    api_key: str | None = None  # when set, other bearer tokens get 401
    batch_polls: int = 1  # retrieves answering in_progress before a batch completes
    seed: int = 0


def _draw(*parts: object) -> float:
    digest = hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class FakeOpenAI:
    """The server state: config, recordings, counters; `start()` serves in a daemon thread."""

    def __init__(self, config: FakeConfig | None = None, recordings: str | None = None):
        from annotators.teachers.replay import ReplayTeacher

        self.config = config or FakeConfig()
        self.recordings = ReplayTeacher(recordings)
        self.lock = threading.RLock()
        self.attempts: Counter = Counter()  # text sha -> chat requests seen
        self.answered: Counter = Counter()  # text sha -> valid 200 answers sent
        self.faults_sent: Counter = Counter()
        self.history: list[
            tuple[str, str | None, float]
        ] = []  # (text sha, fault, monotonic time) per attempt
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.auth_headers: set[str] = set()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.server: ThreadingHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, port: int = 0) -> FakeOpenAI:
        state = self

        class Handler(_Handler):
            fake = state

        self.server = _Server(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 256
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start() if self.server is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- answers -----------------------------------------------------------------------------------
    def label_for(self, text: str) -> dict:
        answer = self.recordings.answer_for_text(text)
        if answer is not None:
            return {
                "document_type": answer.document_type,
                "domain": answer.domain,
                "educational_score": answer.educational_score,
            }
        u = _draw("label", text)
        return {
            "document_type": DOCUMENT_TYPE_LABELS[int(u * 4) % 4],
            "domain": DOMAIN_LABELS[int(u * 12) % 3],
            "educational_score": EDUCATIONAL_SCORES[int(u * 60) % 5],
        }

    def fault_for(self, sha: str, attempt: int) -> str | None:
        if sha in self.config.always:
            return self.config.always[sha]
        for name in FAULTS:
            p = self.config.faults.get(name, 0.0)
            if p and _draw(self.config.seed, name, sha, attempt) < p:
                return name
        return None

    def completion(self, request: dict, fault: str | None) -> dict:
        """The chat-completion body for `request` (fault applied to the content)."""
        user = next(m["content"] for m in request["messages"] if m["role"] == "user")
        text = paragraph_from_prompt(user)
        labels = self.label_for(text)
        finish, refusal = "stop", None
        if fault == "out_of_taxonomy":
            labels = dict(labels, document_type="Editorial")
        content = json.dumps(labels)
        if fault == "malformed_json":
            content = content[: len(content) // 2] + " oops"
        elif fault == "length":
            content, finish = content[: len(content) // 2], "length"
        elif fault == "refusal":
            content, refusal = None, "I'm sorry, I can't help with that."
        choice = {
            "index": 0,
            "finish_reason": finish,
            "message": {"role": "assistant", "content": content, "refusal": refusal},
            "logprobs": None,
        }
        if request.get("logprobs") and content and fault in (None, "slow", "timeout"):
            choice["logprobs"] = {"content": _logprob_tokens(labels, request.get("top_logprobs") or 5)}
        prompt_tokens = sum(len(m["content"]) for m in request["messages"]) // 4
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "fake"),
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": 20,
                "total_tokens": prompt_tokens + 20,
            },
        }

    # -- batch processing ----------------------------------------------------------------------------
    def run_batch(self, batch: dict) -> None:
        out, errors = [], []
        for line in self.files[batch["input_file_id"]].decode().splitlines():
            item = json.loads(line)
            sha = text_sha256(paragraph_from_prompt(item["body"]["messages"][-1]["content"]))
            with self.lock:
                self.attempts[sha] += 1
                attempt = self.attempts[sha]
            fault = self.fault_for(sha, attempt)
            if fault in (
                "rate_limit",
                "server_error",
                "unavailable",
                "timeout",
                "malformed_body",
                "truncated_stream",
            ):
                code = 429 if fault == "rate_limit" else 500
                response = {
                    "status_code": code,
                    "body": {"error": {"message": fault, "type": "server_error"}},
                }
            else:
                response = {"status_code": 200, "body": self.completion(item["body"], fault)}
                if fault is None:
                    with self.lock:
                        self.answered[sha] += 1
            out.append(
                {
                    "id": f"resp_{uuid.uuid4().hex[:8]}",
                    "custom_id": item["custom_id"],
                    "response": response,
                    "error": None,
                }
            )
        file_id = f"file-{uuid.uuid4().hex[:12]}"
        self.files[file_id] = "".join(json.dumps(x) + "\n" for x in out).encode()
        batch["output_file_id"] = file_id
        batch["request_counts"] = {"total": len(out), "completed": len(out), "failed": 0}
        if errors:
            batch["error_file_id"] = None


def _logprob_tokens(labels: dict, top: int) -> list[dict]:
    """Token-level logprobs of the JSON answer, with plausible alternatives on the label tokens."""
    pieces: list[tuple[str, list[tuple[str, float]] | None]] = [
        ('{"', None),
        ("document_type", None),
        ('": "', None),
    ]

    def alts(chosen: str, options: list[str]) -> list[tuple[str, float]]:
        others = [o for o in options if o != chosen][: max(0, top - 1)]
        rest = 0.3 / max(1, len(others))
        return [(chosen, 0.7)] + [(o, rest) for o in others]

    dt = labels["document_type"]
    first = dt.split(" ")[0]
    pieces.append((first, alts(first, [x.split(" ")[0] for x in DOCUMENT_TYPE_LABELS])))
    if dt != first:
        pieces.append((dt[len(first) :], None))
    pieces += [('", "', None), ("domain", None), ('": "', None)]
    pieces.append((labels["domain"], alts(labels["domain"], list(DOMAIN_LABELS))))
    pieces += [('", "', None), ("educational_score", None), ('": ', None)]
    score = str(labels["educational_score"])
    pieces.append((score, alts(score, [str(s) for s in EDUCATIONAL_SCORES])))
    pieces.append(("}", None))
    tokens = []
    for text, alternatives in pieces:
        entry = {
            "token": text,
            "logprob": math.log(0.7) if alternatives else 0.0,
            "bytes": None,
            "top_logprobs": [],
        }
        if alternatives:
            entry["top_logprobs"] = [
                {"token": t, "logprob": math.log(p), "bytes": None} for t, p in alternatives
            ]
        tokens.append(entry)
    assert "".join(t["token"] for t in tokens) == json.dumps(labels)
    return tokens


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # clients that time out hang up: expected
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # one write per response (headers + body): no Nagle / delayed-ACK stalls
    disable_nagle_algorithm = True
    fake: FakeOpenAI

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, code: int, body: object, headers: dict | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, message: str, headers: dict | None = None) -> None:
        self._send(
            code, {"error": {"message": message, "type": "invalid_request_error", "code": None}}, headers
        )

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorised(self) -> bool:
        auth = self.headers.get("Authorization", "")
        self.fake.auth_headers.add(auth)
        if self.fake.config.api_key and auth != f"Bearer {self.fake.config.api_key}":
            self._error(401, "Incorrect API key provided: " + auth[7:12] + "***")
            return False
        return True

    def do_GET(self) -> None:
        if not self._authorised():
            return
        parts = self.path.split("?")[0].strip("/").split("/")
        fake = self.fake
        if parts[:2] == ["v1", "batches"] and len(parts) == 3 and parts[2] in fake.batches:
            batch = fake.batches[parts[2]]
            with fake.lock:
                batch["_polls"] += 1
                if batch["_polls"] > fake.config.batch_polls and batch["status"] != "completed":
                    fake.run_batch(batch)
                    batch["status"] = "completed"
                    batch["completed_at"] = int(time.time())
                else:
                    batch["status"] = batch["status"] if batch["status"] == "completed" else "in_progress"
            self._send(200, {k: v for k, v in batch.items() if not k.startswith("_")})
        elif (
            parts[:2] == ["v1", "files"]
            and len(parts) == 4
            and parts[3] == "content"
            and parts[2] in fake.files
        ):
            self._send(200, None, raw=fake.files[parts[2]])
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        body = self._body()
        if not self._authorised():
            return
        path = self.path.split("?")[0].rstrip("/")
        if path == "/v1/chat/completions":
            self._chat(json.loads(body))
        elif path == "/v1/files":
            self._upload(body)
        elif path == "/v1/batches":
            self._create_batch(json.loads(body))
        else:
            self._error(404, f"no route {self.path}")

    def _upload(self, body: bytes) -> None:
        message = email.parser.BytesParser().parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
        )
        data, purpose, filename = b"", "batch", "requests.jsonl"
        for part in message.get_payload():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                data = part.get_payload(decode=True)
                filename = part.get_filename() or filename
            elif name == "purpose":
                purpose = part.get_payload(decode=True).decode()
        file_id = f"file-{uuid.uuid4().hex[:12]}"
        self.fake.files[file_id] = data
        self._send(
            200,
            {
                "id": file_id,
                "object": "file",
                "bytes": len(data),
                "created_at": int(time.time()),
                "filename": filename,
                "purpose": purpose,
                "status": "processed",
            },
        )

    def _create_batch(self, request: dict) -> None:
        if request.get("input_file_id") not in self.fake.files:
            self._error(400, "unknown input_file_id")
            return
        batch_id = f"batch_{uuid.uuid4().hex[:12]}"
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": request["endpoint"],
            "input_file_id": request["input_file_id"],
            "completion_window": request["completion_window"],
            "status": "validating",
            "created_at": int(time.time()),
            "output_file_id": None,
            "error_file_id": None,
            "_polls": 0,
        }
        self.fake.batches[batch_id] = batch
        self._send(200, {k: v for k, v in batch.items() if not k.startswith("_")})

    def _chat(self, request: dict) -> None:
        fake, cfg = self.fake, self.fake.config
        fmt = (request.get("response_format") or {}).get("type")
        if fmt == "json_schema" and not cfg.json_schema:
            self._error(400, "response_format json_schema is not supported by this server")
            return
        if request.get("logprobs") and not cfg.logprobs:
            self._error(400, "logprobs are not supported by this server")
            return
        with fake.lock:
            fake.requests += 1
            if cfg.max_concurrent is not None and fake.in_flight >= cfg.max_concurrent:
                fake.faults_sent["over_capacity"] += 1
                over = True
            else:
                over = False
                fake.in_flight += 1
                fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        if over:
            self._error(429, "too many concurrent requests", {"Retry-After": str(cfg.retry_after_s)})
            return
        try:
            text = paragraph_from_prompt(
                next(m["content"] for m in request["messages"] if m["role"] == "user")
            )
            sha = text_sha256(text)
            with fake.lock:
                fake.attempts[sha] += 1
                attempt = fake.attempts[sha]
            fault = fake.fault_for(sha, attempt)
            with fake.lock:
                fake.history.append((sha, fault, time.monotonic()))
                if fault:
                    fake.faults_sent[fault] += 1
            delay = (
                cfg.latency_s
                + (cfg.slow_s if fault == "slow" else 0)
                + (cfg.timeout_s if fault == "timeout" else 0)
            )
            if delay:
                time.sleep(delay)
            body = (
                fake.completion(request, fault)
                if fault not in ("rate_limit", "server_error", "unavailable")
                else None
            )
        finally:
            with fake.lock:
                fake.in_flight -= (
                    1  # before the answer goes out: the client may send its next request at once
                )
        if fault == "rate_limit":
            self._error(
                429,
                "rate limit",
                {"Retry-After": str(cfg.retry_after_s), "retry-after-ms": str(int(cfg.retry_after_s * 1000))},
            )
        elif fault == "server_error":
            self._error(500, "internal error")
        elif fault == "unavailable":
            self._error(503, "overloaded", {"Retry-After": str(cfg.retry_after_s)})
        elif fault == "malformed_body":
            self._send(200, None, raw=b'{"id": "chatcmpl-x", "choices": [{"message": ')
        elif fault == "truncated_stream":
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
        else:
            if fault in (None, "slow", "timeout"):
                with fake.lock:
                    fake.answered[sha] += 1
            self._send(200, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--max-concurrent", type=int, default=None)
    parser.add_argument("--recordings", default=None)
    args = parser.parse_args()
    fake = FakeOpenAI(
        FakeConfig(latency_s=args.latency, max_concurrent=args.max_concurrent), args.recordings
    ).start(args.port)
    print(fake.base_url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
