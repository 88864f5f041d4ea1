# Arbiter's two commands: `make demo` (the main job on a private software TPM) and
# `make test` (every test, each against its own private swtpm). Both install the Debian
# packages they need when missing. `make container-test` runs the main job between
# containers (needs Docker with `docker compose` or docker-compose, and root for
# debootstrap the first time).

SHELL := /bin/bash
APT_PACKAGES := swtpm swtpm-tools tpm2-tools libtss2-dev pkg-config openssl python3 python3-pip systemd
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CARGO ?= cargo
# ESYS prints every TPM error response to stderr; the daemon reports them itself.
export TSS2_LOG ?= all+NONE

.PHONY: demo test deps lint bench container-test

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
	@# An independent HPKE implementation for the test that submits an input sealed by it.
	@python3 -c 'import pyhpke' 2>/dev/null || python3 -m pip install --quiet pyhpke \
	  || python3 -m pip install --quiet --user --break-system-packages pyhpke

## The main job: arbiterd on a private swtpm and two parties using the `arbiter` CLI:
## enrol, attest, create a two-party instance, submit encrypted inputs, verify the signed
## result, destroy, verify the certificate of destruction. Exits 0 only if every check passed.
demo: deps
	$(CARGO) build --locked -q -p arbiter-daemon -p arbiter-client
	client/demo/demo.sh "$${CARGO_TARGET_DIR:-target}/debug"

## Every test of the workspace, each TPM test on its own private swtpm.
test: deps
	$(CARGO) test --workspace --locked

## Formatting and lints, as CI runs them.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## TPM operations per second on swtpm, against tpm2_quote as a process; input submissions
## per second, one at a time against 32 in flight (group commit).
bench: deps
	$(CARGO) build --release --locked -p arbiter-daemon
	$(CARGO) bench --locked -p arbiter-tests --bench tpm --bench submit

## The main job between containers (packaging/container): an swtpm on an internal network,
## arbiterd, and parties holding only the `arbiter` CLI, over the compose network; then a
## daemon restart and a new attestation. Images are built from a debootstrapped base (no
## registry), with binaries built here: CONTAINER_PROFILE=debug reuses the debug build.
CONTAINER_PROFILE ?= release
container-test:
	$(CARGO) build --locked $(if $(filter release,$(CONTAINER_PROFILE)),--release) -p arbiter-daemon -p arbiter-client
	packaging/container/test.sh "$${CARGO_TARGET_DIR:-target}/$(CONTAINER_PROFILE)"
