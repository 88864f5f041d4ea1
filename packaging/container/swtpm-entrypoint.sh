#!/bin/sh
# The swtpm container: on first start, provision the TPM state on the volume (EK
# certificates, RSA-2048 and ECC P-384, and a platform certificate from a private local
# CA, only the SHA-256 PCR bank, as `arbiterd run --dev-swtpm` does), then serve it on TCP
# 2321 (TPM commands) and 2322 (control channel, which can reset and power-cycle the TPM).
# Both ports listen on every address of the container: compose.yaml puts it on an internal
# network that only the daemon joins, since anyone who reaches them can reset PCR 23.
#
# The verifiers' trust anchors are $SWTPM_DIR/ca/swtpm-localca-rootca-cert.pem and
# $SWTPM_DIR/ca/issuercert.pem: hand them to the parties out of band (`arbiter enroll
# --ek-ca ...`), as a TPM vendor's CA would be.
set -eu
dir="${SWTPM_DIR:-/var/lib/swtpm}"
state="$dir/state"
if [ ! -s "$state/tpm2-00.permall" ]; then
  mkdir -p "$state" "$dir/ca" "$dir/ek-certs"
  cat > "$dir/swtpm_setup.conf" <<CONF
create_certs_tool = /usr/bin/swtpm_localca
create_certs_tool_config = $dir/swtpm-localca.conf
create_certs_tool_options = $dir/swtpm-localca.options
active_pcr_banks = sha256
CONF
  cat > "$dir/swtpm-localca.conf" <<CONF
statedir = $dir/ca
signingkey = $dir/ca/signkey.pem
issuercert = $dir/ca/issuercert.pem
certserial = $dir/ca/certserial
CONF
  printf '%s\n' '--platform-manufacturer Arbiter' '--platform-version 2.1' \
    '--platform-model swtpm' > "$dir/swtpm-localca.options"
  echo "swtpm: provisioning a new TPM state in $state"
  swtpm_setup --tpm2 --tpmstate "$state" --config "$dir/swtpm_setup.conf" \
    --create-ek-cert --create-platform-cert --ecc --lock-nvram --overwrite \
    --write-ek-cert-files "$dir/ek-certs"
fi
echo "swtpm: serving $state on TCP 2321 (commands) and 2322 (control)"
exec swtpm socket --tpm2 \
  --server type=tcp,port=2321,bindaddr=0.0.0.0 \
  --ctrl type=tcp,port=2322,bindaddr=0.0.0.0 \
  --tpmstate "dir=$state" \
  --flags not-need-init,startup-clear
