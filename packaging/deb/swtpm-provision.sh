#!/bin/sh
# Provisions a software TPM under DIR the way arbiterd's development swtpm does
# (daemon/src/swtpm.rs): an RSA-2048 and an ECC P-384 EK with certificates in NV from a
# local CA, a platform certificate, only the SHA-256 PCR bank. Parties enrol against
# DIR/ca/swtpm-localca-rootca-cert.pem and DIR/ca/issuercert.pem.
set -eu
dir="$1"
mkdir -p "$dir/state" "$dir/ca" "$dir/ek-certs"
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
printf '%s\n' "--platform-manufacturer Arbiter" "--platform-version 2.1" \
  "--platform-model swtpm" > "$dir/swtpm-localca.options"
swtpm_setup --tpm2 --tpmstate "$dir/state" --config "$dir/swtpm_setup.conf" \
  --create-ek-cert --create-platform-cert --ecc --lock-nvram --overwrite \
  --write-ek-cert-files "$dir/ek-certs"
