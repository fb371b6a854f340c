# s3fanout: replicate S3 buckets to N replicas.
#   make demo      run the replicate function locally on real notifications, print the replicas
#   make test      formatting, lints, unit + integration + end-to-end + template tests
#   make package   build the Lambda zips (arm64)

VENV ?= .venv
PY := $(VENV)/bin/python
LOCAL_S3 := tests/with-local-s3.sh

.PHONY: setup demo test check test-rust test-e2e

setup: $(VENV)/.installed

$(VENV)/.installed: tests/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

demo: setup
	$(LOCAL_S3) $(PY) tests/e2e/replicate_e2e.py

test: setup check test-rust test-e2e test-infra lint

check:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test-rust: setup
	$(LOCAL_S3) cargo test --workspace

test-e2e: setup
	$(LOCAL_S3) $(PY) tests/e2e/replicate_e2e.py

include infra/infra.mk
