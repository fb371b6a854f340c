#!/usr/bin/env bash
# Runs a command with LocalStack's S3 (tests/localstack_s3.py, the second local S3 server) on
# 127.0.0.1 and the AWS SDK's standard endpoint variables pointing at it, as
# tests/with-local-s3.sh does for moto; the server is stopped when the command ends.
# LocalStack is installed on first use into .venv-localstack (LOCALSTACK_VENV) from
# tests/localstack-requirements.txt, with a Python 3.13 or newer found on PATH or by pyenv
# (LOCALSTACK_PYTHON names one), and again whenever that file changes.
# The command sees S3FANOUT_TEST_SERVER=localstack.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${LOCALSTACK_VENV:-$root/.venv-localstack}
requirements=$root/tests/localstack-requirements.txt
stamp=$venv/.installed

# A Python that localstack-core 2026.3.0 runs on: 3.13 or newer (it imports warnings.deprecated).
suitable() { "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 13))' 2>/dev/null; }
find_python() {
  local candidate version
  if [ -n "${LOCALSTACK_PYTHON:-}" ]; then
    suitable "$LOCALSTACK_PYTHON" && { echo "$LOCALSTACK_PYTHON"; return; }
    echo "with-localstack.sh: LOCALSTACK_PYTHON=$LOCALSTACK_PYTHON is not a Python 3.13 or newer with venv" >&2
    return 1
  fi
  for candidate in python3.14 python3.13 python3; do
    if command -v "$candidate" >/dev/null && suitable "$(command -v "$candidate")"; then
      command -v "$candidate"; return
    fi
  done
  if command -v pyenv >/dev/null; then
    # Newest first.
    for version in $(pyenv versions --bare --skip-aliases 2>/dev/null | grep -E '^3\.[0-9]+\.[0-9]+$' | sort -t. -k1,1nr -k2,2nr -k3,3nr); do
      candidate=$(pyenv prefix "$version" 2>/dev/null)/bin/python3
      if [ -x "$candidate" ] && suitable "$candidate"; then echo "$candidate"; return; fi
    done
  fi
  echo "with-localstack.sh: LocalStack's S3 needs Python 3.13 or newer, and none was found on PATH" \
    "(python3.14, python3.13, python3) nor among pyenv's versions; install one (pyenv install 3.13)" \
    "or name it with LOCALSTACK_PYTHON" >&2
  return 1
}

want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! suitable "$venv/bin/python"; then
  python=$(find_python)
  echo "with-localstack.sh: installing LocalStack into $venv with $python" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
fi

port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
scratch=$(mktemp -d "${TMPDIR:-/tmp}/localstack-$port.XXXXXX")
log=$scratch/server.log
"$venv/bin/python" "$root/tests/localstack_s3.py" --port "$port" --root "$scratch/root" >"$log" 2>&1 &
pid=$!
stop() {
  # LocalStack often hangs in its shutdown, and its data is scratch: 3 s, then SIGKILL.
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$scratch"
}
trap stop EXIT
health=http://127.0.0.1:$port/_localstack/health
for attempt in $(seq 1 600); do
  if "$venv/bin/python" - "$health" <<'EOF' 2>/dev/null; then break; fi
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
    sys.exit(json.load(answer)["services"].get("s3") != "running")
EOF
  if ! kill -0 "$pid" 2>/dev/null || [ "$attempt" = 600 ]; then
    echo "LocalStack's S3 failed to start:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export S3FANOUT_TEST_SERVER=localstack
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL_S3
"$@"
