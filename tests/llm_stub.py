"""An OpenAI-compatible Chat Completions server on 127.0.0.1 that plays a script.

Each request to /v1/chat/completions consumes the next scripted step (a list of tool calls, or a
text message) and is recorded, so tests can assert what the model was told (tool outputs,
rejection reasons). Speaks both the plain and the streaming (SSE) forms.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def tool_call(name: str, arguments: dict[str, Any] | str, call_id: str) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


class StubLLM:
    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.requests.append(body)
                    step = stub.steps.pop(0) if stub.steps else {"content": "(script exhausted)"}
                if step.get("delay"):
                    time.sleep(step["delay"])  # a slow model: the client may give up meanwhile
                if body.get("stream"):
                    self._stream(step, body)
                else:
                    self._json(step)

            def _message(self, step: dict[str, Any]) -> dict[str, Any]:
                if "tool_calls" in step:
                    return {"role": "assistant", "content": None, "tool_calls": step["tool_calls"]}
                return {"role": "assistant", "content": step["content"]}

            def _json(self, step: dict[str, Any]) -> None:
                finish = "tool_calls" if "tool_calls" in step else "stop"
                payload = {
                    "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
                    "model": "stub", "choices": [{"index": 0, "message": self._message(step), "finish_reason": finish}],
                    "usage": stub.usage(step),
                }
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, step: dict[str, Any], json_body: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()

                def chunk(delta: dict[str, Any], finish: str | None = None) -> None:
                    payload = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()),
                               "model": "stub", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                    self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")

                chunk({"role": "assistant"})
                if "tool_calls" in step:
                    for i, call in enumerate(step["tool_calls"]):
                        chunk({"tool_calls": [{"index": i, **call}]})
                    chunk({}, "tool_calls")
                else:
                    chunk({"content": step["content"]})
                    chunk({}, "stop")
                # What the server reports when the client asks for usage in the stream.
                if (json_body.get("stream_options") or {}).get("include_usage"):
                    self.wfile.write(b"data: " + json.dumps({
                        "id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()),
                        "model": "stub", "choices": [], "usage": stub.usage(step)}).encode() + b"\n\n")
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def usage(step: dict[str, Any]) -> dict[str, Any]:
        """A step's `usage` (Chat Completions shape), else one token each way."""
        return step.get("usage") or {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}

    def script(self, *steps: dict[str, Any]) -> None:
        with self.lock:
            self.steps.extend(steps)

    def tool_outputs(self) -> dict[str, str]:
        """Every tool result the model has been sent so far, by call id."""
        out: dict[str, str] = {}
        for request in self.requests:
            for message in request["messages"]:
                if message.get("role") == "tool":
                    content = message["content"]
                    if isinstance(content, list):
                        content = "".join(part.get("text", "") for part in content)
                    out[message["tool_call_id"]] = content
        return out

    def user_messages(self) -> list[str]:
        """The user messages of the last request: the conversation's tasks as the model saw them."""
        if not self.requests:
            return []
        return [m["content"] for m in self.requests[-1]["messages"] if m.get("role") == "user"]

    def close(self) -> None:
        self.server.shutdown()
