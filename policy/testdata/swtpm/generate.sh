#!/bin/sh
# Regenerates the swtpm fixtures in this directory (run from anywhere; needs swtpm and
# tpm2-tools). Starts a private swtpm on PORT and PORT+1, and stops it again.
#
# Every fixture is what a real TPM (libtpms) produced: public areas and names, a quote,
# a certification, NV public areas and an NV certification, and trial-session policy
# digests. The unit tests in policy/src/swtpm_fixtures.rs check this crate against them.
set -eu
PORT=${PORT:-47321}
OUT=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'if [ -f "$WORK/pid" ]; then kill "$(cat "$WORK/pid")"; fi; rm -rf "$WORK"' EXIT

mkdir "$WORK/state"
swtpm socket --tpm2 --server type=tcp,port="$PORT" --ctrl type=tcp,port=$((PORT + 1)) \
    --tpmstate dir="$WORK/state" --flags not-need-init,startup-clear \
    --daemon --pid file="$WORK/pid" --log file="$WORK/log",level=1
sleep 0.5
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$PORT"
cd "$WORK"

# Trial-session policy digests, while PCRs 0..=23 hold their reset values
# (0, 2, 4, 7, 9, 16, 23 are all zero on a fresh swtpm).
trial() { tpm2_startauthsession -S s.ctx; "$@"; tpm2_flushcontext s.ctx; }
trial tpm2_policypcr -S s.ctx -l sha256:23 -L "$OUT/policy_pcr23.bin"
trial sh -c 'tpm2_policypcr -S s.ctx -l sha256:0,2,4,7,9 -L /dev/null &&
    tpm2_policycommandcode -S s.ctx TPM2_CC_Sign -L "$0"' "$OUT/policy_platform_sign.bin"
trial tpm2_policyauthvalue -S s.ctx -L "$OUT/policy_authvalue.bin"
tpm2_flushcontext -t

# Keys: EKs (RSA-2048 L-1 and ECC P-256 L-2), an ECC P-256 AK, a statement-like key whose
# authPolicy is PolicyPCR(0,2,4,7,9) then PolicyCommandCode(Sign).
tpm2_createek -c ek_rsa.ctx -G rsa -u "$OUT/ek_rsa.pub"
tpm2_readpublic -c ek_rsa.ctx -n "$OUT/ek_rsa.name" -f pem -o "$OUT/ek_rsa.pem" >/dev/null
tpm2_flushcontext -t
tpm2_createek -c ek_ecc.ctx -G ecc -u "$OUT/ek_ecc.pub"
tpm2_readpublic -c ek_ecc.ctx -n "$OUT/ek_ecc.name" -f pem -o "$OUT/ek_ecc.pem" >/dev/null
tpm2_flushcontext -t
tpm2_createak -C ek_ecc.ctx -c ak.ctx -G ecc -g sha256 -s ecdsa -u "$OUT/ak.pub" \
    -n "$OUT/ak.name" -r ak.priv
tpm2_flushcontext -t
tpm2_readpublic -c ak.ctx -f pem -o "$OUT/ak.pem" >/dev/null
tpm2_flushcontext -t
tpm2_flushcontext -s
tpm2_evictcontrol -C o -c ak.ctx 0x81010002 >/dev/null
tpm2_flushcontext -t

# A storage primary with nameAlg SHA-384 on P-384 (the shape of the H-3 EK template).
tpm2_createprimary -C e -g sha384 -G ecc384:aes256cfb -c p384.ctx >/dev/null
tpm2_readpublic -c p384.ctx -n "$OUT/primary_p384.name" -o "$OUT/primary_p384.pub" >/dev/null
tpm2_flushcontext -t

tpm2_createprimary -C o -c primary.ctx -G ecc256 >/dev/null
tpm2_flushcontext -t
tpm2_create -C primary.ctx -G ecc256:ecdsa-sha256 -L "$OUT/policy_platform_sign.bin" \
    -a 'fixedtpm|fixedparent|sensitivedataorigin|sign' -u "$OUT/stmt.pub" -r stmt.priv >/dev/null
tpm2_flushcontext -t
tpm2_load -C primary.ctx -u "$OUT/stmt.pub" -r stmt.priv -c stmt.ctx -n "$OUT/stmt.name" >/dev/null
tpm2_flushcontext -t

# TPM2_Certify of the statement key by the AK (tpm2-tools 5.4 always passes the qualifying data 00ff55aa).
tpm2_certify -c stmt.ctx -C 0x81010002 -g sha256 \
    -o "$OUT/certify_attest.bin" -s "$OUT/certify_sig.bin" >/dev/null
tpm2_flushcontext -t

# A quote of PCRs 0, 16, 23 after extending 16 and 23.
tpm2_pcrextend 23:sha256=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
tpm2_pcrextend 16:sha256=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
tpm2_pcrread sha256:0,16,23 -o "$OUT/quote_pcrs.bin" >/dev/null
tpm2_quote -c 0x81010002 -l sha256:0,16,23 -q 000102030405060708090a0b0c0d0e0f \
    -m "$OUT/quote_attest.bin" -s "$OUT/quote_sig.bin" -g sha256 >/dev/null
tpm2_checkquote -u "$OUT/ak.pem" -m "$OUT/quote_attest.bin" -s "$OUT/quote_sig.bin" \
    -g sha256 -q 000102030405060708090a0b0c0d0e0f >/dev/null

# NV indices: the sealing layout of docs/protocol.md (before and after its first write would need
# the policy session; its public area as defined is enough for the name), and an ordinary
# owner-readable index certified by the AK.
tpm2_nvdefine 0x01500001 -C o -s 40 -a 'policyread|policywrite|no_da' \
    -L "$OUT/policy_pcr23.bin" >/dev/null
tpm2_nvreadpublic 0x01500001 > "$OUT/nv_sealing.yaml"
tpm2_nvdefine 0x01500002 -C o -s 8 -a 'ownerread|ownerwrite|authread|authwrite' >/dev/null
printf 'arbiter!' | tpm2_nvwrite 0x01500002 -C o -i -
tpm2_nvreadpublic 0x01500002 > "$OUT/nv_data.yaml"
tpm2_nvcertify -C 0x81010002 -g sha256 -q 6e76 -c 0x01500002 --size 8 --offset 0 \
    --attestation "$OUT/nvcertify_attest.bin" -o "$OUT/nvcertify_sig.bin" 0x01500002 >/dev/null
