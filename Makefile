# Arbiter's two commands: `make demo` (the main job on a private software TPM) and
# `make test` (every test, each against its own private swtpm). Both install the Debian
# packages they need when missing. `make container-test` runs the main job between
# containers (needs Docker with `docker compose` or docker-compose, and root for
# debootstrap the first time).

SHELL := /bin/bash
APT_PACKAGES := swtpm swtpm-tools tpm2-tools libtss2-dev pkg-config openssl python3 python3-pip systemd dpkg-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CARGO ?= cargo
# ESYS prints every TPM error response to stderr; the daemon reports them itself.
export TSS2_LOG ?= all+NONE

.PHONY: demo test deps lint bench container-test deb package-test fleet-test reliability api-fuzz fuzz-smoke appliance-test

## Install the system packages Arbiter needs (Debian/Ubuntu); dpkg-dev: dpkg-shlibdeps for
## the .deb's library dependencies.
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

## The fleet test (docs/fleet.md): stock Keylime 7.14.3 from PyPI (tests/fleet/install-keylime.sh
## installs it once into ~/.cache/arbiter-keylime) continuously attesting three arbiterd on
## three swtpms; a platform PCR extended on one: the verifier flags that one only and its
## daemon degrades; the others stay attested while functions are registered on them.
fleet-test: deps
	$(CARGO) build --locked -q -p arbiter-daemon -p arbiter-client
	keylime_bin="$$(tests/fleet/install-keylime.sh)" && \
	  ARBITER_KEYLIME_BIN="$$keylime_bin" $(CARGO) test --locked -p arbiter-tests --test fleet -- --ignored --nocapture --test-threads=1

## Schemathesis 4.32.5 from PyPI (tests/api-fuzz/install-schemathesis.sh installs it once into
## ~/.cache/arbiter-schemathesis) against the OpenAPI document a real daemon serves, once per
## role (operator, creator, party, status reader, stranger) with that role's client
## certificate, on real functions and instances: no 5xx but 503 with Retry-After, every
## answer as the document says (docs/reliability.md). API_FUZZ_EXAMPLES cases per operation
## and phase; API_FUZZ_SEED replays a run.
API_FUZZ_EXAMPLES ?= 10
API_FUZZ_SEED ?= 1
api-fuzz: deps
	$(CARGO) build --locked -q -p arbiter-daemon
	st="$$(tests/api-fuzz/install-schemathesis.sh)" && \
	  ARBITER_SCHEMATHESIS="$$st" ARBITER_API_FUZZ_EXAMPLES=$(API_FUZZ_EXAMPLES) ARBITER_API_FUZZ_SEED=$(API_FUZZ_SEED) \
	  $(CARGO) test --locked -p arbiter-tests --test api_fuzz -- --ignored --nocapture

## A short run of every cargo-fuzz target over its seeds (fuzz/smoke.sh, fuzz/README.md):
## cargo-fuzz installed when missing, all targets built once, each run FUZZ_SMOKE_SECONDS
## (15) seconds; any crash fails. Needs libtss2-dev (the daemon_config target links the
## daemon's library), hence deps.
FUZZ_SMOKE_SECONDS ?= 15
fuzz-smoke: deps
	FUZZ_SMOKE_SECONDS=$(FUZZ_SMOKE_SECONDS) fuzz/smoke.sh

## The long reliability runs (docs/reliability.md), not part of `make test`: arbiterd
## killed with SIGKILL at 100 random moments under mixed load (`make test` runs 3), every
## promise checked after each restart. ARBITER_CRASH_SEED=N replays a run's seed. Then
## 10,000 mixed TPM operations through the daemon (`make test` runs 1,000), no transient
## object or session left in the TPM.
ARBITER_CRASH_KILLS ?= 100
ARBITER_TPM_OPS ?= 10000
reliability: deps
	$(CARGO) build --locked -q -p arbiter-daemon
	ARBITER_CRASH_KILLS=$(ARBITER_CRASH_KILLS) $(CARGO) test --locked -p arbiter-tests --test crash_consistency -- --nocapture
	ARBITER_TPM_OPS=$(ARBITER_TPM_OPS) $(CARGO) test --locked -p arbiter-tests --test security -- --nocapture mixed_tpm_work

## Formatting and lints, as CI runs them.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## TPM operations per second on swtpm, against tpm2_quote as a process; input submissions
## per second, one at a time against 32 in flight (group commit); evaluations against
## the same computation in plain Rust (docs/performance.md).
bench: deps
	$(CARGO) build --release --locked -p arbiter-daemon
	$(CARGO) bench --locked -p arbiter-tests --bench tpm --bench submit --bench evaluate

## The main job between containers (packaging/container): an swtpm on an internal network,
## arbiterd, and parties holding only the `arbiter` CLI, over the compose network; then a
## daemon restart and a new attestation. Images are built from a debootstrapped base (no
## registry), with binaries built here: CONTAINER_PROFILE=debug reuses the debug build.
CONTAINER_PROFILE ?= release
container-test:
	$(CARGO) build --locked $(if $(filter release,$(CONTAINER_PROFILE)),--release) -p arbiter-daemon -p arbiter-client
	packaging/container/test.sh "$${CARGO_TARGET_DIR:-target}/$(CONTAINER_PROFILE)"

DEB_DIR := $(or $(CARGO_TARGET_DIR),target)/deb-packages

## The Debian package `arbiter` (packaging/README.md): a release build of both binaries,
## then cargo-deb (installed when missing) -> target/deb-packages/arbiter_VERSION-1_ARCH.deb.
## Stripped: the release profile's line tables would make the binaries 150 MB.
## PACKAGE_PROFILE=debug packages the debug build instead (CI: `make test` just built it).
PACKAGE_PROFILE ?= release
DEB_PROFILE_FLAG := $(if $(filter debug,$(PACKAGE_PROFILE)),--profile dev)
deb: deps
	@command -v cargo-deb >/dev/null || $(CARGO) install cargo-deb --locked
	$(CARGO) build --locked $(if $(filter release,$(PACKAGE_PROFILE)),--release) -p arbiter-daemon -p arbiter-client
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/upgrade
	$(CARGO) deb -p arbiter-daemon --no-build --strip $(DEB_PROFILE_FLAG) --deb-revision 1 -o $(DEB_DIR)/

## The package's smoke test: a second package of the same build with a higher revision,
## then install, start, watchdog, journal, a live instance, stop, upgrade, remove and purge
## in a container with systemd as PID 1 and a software TPM (packaging/deb/smoke-test.sh).
package-test: deb
	$(CARGO) deb -p arbiter-daemon --no-build --strip --fast $(DEB_PROFILE_FLAG) --deb-revision 2 -o $(DEB_DIR)/upgrade/
	packaging/deb/smoke-test.sh $(DEB_DIR)/arbiter_*_*.deb $(DEB_DIR)/upgrade/arbiter_*_*.deb

## The appliance (docs/appliance.md; opt-in, not in `make test`, needs root): the .deb of
## APPLIANCE_PROFILE (debug by default) in a measured, verity-protected Debian image
## (packaging/appliance/build.sh), booted under qemu/OVMF with an swtpm TPM (boot.sh; KVM
## when usable, ARBITER_APPLIANCE_ACCEL=tcg forces TCG); from the host: enrol, capture the
## policy with the real firmware log, compare it with the image's reference values,
## attest, a two-party computation, a reboot, a changed command line refused with a live
## instance out of reach, the original again, and an upgrade to image version 2
## (packaging/appliance/upgrade.sh). About 13 minutes under TCG with the rootfs cached.
APPLIANCE_PROFILE ?= debug
appliance-test:
	$(MAKE) deb PACKAGE_PROFILE=$(APPLIANCE_PROFILE)
	packaging/appliance/test.sh $(DEB_DIR)/arbiter_*_*.deb "$${CARGO_TARGET_DIR:-target}/$(APPLIANCE_PROFILE)/arbiter"
