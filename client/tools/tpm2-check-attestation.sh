#!/usr/bin/env bash
# Checks an Arbiter attestation with tpm2-tools and a few lines of Python, trusting no code
# of Arbiter's: the binding of the verifier's nonce (and optionally the TLS key it saw) into
# the quote's qualifying data, and the quote itself with `tpm2_checkquote`. With a firmware
# event log in the answer, `tpm2_eventlog` prints it and the PCR values it replays to.
#
#   tpm2-check-attestation.sh ANSWER.json NONCE_HEX OUT_DIR [TLS_SPKI_SHA256_HEX]
#
# ANSWER.json is the body of `GET /v1/attestation?nonce=NONCE_HEX`, for example
#   NONCE=$(openssl rand -hex 32)
#   curl --cert me.pem --key me.key -k --pinnedpubkey "sha256//<pinned TLS key>" \
#        "https://appliance:8443/v1/attestation?nonce=$NONCE" > answer.json
#
# What this does not check, and the `arbiter attest` command does: that the AK is the one
# enrolled (compare `ak.pem` with the one pinned at enrolment), the measurement log replayed
# to PCR 23, the sealing index and the statement key, and your appraisal policy (the
# reference values of the platform PCRs). See docs/protocol.md.
#
# Exit 0 only when every check passed; the files tpm2_checkquote reads stay in OUT_DIR.
set -euo pipefail

if [ $# -lt 3 ]; then
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
answer=$1 nonce=$2 out=$3 tls_spki=${4:-}
mkdir -p "$out"

# 1. The files tpm2_checkquote reads, and the binding of this nonce into the quote.
pcr_list=$(python3 - "$answer" "$nonce" "$out" "$tls_spki" <<'EOF'
import base64, hashlib, json, sys

answer, nonce, out, tls_spki = sys.argv[1], sys.argv[2].lower(), sys.argv[3], sys.argv[4].lower()
a = json.load(open(answer))

def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)

open(f"{out}/ak.pem", "w").write(a["ak"]["public_pem"])
open(f"{out}/attest.bin", "wb").write(base64.b64decode(a["quote"]["attest"]))
open(f"{out}/signature.bin", "wb").write(base64.b64decode(a["quote"]["signature"]))
pcrs = sorted((int(k), bytes.fromhex(v)) for k, v in a["quote"]["pcrs"]["sha256"].items())
open(f"{out}/pcrs.bin", "wb").write(b"".join(v for _, v in pcrs))
if a.get("firmware_log"):
    open(f"{out}/firmware_log.bin", "wb").write(base64.b64decode(a["firmware_log"]))

b = a["binding"]
leaf = b["leaf"]
if leaf["nonce"] != nonce:
    fail(f"the quote's leaf carries nonce {leaf['nonce']}, not ours")
if tls_spki and leaf["tls_spki_sha256"] != tls_spki:
    fail(f"the leaf names TLS key {leaf['tls_spki_sha256']}, not the one this connection saw")
# The leaf is the JCS (RFC 8785) of an object of hex strings and null: sorted keys, no spaces.
leaf_bytes = json.dumps(leaf, sort_keys=True, separators=(",", ":")).encode()
node = hashlib.sha256(b"\x00" + leaf_bytes).digest()
# RFC 9162 section 2.1.3.2: the inclusion proof of leaf_index in a tree of tree_size leaves.
fn, sn = b["leaf_index"], b["tree_size"] - 1
if fn > sn:
    fail("leaf_index is outside the tree")
for sibling in (bytes.fromhex(p) for p in b["proof"]):
    if sn == 0:
        fail("the inclusion proof is longer than the tree")
    if fn % 2 == 1 or fn == sn:
        node = hashlib.sha256(b"\x01" + sibling + node).digest()
        if fn % 2 == 0:
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
    else:
        node = hashlib.sha256(b"\x01" + node + sibling).digest()
    fn >>= 1
    sn >>= 1
if sn != 0 or node.hex() != b["root"]:
    fail("the nonce's leaf is not included under the quoted Merkle root")
print(f"ok: nonce bound into the quote (leaf {b['leaf_index']} of {b['tree_size']})", file=sys.stderr)
print("sha256:" + ",".join(str(i) for i, _ in pcrs))
EOF
)
root=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["binding"]["root"])' "$answer")

# 2. The quote: signed by this AK, over these PCR values, with the Merkle root as its nonce.
tpm2_checkquote -u "$out/ak.pem" -m "$out/attest.bin" -s "$out/signature.bin" \
  -f "$out/pcrs.bin" -l "$pcr_list" -g sha256 -q "$root"
echo "ok: tpm2_checkquote verified the quote over $pcr_list" >&2

# 3. The firmware event log, when the platform has one (swtpm has none).
if [ -s "$out/firmware_log.bin" ]; then
  tpm2_eventlog "$out/firmware_log.bin" > "$out/firmware_log.yaml"
  echo "ok: tpm2_eventlog parsed the firmware log ($out/firmware_log.yaml): compare its" \
    "replayed PCR values with the quoted ones in $out/pcrs.bin" >&2
else
  echo "note: no firmware event log in the answer" >&2
fi
echo "ok: AK $out/ak.pem — compare it with the AK you enrolled" >&2
