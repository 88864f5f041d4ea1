#!/usr/bin/env python3
"""The SHA-256 Authenticode digest of a PE/COFF image (an EFI binary such as the
appliance's unified kernel image), as UEFI firmware measures it into PCR 4
(EV_EFI_BOOT_SERVICES_APPLICATION) and as `sbsign`/`pesign`/`osslsigncode` compute it.

    authenticode.py FILE      # prints the digest, 64 lowercase hex characters

Per the PE/COFF specification's "Calculating the PE Image Hash": the headers without the
checksum field and the certificate table's data directory entry, then each section's raw
data in ascending file offset, then whatever follows the sections except the attribute
certificate table. Refuses a file that is not PE32/PE32+.
"""
import hashlib
import struct
import sys


def authenticode_sha256(data: bytes) -> str:
    if data[:2] != b"MZ":
        raise ValueError("not a PE image (no MZ header)")
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if data[pe:pe + 4] != b"PE\0\0":
        raise ValueError("not a PE image (no PE signature)")
    coff = pe + 4
    nsections, = struct.unpack_from("<H", data, coff + 2)
    opt_size, = struct.unpack_from("<H", data, coff + 16)
    opt = coff + 20
    magic, = struct.unpack_from("<H", data, opt)
    if magic == 0x20B:
        dd = opt + 112
    elif magic == 0x10B:
        dd = opt + 96
    else:
        raise ValueError(f"unknown optional header magic {magic:#x}")
    checksum = opt + 64
    cert_entry = dd + 4 * 8  # data directory 4: the certificate table
    size_of_headers, = struct.unpack_from("<I", data, opt + 60)
    cert_off, cert_size = struct.unpack_from("<II", data, cert_entry)
    h = hashlib.sha256()
    h.update(data[:checksum])
    h.update(data[checksum + 4:cert_entry])
    h.update(data[cert_entry + 8:size_of_headers])
    sections = []
    sec = opt + opt_size
    for i in range(nsections):
        raw_size, raw_ptr = struct.unpack_from("<II", data, sec + 40 * i + 16)
        if raw_size:
            sections.append((raw_ptr, raw_size))
    hashed = size_of_headers
    for ptr, size in sorted(sections):
        h.update(data[ptr:ptr + size])
        hashed = max(hashed, ptr + size)
    end = len(data) - (cert_size if cert_off else 0)
    if end > hashed:
        h.update(data[hashed:end])
    return h.hexdigest()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: authenticode.py FILE")
    with open(sys.argv[1], "rb") as f:
        print(authenticode_sha256(f.read()))
