# Infrastructure targets; the main Makefile includes this file.
#   make lint        cfn-lint + checkov on infra/*.yaml (own virtualenv .venv-lint)
#   make test-infra  deploy the templates into a local moto server (pytest)
#   make deploy      deploy everything (below); make destroy removes it
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

# One command to deploy, one to remove (infra/deploy.py; boto3 from .venv, credentials
# and region from the standard AWS environment):
#   make deploy SOURCE=photos TARGETS='photos-usw2@us-west-2,photos-euw1@eu-west-1' [STACK=s3fanout] [DEPLOY_ARGS=...]
#   make backfill [STACK=...]   the first backfill of the objects the source already holds
#   make destroy [STACK=...]    stacks and wiring removed, every bucket and object kept
STACK ?= s3fanout
DEPLOY := $(VENV)/bin/python infra/deploy.py

.PHONY: deploy destroy backfill

deploy: setup
	@test -n "$(SOURCE)" -a -n "$(TARGETS)" || { echo "usage: make deploy SOURCE=bucket TARGETS='bucket@region,...' [STACK=name] [DEPLOY_ARGS='--build ...']" >&2; exit 2; }
	$(DEPLOY) deploy --stack '$(STACK)' --source '$(SOURCE)' --targets '$(TARGETS)' $(DEPLOY_ARGS)

destroy: setup
	$(DEPLOY) destroy --stack '$(STACK)' $(DESTROY_ARGS)

backfill: setup
	$(DEPLOY) backfill --stack '$(STACK)' $(BACKFILL_ARGS)
