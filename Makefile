# Arbiter's two commands: `make demo` (the main job on a private software TPM) and
# `make test` (every test, each against its own private swtpm). Both install the Debian
# packages they need when missing.

SHELL := /bin/bash
APT_PACKAGES := swtpm swtpm-tools tpm2-tools libtss2-dev pkg-config openssl
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CARGO ?= cargo
# ESYS prints every TPM error response to stderr; the daemon reports them itself.
export TSS2_LOG ?= all+NONE

.PHONY: demo test deps lint bench

## Install the system packages Arbiter needs (Debian/Ubuntu).
deps:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)"; exit 1; }
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update && $(SUDO) apt-get install -y $$missing; \
	fi
	@# An independent JOSE implementation for the tests that check signed statements.
	@python3 -c 'import jwcrypto' 2>/dev/null || python3 -m pip install --quiet jwcrypto \
	  || { $(SUDO) apt-get install -y python3-jwcrypto; }

## The main job: a private swtpm, the TPM layer end to end, checked by tpm2_checkquote.
demo: deps
	$(CARGO) run --locked -q -p arbiter-daemon --bin arbiterd -- \
	  tpm-selftest --dev-swtpm --out target/demo

## Every test of the workspace, each TPM test on its own private swtpm.
test: deps
	$(CARGO) test --workspace --locked

## Formatting and lints, as CI runs them.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## TPM operations per second on swtpm, against tpm2_quote as a process.
bench: deps
	$(CARGO) bench --locked -p arbiter-tests --bench tpm
