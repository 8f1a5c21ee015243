# The two commands a new user needs: `make demo` and `make test`. Both install what they
# need (a project .venv with pinned moto and cfn-lint) and work offline afterwards.

CARGO ?= cargo
VENV := .venv
FUNCTIONS := webhook enumerator copier scheduler restorer restore-api

.PHONY: demo test venv lint unit e2e cfn-lint up bench package clean

venv:
	@bash infra/venv.sh infra/requirements.txt

## The whole backup story on the embedded local stack.
demo: venv
	$(CARGO) run --quiet -p local-stack --bin local -- demo

## Everything CI runs.
test: venv lint unit cfn-lint

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

cfn-lint: venv
	$(VENV)/bin/cfn-lint template.yaml

## The local stack in the foreground; writes .local/stack.json. Ctrl-C stops every child.
up: venv
	$(CARGO) run --quiet -p local-stack --bin local -- up

## Figures, printed (release build).
bench: venv
	$(CARGO) run --release --quiet -p local-stack --bin local -- bench

## Lambda binaries for provided.al2023 on arm64, into target/lambda/<function>/bootstrap.
package:
	@bash infra/venv.sh infra/requirements-package.txt
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/cargo-lambda lambda build --release --arm64 $(addprefix --bin ,$(FUNCTIONS))

clean:
	rm -rf .local target/lambda
