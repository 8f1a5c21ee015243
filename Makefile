# The two commands a new user needs: `make demo` and `make test`. Both install what they
# need (a project .venv with pinned moto and cfn-lint) and work offline afterwards.
#
# Test tiers: `cargo test --workspace` (or `make check`, with fmt and clippy) is the fast
# tier: every in-process test, no moto, no .venv. Tests that need moto or the whole local
# stack are `#[ignore = "needs moto..."]`; `make test` runs everything, them included.

CARGO ?= cargo
VENV := .venv
FUNCTIONS := webhook enumerator copier scheduler keeper restorer restore-api

.PHONY: demo test check venv lint fast all-tests cfn-lint up bench package clean

venv:
	@bash infra/venv.sh infra/requirements.txt

## The whole backup story on the embedded local stack.
demo: venv
	$(CARGO) run --quiet -p local-stack --bin local -- demo

## Everything CI runs: lint, every test (moto and end-to-end included), cfn-lint.
test: venv lint all-tests cfn-lint

## The inner loop: fmt, clippy, the fast tier. Needs no .venv.
check: lint fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fast:
	$(CARGO) test --workspace

all-tests: venv
	$(CARGO) test --workspace -- --include-ignored

cfn-lint: venv
	$(VENV)/bin/cfn-lint template.yaml

## The local stack in the foreground, seeded like the demo and backed up once (SEED=none:
## an empty tenant; SEED=path/to/seed.json: that /admin/seed body). Writes .local/stack.json
## (every endpoint, credentials, the control API). Ctrl-C stops every child.
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
