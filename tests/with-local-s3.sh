#!/usr/bin/env bash
# Runs a command with a local S3 protocol server (moto) on 127.0.0.1 and the AWS SDK's standard
# endpoint variables pointing at it; the server is stopped when the command ends. The command
# sees S3FANOUT_TEST_SERVER=moto (tests/with-localstack.sh: localstack).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$root/.venv}
port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=${TMPDIR:-/tmp}/moto-$port.log
"$venv/bin/python" "$root/tests/local_s3.py" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  kill -0 "$pid" 2>/dev/null || { echo "local S3 server failed to start:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.1
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export S3FANOUT_TEST_SERVER=moto
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL_S3
"$@"
