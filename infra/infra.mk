# Infrastructure targets; the main Makefile includes this file.
#   make lint        cfn-lint + checkov on infra/*.yaml (own virtualenv .venv-lint)
#   make test-infra  deploy the templates into a local moto server (pytest)
#   make package     build the Lambda zips with cargo-lambda (arm64, release): the
#                    one build of the functions; infra/replication.yaml's CodeUri
#                    names these zips and `aws cloudformation package` uploads them

VENV ?= .venv
# The functions infra/replication.yaml deploys (target/lambda/<bin>/bootstrap.zip).
LAMBDA_BUILD_FLAGS ?= --bin replicate --bin backfill --bin canary

.PHONY: lint test-infra package

lint:
	bash infra/lint.sh

test-infra:
	@$(VENV)/bin/python -c "import pytest, moto, boto3, samtranslator" 2>/dev/null \
	  || $(VENV)/bin/python -m pip install --quiet -r tests/requirements.txt
	PYTHONDONTWRITEBYTECODE=1 $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/infra

# The PyPI cargo-lambda package installs the `cargo-lambda` binary (called as
# `cargo-lambda lambda ...`, the form cargo uses for `cargo lambda ...`); its
# virtualenv also provides zig (ziglang) for cross-compiling to aarch64.
package: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/cargo-lambda lambda build --release --arm64 --output-format zip $(LAMBDA_BUILD_FLAGS)
	@for zip in target/lambda/*/bootstrap.zip; do \
	  [ -f "$$zip" ] || { echo "no zip found under target/lambda/" >&2; exit 1; }; \
	  printf '%-45s %12s bytes\n' "$$zip" "$$(wc -c < "$$zip" | tr -d ' ')"; \
	done
