"""A small OpenAI-compatible chat-completions server on 127.0.0.1 for the autointerp tests.

It answers deterministically from the prompt (the explainer says "positive sentiment
words", the simulator marks tokens with positive VADER valence, ...), logs every request,
and can be told to fail: ``plan`` maps a prompt kind ("explain", "simulate", "detect",
"classify") to a list of faults served in order before it answers properly: an HTTP
status (429, 500), "malformed" (a body without choices) or "garbage" (non-JSON text
where JSON was asked for).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rlhf.lexicon import valence, words_of


def kind_of(prompt: str) -> str:
    if prompt.startswith("We are studying features"):
        return "explain"
    if "predict the feature's activation" in prompt:
        return "simulate"
    if "Which of the" in prompt:
        return "detect"
    return "classify"


def _positive(token: str) -> bool:
    return any(valence(w) > 0 for w in words_of(token))


def answer(prompt: str, kind: str) -> str:
    if kind == "explain":
        return "Positive sentiment words such as praise for the film."
    texts = [json.loads(m) for m in re.findall(r"^Text \d+ \(\d+ tokens\): (\[.*\])$", prompt, flags=re.M)]
    if kind == "simulate":
        return json.dumps([[10 if _positive(t) else 0 for t in text] for text in texts])
    if kind == "detect":
        return json.dumps([i + 1 for i, text in enumerate(texts) if any(_positive(t) for t in text)])
    return "yes" if "sentiment" in prompt.split("explained as:")[1].lower() else "no"


class FakeOpenAI:
    """Start with ``with FakeOpenAI() as server:``; ``server.url`` is the base_url (…/v1)."""

    def __init__(self, plan: dict[str, list] | None = None, delay: float = 0.0):
        self.plan = {k: list(v) for k, v in (plan or {}).items()}
        self.delay = delay
        self.log: list[dict] = []  # every request: kind, prompt hash, status served, authorization header
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep the test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                kind = kind_of(prompt)
                with server.lock:
                    fault = server.plan[kind].pop(0) if server.plan.get(kind) else None
                    server.log.append({"kind": kind, "hash": hashlib.sha256(prompt.encode()).hexdigest(),
                                       "fault": fault, "authorization": self.headers.get("Authorization")})
                if server.delay:
                    time.sleep(server.delay)
                if isinstance(fault, int):
                    return self._send(fault, {"error": {"message": f"injected {fault}", "type": "test"}})
                if fault == "malformed":
                    return self._send(200, {"id": "x", "object": "chat.completion", "model": body["model"]})
                content = "this is not JSON" if fault == "garbage" else answer(prompt, kind)
                self._send(200, {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(content) // 4,
                              "total_tokens": len(prompt) // 4 + len(content) // 4},
                })

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answered(self) -> list[dict]:
        return [r for r in self.log if r["fault"] is None]
