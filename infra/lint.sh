#!/usr/bin/env bash
# Lint the templates in infra/ with cfn-lint and checkov.
#
# The linters live in their own virtualenv (.venv-lint at the repository root,
# created or updated here from infra/lint-requirements.txt) so that they do not
# disturb the packages of .venv. Exits non-zero on any cfn-lint error or
# warning and on any failed checkov check. Deliberate checkov skips are written
# in each resource's Metadata (checkov: skip: - id/comment).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

LINT_VENV="${LINT_VENV:-.venv-lint}"
PYTHON="${PYTHON:-python3}"
REQS="infra/lint-requirements.txt"
STAMP="$LINT_VENV/.lint-requirements"

if [[ ! -x "$LINT_VENV/bin/python" ]]; then
  echo "lint: creating $LINT_VENV"
  "$PYTHON" -m venv "$LINT_VENV"
fi
if ! cmp -s "$REQS" "$STAMP" || [[ ! -x "$LINT_VENV/bin/cfn-lint" || ! -x "$LINT_VENV/bin/checkov" ]]; then
  echo "lint: installing $(grep -v '^#' "$REQS" | tr '\n' ' ')into $LINT_VENV"
  "$LINT_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
  cp "$REQS" "$STAMP"
fi

templates=(infra/*.yaml)
status=0

# ---------------------------------------------------------------- cfn-lint
# Exit code is a bit mask: 2 = errors, 4 = warnings, 8 = informational.
echo "== cfn-lint ${templates[*]}"
set +e
cfn_out="$("$LINT_VENV/bin/cfn-lint" --format parseable -- "${templates[@]}" 2>&1)"
cfn_rc=$?
set -e
[[ -n "$cfn_out" ]] && printf '%s\n' "$cfn_out"
cfn_errors=$(printf '%s\n' "$cfn_out" | grep -cE ':[0-9]+:[0-9]+:[0-9]+:[0-9]+:E[0-9]+' || true)
cfn_warnings=$(printf '%s\n' "$cfn_out" | grep -cE ':[0-9]+:[0-9]+:[0-9]+:[0-9]+:W[0-9]+' || true)
cfn_infos=$(printf '%s\n' "$cfn_out" | grep -cE ':[0-9]+:[0-9]+:[0-9]+:[0-9]+:I[0-9]+' || true)
echo "cfn-lint: ${#templates[@]} templates, $cfn_errors errors, $cfn_warnings warnings, $cfn_infos informational"
if (( cfn_rc & 1 )) || (( cfn_rc & 2 )) || (( cfn_rc & 4 )); then
  echo "cfn-lint: FAILED (exit code $cfn_rc)"
  status=1
fi

# ---------------------------------------------------------------- checkov
# --skip-download: run offline with the bundled checks only.
echo "== checkov -d infra --framework cloudformation"
set +e
ck_out="$("$LINT_VENV/bin/checkov" -d infra --framework cloudformation --quiet --compact --skip-download 2>&1)"
ck_rc=$?
set -e
printf '%s\n' "$ck_out"
summary="$(printf '%s\n' "$ck_out" | grep -E 'Passed checks: [0-9]+, Failed checks: [0-9]+' | tail -n 1 || true)"
if [[ -z "$summary" ]]; then
  echo "checkov: no summary found (exit code $ck_rc)"
  status=1
else
  passed=$(sed -E 's/.*Passed checks: ([0-9]+).*/\1/' <<<"$summary")
  failed=$(sed -E 's/.*Failed checks: ([0-9]+).*/\1/' <<<"$summary")
  skipped=$(sed -E 's/.*Skipped checks: ([0-9]+).*/\1/' <<<"$summary")
  echo "checkov: $passed passed, $failed failed, $skipped skipped"
  if (( failed > 0 || ck_rc != 0 )); then
    echo "checkov: FAILED (exit code $ck_rc)"
    status=1
  fi
fi

if (( status == 0 )); then
  echo "lint: OK"
fi
exit "$status"
