//! Quote binding (docs/protocol.md): the RFC 9162 (Certificate Transparency v2) Merkle tree whose
//! root is a quote's `qualifyingData`, one leaf per request the quote serves. Leaf hash
//! `SHA-256(0x00 || leaf)`, node hash `SHA-256(0x01 || left || right)`, the split at the
//! largest power of two below the size (RFC 9162 §2.1.1), inclusion proofs (§2.1.3). The
//! daemon builds trees and proofs; verifiers check a proof for their own leaf.

use serde_json::{Value, json};

use crate::Error;
use crate::error::MerkleError;
use crate::tpm::hash::sha256;

/// The leaf of one attestation request: `JCS({"nonce": hex, "instance_id": id or null,
/// "tls_spki_sha256": hex})`.
pub fn binding_leaf(
    nonce_hex: &str,
    instance_id: Option<&str>,
    tls_spki_sha256_hex: &str,
) -> Vec<u8> {
    let leaf = json!({
        "nonce": nonce_hex,
        "instance_id": instance_id.map_or(Value::Null, |id| Value::String(id.to_owned())),
        "tls_spki_sha256": tls_spki_sha256_hex,
    });
    crate::jcs::to_vec(&leaf)
}

/// `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    sha256(&[&[0x00], leaf])
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    sha256(&[&[0x01], left, right])
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The tree head of leaves given by their hashes; SHA-256 of the empty string for none.
pub fn root_of_hashes(hashes: &[[u8; 32]]) -> [u8; 32] {
    match hashes {
        [] => sha256(&[]),
        [one] => *one,
        _ => {
            let (left, right) = hashes.split_at(split(hashes.len()));
            node_hash(&root_of_hashes(left), &root_of_hashes(right))
        }
    }
}

/// The tree head (`MTH`) of `leaves` (the leaves' bytes, hashed here).
pub fn root<L: AsRef<[u8]>>(leaves: &[L]) -> [u8; 32] {
    let hashes: Vec<[u8; 32]> = leaves.iter().map(|l| leaf_hash(l.as_ref())).collect();
    root_of_hashes(&hashes)
}

fn path(index: usize, hashes: &[[u8; 32]], out: &mut Vec<[u8; 32]>) {
    if hashes.len() <= 1 {
        return;
    }
    let (left, right) = hashes.split_at(split(hashes.len()));
    if index < left.len() {
        path(index, left, out);
        out.push(root_of_hashes(right));
    } else {
        path(index - left.len(), right, out);
        out.push(root_of_hashes(left));
    }
}

/// The inclusion proof (`PATH`, RFC 9162 §2.1.3.1) of leaf `index` among `leaves`,
/// from the leaf's sibling up to the root's children. Empty for a one-leaf tree.
///
/// # Errors
/// `Merkle(IndexOutOfRange)` when `index` is not below the number of leaves.
pub fn inclusion_proof<L: AsRef<[u8]>>(leaves: &[L], index: usize) -> Result<Vec<[u8; 32]>, Error> {
    let hashes: Vec<[u8; 32]> = leaves.iter().map(|l| leaf_hash(l.as_ref())).collect();
    inclusion_proof_of_hashes(&hashes, index)
}

/// As [`inclusion_proof`], for leaves given by their hashes.
///
/// # Errors
/// `Merkle(IndexOutOfRange)` when `index` is not below the number of leaves.
pub fn inclusion_proof_of_hashes(
    hashes: &[[u8; 32]],
    index: usize,
) -> Result<Vec<[u8; 32]>, Error> {
    if index >= hashes.len() {
        return Err(Error::Merkle(MerkleError::IndexOutOfRange {
            index: index as u64,
            tree_size: hashes.len() as u64,
        }));
    }
    let mut out = Vec::new();
    path(index, hashes, &mut out);
    Ok(out)
}

/// The tree head and the inclusion proof of every leaf, for leaves given by their hashes:
/// the same as [`root_of_hashes`] and [`inclusion_proof_of_hashes`] for each index, but
/// each node hashed once (n − 1 node hashes for the whole batch, not about n per proof).
/// The root of no leaves is SHA-256 of the empty string, with no proofs.
pub fn all_inclusion_proofs(hashes: &[[u8; 32]]) -> ([u8; 32], Vec<Vec<[u8; 32]>>) {
    let mut proofs = vec![Vec::new(); hashes.len()];
    if hashes.is_empty() {
        return (sha256(&[]), proofs);
    }
    let root = fill_proofs(hashes, &mut proofs);
    (root, proofs)
}

/// The head of the subtree over `hashes`, after appending to each leaf's proof the
/// siblings within it (deepest first, as `PATH` lists them).
fn fill_proofs(hashes: &[[u8; 32]], proofs: &mut [Vec<[u8; 32]>]) -> [u8; 32] {
    if let [one] = hashes {
        return *one;
    }
    let k = split(hashes.len());
    let (left, right) = hashes.split_at(k);
    let (left_proofs, right_proofs) = proofs.split_at_mut(k);
    let left_head = fill_proofs(left, left_proofs);
    let right_head = fill_proofs(right, right_proofs);
    for proof in left_proofs {
        proof.push(right_head);
    }
    for proof in right_proofs {
        proof.push(left_head);
    }
    node_hash(&left_head, &right_head)
}

/// Checks that `leaf` (its bytes) is leaf `index` of the tree of `tree_size` leaves whose
/// head is `root`, by the inclusion proof `proof` (RFC 9162 §2.1.3.2).
///
/// What this proves is that the leaf is included under `root`. As in RFC 9162, the tree
/// size is not itself authenticated by the root (a log signs it beside the root); here the
/// root is the quote's `qualifyingData`, and the size only shapes the path.
///
/// # Errors
/// `Merkle(IndexOutOfRange)`, `Merkle(ProofLength)` for a proof of the wrong length,
/// `Merkle(RootMismatch)` when the proof does not lead to `root`.
pub fn verify_inclusion(
    leaf: &[u8],
    index: u64,
    tree_size: u64,
    proof: &[[u8; 32]],
    root: &[u8; 32],
) -> Result<(), Error> {
    verify_inclusion_of_hash(&leaf_hash(leaf), index, tree_size, proof, root)
}

/// As [`verify_inclusion`], for a leaf given by its hash.
///
/// # Errors
/// As [`verify_inclusion`].
pub fn verify_inclusion_of_hash(
    leaf_hash: &[u8; 32],
    index: u64,
    tree_size: u64,
    proof: &[[u8; 32]],
    root: &[u8; 32],
) -> Result<(), Error> {
    if index >= tree_size {
        return Err(Error::Merkle(MerkleError::IndexOutOfRange {
            index,
            tree_size,
        }));
    }
    let expected = expected_proof_len(index, tree_size);
    if proof.len() != expected {
        return Err(Error::Merkle(MerkleError::ProofLength {
            expected,
            found: proof.len(),
        }));
    }
    let (mut fn_, mut sn) = (index, tree_size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            // Unreachable with the length check above; kept as RFC 9162 states it.
            return Err(Error::Merkle(MerkleError::ProofLength {
                expected,
                found: proof.len(),
            }));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn == 0 && r == *root {
        Ok(())
    } else {
        Err(Error::Merkle(MerkleError::RootMismatch))
    }
}

/// The length of the inclusion proof of leaf `index` in a tree of `tree_size` leaves.
fn expected_proof_len(index: u64, tree_size: u64) -> usize {
    // RFC 9162 §2.1.3.2 consumes one proof element per step until `sn` reaches 0, with
    // the inner loop shifting past the right edge; count those steps.
    let (mut fn_, mut sn) = (index, tree_size.saturating_sub(1));
    let mut len = 0;
    while sn != 0 {
        if fn_ & 1 == 0 && fn_ == sn {
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        }
        fn_ >>= 1;
        sn >>= 1;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 6962 / Certificate Transparency reference leaves (transparency-dev/merkle
    /// `testonly`).
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    /// Their tree heads for sizes 0..=8.
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn leaves() -> Vec<Vec<u8>> {
        LEAVES.iter().map(|l| hex::decode(l).unwrap()).collect()
    }

    fn h(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn roots_match_the_reference_tree_heads() {
        let leaves = leaves();
        for (n, expected) in ROOTS.iter().enumerate() {
            assert_eq!(hex::encode(root(&leaves[..n])), *expected, "size {n}");
        }
        assert_eq!(hex::encode(leaf_hash(b"")), ROOTS[1]);
        assert_eq!(node_hash(&leaf_hash(b""), &leaf_hash(&[0])), h(ROOTS[2]));
    }

    #[test]
    fn inclusion_proofs_match_the_reference() {
        let leaves = leaves();
        let p0 = inclusion_proof(&leaves, 0).unwrap();
        assert_eq!(
            p0,
            [
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ]
        );
        let p5 = inclusion_proof(&leaves, 5).unwrap();
        assert_eq!(
            p5,
            [
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ]
        );
        let root8 = h(ROOTS[8]);
        verify_inclusion(&leaves[0], 0, 8, &p0, &root8).unwrap();
        verify_inclusion(&leaves[5], 5, 8, &p5, &root8).unwrap();
    }

    #[test]
    fn every_proof_verifies_and_every_tampering_fails() {
        let leaves: Vec<Vec<u8>> = (0u8..37).map(|i| vec![i, i.wrapping_mul(7)]).collect();
        for n in 1..=leaves.len() {
            let tree = &leaves[..n];
            let head = root(tree);
            for i in 0..n {
                let proof = inclusion_proof(tree, i).unwrap();
                let (iu, nu) = (i as u64, n as u64);
                assert_eq!(proof.len(), expected_proof_len(iu, nu));
                verify_inclusion(&tree[i], iu, nu, &proof, &head).unwrap();
                // Another leaf's bytes.
                let other = &leaves[(i + 1) % leaves.len()];
                assert!(verify_inclusion(other, iu, nu, &proof, &head).is_err());
                // Another index or size.
                if n > 1 {
                    let j = (i + 1) % n;
                    assert!(verify_inclusion(&tree[i], j as u64, nu, &proof, &head).is_err());
                }
                // (A different tree size can verify when it gives the path the same
                // shape: the size is not bound by the root, only the leaf's inclusion
                // is, which is what the quote binding needs.)
                // A tampered proof element or root.
                for k in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[k][0] ^= 1;
                    assert_eq!(
                        verify_inclusion(&tree[i], iu, nu, &bad, &head),
                        Err(Error::Merkle(MerkleError::RootMismatch))
                    );
                }
                let mut bad_root = head;
                bad_root[31] ^= 1;
                assert!(verify_inclusion(&tree[i], iu, nu, &proof, &bad_root).is_err());
                // A proof one element too long or too short.
                let mut long = proof.clone();
                long.push([0; 32]);
                assert!(matches!(
                    verify_inclusion(&tree[i], iu, nu, &long, &head),
                    Err(Error::Merkle(MerkleError::ProofLength { .. }))
                ));
                if !proof.is_empty() {
                    assert!(matches!(
                        verify_inclusion(&tree[i], iu, nu, &proof[1..], &head),
                        Err(Error::Merkle(MerkleError::ProofLength { .. }))
                    ));
                }
            }
        }
    }

    #[test]
    fn one_leaf_trees_and_out_of_range_indices() {
        let leaf = binding_leaf("00ff", None, &"ab".repeat(32));
        assert_eq!(root(&[&leaf]), leaf_hash(&leaf));
        assert!(inclusion_proof(&[&leaf], 0).unwrap().is_empty());
        verify_inclusion(&leaf, 0, 1, &[], &leaf_hash(&leaf)).unwrap();
        assert_eq!(
            inclusion_proof(&[&leaf], 1),
            Err(Error::Merkle(MerkleError::IndexOutOfRange {
                index: 1,
                tree_size: 1
            }))
        );
        assert_eq!(
            verify_inclusion(&leaf, 0, 0, &[], &leaf_hash(&leaf)),
            Err(Error::Merkle(MerkleError::IndexOutOfRange {
                index: 0,
                tree_size: 0
            }))
        );
        assert!(inclusion_proof::<&[u8]>(&[], 0).is_err());
        // Huge sizes do not loop or overflow.
        assert!(verify_inclusion(&leaf, u64::MAX - 1, u64::MAX, &[], &[0; 32]).is_err());
    }

    #[test]
    fn binding_leaf_is_jcs() {
        let spki = "cd".repeat(32);
        assert_eq!(
            String::from_utf8(binding_leaf(
                "0a0b",
                Some("0123456789abcdef0123456789abcdef"),
                &spki
            ))
            .unwrap(),
            format!(
                r#"{{"instance_id":"0123456789abcdef0123456789abcdef","nonce":"0a0b","tls_spki_sha256":"{spki}"}}"#
            )
        );
        assert_eq!(
            String::from_utf8(binding_leaf("0a0b", None, &spki)).unwrap(),
            format!(r#"{{"instance_id":null,"nonce":"0a0b","tls_spki_sha256":"{spki}"}}"#)
        );
    }

    #[test]
    fn all_proofs_at_once_are_the_proofs_one_at_a_time() {
        for n in 0..=70usize {
            let hashes: Vec<[u8; 32]> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let (root, proofs) = all_inclusion_proofs(&hashes);
            assert_eq!(root, root_of_hashes(&hashes), "n = {n}");
            assert_eq!(proofs.len(), n);
            for (i, proof) in proofs.iter().enumerate() {
                assert_eq!(
                    proof,
                    &inclusion_proof_of_hashes(&hashes, i).unwrap(),
                    "n = {n}, i = {i}"
                );
                verify_inclusion_of_hash(&hashes[i], i as u64, n as u64, proof, &root).unwrap();
            }
        }
    }
}
