# s3fanout: replicate S3 buckets to N replicas.
#   make demo      run the replicate function locally on real notifications, print the replicas
#   make unit      formatting, lints and every test that needs no server (the simulation too)
#   make test      all of it: unit, simulation, integration against a local S3 server (moto, and
#                  LocalStack: make test-localstack), end-to-end through the Lambda runtime API,
#                  template tests, the docs against the code
#   make bench     figures: replicate latency and requests for 1..8 targets, multipart sources,
#                  a batch's concurrency, memory, copy method, backfill against sync tools,
#                  a split backfill's throughput for 1..16 chains (simulation, virtual time);
#                  target/bench/results.json, target/bench/bench.svg (make bench-docs: docs/performance.md)
#   make package   build the Lambda zips (arm64)

VENV ?= .venv
PY := $(VENV)/bin/python
LOCAL_S3 := tests/with-local-s3.sh
LOCALSTACK := tests/with-localstack.sh

.PHONY: setup demo unit test check test-rust test-e2e test-localstack bench

setup: $(VENV)/.installed

$(VENV)/.installed: tests/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

demo: setup
	$(LOCAL_S3) $(PY) tests/e2e/replicate_e2e.py

# cargo test runs last, so that its summary closes the output.
test: setup check lint test-infra test-local-s3 docs-test test-e2e test-localstack test-rust

check:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# Server-free: the decision table, the engine over the simulated store, the simulation.
unit: check
	cargo test --workspace

# Tests that need the local S3 server are marked ignored; here the server runs, so they run too.
test-rust: setup
	$(LOCAL_S3) cargo test --workspace -- --include-ignored

# The wire tests again against a second S3 implementation, LocalStack's (tests/localstack_s3.py,
# installed into .venv-localstack on first use): first its corrections against what S3 documents,
# then every ignored test. A test a server cannot pass skips itself there, naming the server in
# S3FANOUT_TEST_SERVER and saying why (docs/servers.md).
test-localstack: setup
	$(LOCALSTACK) sh -c '$(PY) -m pytest -q -p no:cacheprovider tests/test_localstack_s3.py && cargo test --workspace -- --ignored'

test-e2e: setup
	$(LOCAL_S3) $(PY) tests/e2e/replicate_e2e.py

# The docs against the code: parameters, metrics, alarms, variables, targets, flags, request counts.
.PHONY: docs-test
docs-test: setup
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_docs.py

# The local S3 server itself: what it enforces beyond moto, against what S3 documents.
.PHONY: test-local-s3
test-local-s3: setup
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_local_s3.py

# Cargo's target directory (CARGO_TARGET_DIR when set), where the bench binaries are built.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
# Where the bench binaries write their JSON sections, merged by tests/bench_report.py.
export BENCH_DIR ?= $(CURDIR)/target/bench
BENCH_BIN := $(TARGET_DIR)/bench-build

# Sections of an earlier run are removed first, so results.json holds this run's figures only.
bench: setup
	mkdir -p $(BENCH_DIR) && rm -f $(BENCH_DIR)/*.json
	cargo build --profile bench-build -p integration --bin bench
	$(LOCAL_S3) $(BENCH_BIN)/bench
	cargo build --profile bench-build -p integration --bin bench_read && $(LOCAL_S3) $(BENCH_BIN)/bench_read
	cargo build --profile bench-build -p s3fanout-sim --example bench_memory && $(BENCH_BIN)/examples/bench_memory
	cargo build --profile bench-build -p s3fanout-sim --example bench_scale_out && $(BENCH_BIN)/examples/bench_scale_out
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/bench-requirements.txt && (command -v rclone >/dev/null || (apt-get update -qq && apt-get install -y -qq rclone)) && cargo build --profile bench-build -p s3fanout-cli -p integration --bin s3fanout --bin bench_backfill && $(LOCAL_S3) $(BENCH_BIN)/bench_backfill
	python3 tests/bench_report.py --dir $(BENCH_DIR)

# The figures of docs/performance.md and docs/bench.svg from the last `make bench`.
.PHONY: bench-docs
bench-docs:
	python3 tests/bench_report.py --dir $(BENCH_DIR) --docs

include infra/infra.mk
