// RFC 9162 Merkle proofs, verified in the resident's own browser.
//
// A port of transparency-dev/merkle proof/verify.go (Apache-2.0): the same decomposition of a
// proof into an inner part and a right border, so it accepts exactly what that verifier accepts
// (tested against its test vectors in tests/js/). Tree sizes and indices are BigInt, because the
// vectors use the full uint64 range and JavaScript's bit operators stop at 32 bits.
//
// Hashing is passed in (``sha256``: async Uint8Array -> Uint8Array), so the same code runs with
// WebCrypto or with the vendored SHA-256 where WebCrypto is missing (plain http on a LAN).

export const HASH_SIZE = 32;
const U64_MAX = (1n << 64n) - 1n;

export class ProofError extends Error {}

export function hexToBytes(hex) {
  const clean = String(hex).replace(/\s+/g, "").toLowerCase();
  if (!/^([0-9a-f]{2})*$/.test(clean)) throw new ProofError("not hexadecimal");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function u64(name, value) {
  let v;
  try {
    v = BigInt(value);
  } catch {
    throw new ProofError(`${name} is not an integer`);
  }
  if (v < 0n || v > U64_MAX) throw new ProofError(`${name} is out of range`);
  return v;
}

function bitLength(x) {
  return x === 0n ? 0 : x.toString(2).length;
}

function onesCount(x) {
  return x.toString(2).replace(/0/g, "").length;
}

function trailingZeros(x) {
  if (x === 0n) return 64;
  let n = 0;
  while (((x >> BigInt(n)) & 1n) === 0n) n++;
  return n;
}

export function makeHasher(sha256) {
  return {
    leaf: (data) => sha256(concat(Uint8Array.of(0), data)),
    children: (left, right) => sha256(concat(Uint8Array.of(1), left, right)),
  };
}

function checkHashes(proof) {
  for (const h of proof) {
    if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE) throw new ProofError("proof element has the wrong size");
  }
}

// innerProofSize and decompInclProof of verify.go.
function decompInclProof(index, size) {
  const inner = bitLength(index ^ (size - 1n));
  const border = onesCount(index >> BigInt(inner));
  return [inner, border];
}

async function chainInner(h, seed, proof, index) {
  for (let i = 0; i < proof.length; i++) {
    seed = ((index >> BigInt(i)) & 1n) === 0n ? await h.children(seed, proof[i]) : await h.children(proof[i], seed);
  }
  return seed;
}

async function chainInnerRight(h, seed, proof, index) {
  for (let i = 0; i < proof.length; i++) {
    if (((index >> BigInt(i)) & 1n) === 1n) seed = await h.children(proof[i], seed);
  }
  return seed;
}

async function chainBorderRight(h, seed, proof) {
  for (const p of proof) seed = await h.children(p, seed);
  return seed;
}

function verifyMatch(calculated, expected, what) {
  if (!equalBytes(calculated, expected)) throw new ProofError(`calculated ${what} does not match`);
}

export async function rootFromInclusionProof(h, index, size, leafHash, proof) {
  index = u64("index", index);
  size = u64("size", size);
  if (index >= size) throw new ProofError("index is beyond the tree size");
  if (!(leafHash instanceof Uint8Array) || leafHash.length !== HASH_SIZE) throw new ProofError("leaf hash has the wrong size");
  checkHashes(proof);
  const [inner, border] = decompInclProof(index, size);
  if (proof.length !== inner + border) throw new ProofError("wrong proof size");
  const res = await chainInner(h, leafHash, proof.slice(0, inner), index);
  return chainBorderRight(h, res, proof.slice(inner));
}

export async function verifyInclusion(h, index, size, leafHash, proof, root) {
  const calculated = await rootFromInclusionProof(h, index, size, leafHash, proof);
  verifyMatch(calculated, root, "root");
}

export async function verifyConsistency(h, size1, size2, proof, root1, root2) {
  size1 = u64("size1", size1);
  size2 = u64("size2", size2);
  checkHashes(proof);
  if (size2 < size1) throw new ProofError("size2 is smaller than size1");
  // Nothing is proved about an empty tree: an old sheet always has at least one entry.
  if (size1 === 0n) throw new ProofError("a consistency proof from an empty tree is meaningless");
  if (size1 === size2) {
    if (proof.length > 0) throw new ProofError("size1 = size2, but the proof is not empty");
    verifyMatch(root1, root2, "root");
    return;
  }
  if (proof.length === 0) throw new ProofError("empty proof");
  let [inner, border] = decompInclProof(size1 - 1n, size2);
  const shift = trailingZeros(size1);
  inner -= shift;
  let seed = proof[0];
  let start = 1;
  if (size1 === 1n << BigInt(shift)) {
    seed = root1;
    start = 0;
  }
  if (proof.length !== start + inner + border) throw new ProofError("wrong proof size");
  const rest = proof.slice(start);
  const mask = (size1 - 1n) >> BigInt(shift);
  let hash1 = await chainInnerRight(h, seed, rest.slice(0, inner), mask);
  hash1 = await chainBorderRight(h, hash1, rest.slice(inner));
  verifyMatch(hash1, root1, "old root");
  let hash2 = await chainInner(h, seed, rest.slice(0, inner), mask);
  hash2 = await chainBorderRight(h, hash2, rest.slice(inner));
  verifyMatch(hash2, root2, "new root");
}
