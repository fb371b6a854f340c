"""A function binary run as Lambda runs it: a process that takes its invocations from the
Lambda runtime API (AWS_LAMBDA_RUNTIME_API) and posts each answer back.

`Function(binary, env).invoke(payload, timeout_s)` hands the process one invocation, with the
request id, deadline and function ARN headers Lambda sends, and answers what the function
answered (or raises `InvocationFailed` with the error it reported).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

API = "/2018-06-01/runtime"


class InvocationFailed(Exception):
    """The function reported an error for the invocation (or never answered)."""


class Function:
    """One function process and its runtime API."""

    def __init__(self, binary: Path, env: dict[str, str], name: str, log_path: Path):
        self.name = name
        self.arn = f"arn:aws:lambda:{env.get('AWS_REGION', 'us-east-1')}:123456789012:function:{name}"
        self._pending: queue.Queue = queue.Queue()
        self._answers: dict[str, queue.Queue] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        full_env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self._server.server_address[1]}",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            "RUST_LOG": "info",
            # Values as Lambda passes them: strings (a template's numbers included).
            **{name: str(value) for name, value in env.items()},
        }
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self._proc = subprocess.Popen(
            [str(binary)], env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def _handler(self):
        function = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != f"{API}/invocation/next":
                    self.send_error(404)
                    return
                request_id, payload, deadline_ms = function._pending.get()
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline_ms))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", function.arn)
                self.send_header("Lambda-Runtime-Trace-Id", f"Root=1-{request_id[:8]}-{request_id[-24:]}")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else self._chunked()
                parts = self.path[len(API) + 1 :].split("/")
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if parts[0] == "invocation" and len(parts) == 3:
                    answer = function._answers.get(parts[1])
                    if answer is not None:
                        answer.put((parts[2], body))
                elif parts[0] == "init":
                    for answer in list(function._answers.values()):
                        answer.put(("error", body))

            def _chunked(self) -> bytes:
                data = b""
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()

        return Handler

    def invoke(self, payload, timeout_s: float = 60.0, request_id: str | None = None):
        """Runs one invocation with `timeout_s` until its deadline; answers the function's
        response (parsed JSON)."""
        request_id = request_id or str(uuid.uuid4())
        answer: queue.Queue = queue.Queue()
        self._answers[request_id] = answer
        deadline_ms = int((time.time() + timeout_s) * 1000)
        self._pending.put((request_id, payload, deadline_ms))
        give_up = time.monotonic() + timeout_s + 30
        try:
            while True:
                try:
                    kind, body = answer.get(timeout=0.5)
                    break
                except queue.Empty:
                    if self._proc.poll() is not None:
                        raise InvocationFailed(
                            f"{self.name} exited: {self.log_path.read_text(errors='replace')[-2000:]}"
                        ) from None
                    if time.monotonic() > give_up:
                        raise InvocationFailed(f"{self.name} did not answer; see {self.log_path}") from None
        finally:
            self._answers.pop(request_id, None)
        if kind != "response":
            raise InvocationFailed(body.decode(errors="replace"))
        return json.loads(body) if body else None

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)
        self._server.shutdown()
        self._log.close()
