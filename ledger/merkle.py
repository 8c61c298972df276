"""RFC 9162 (Certificate Transparency v2) Merkle tree: hashing, proofs and verification.

Pure Python (hashlib only) so that the same code can run in the service, in tests and in
anyone's hands when they check a printed root. Modelled on transparency-dev/merkle:

* verifiers are a port of ``proof/verify.go`` (same accept/reject behaviour, checked against
  the project's copy of its test vectors);
* proofs are *planned* as in ``proof/proof.go`` (``Nodes`` / ``Rehash``): a plan names the
  perfect subtree nodes to fetch from storage, and ``rehash`` folds the few "ephemeral" nodes
  on the tree's right edge, so a proof never needs the whole tree in memory;
* :class:`Frontier` is the compact range ``[0, size)`` of ``compact/range.go``: O(log n)
  appends that report every perfect node they complete, which is what a database stores.

Conventions: hashes are 32-byte ``bytes``; a *leaf* everywhere below is a leaf **hash**
(``leaf_hash(document)``), never the raw document; leaf indices are 0-based.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "NodeID",
    "ProofError",
    "ProofPlan",
    "consistency_plan",
    "consistency_proof",
    "inclusion_plan",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_consistency_proof",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "root_plan",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Length in bytes of every hash (SHA-256)."""

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""Root of the empty tree, fixed by RFC 9162 as the hash of the empty string."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

NodeID = tuple[int, int]
"""``(level, index)`` of a perfect subtree: level 0 are leaves, and node ``(l, i)`` covers
leaves ``[i * 2**l, (i + 1) * 2**l)``. Only perfect subtrees have ids; they never change once
complete, which is why they are what storage keeps."""


class ProofError(ValueError):
    """A proof, or the sizes/roots/hashes presented with it, did not verify."""


# --------------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """Hash a leaf document; the 0x00 prefix keeps leaves from posing as inner nodes."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two children; the 0x01 prefix separates inner nodes from leaves."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split_point(n: int) -> int:
    """Largest power of two strictly below ``n`` (n >= 2): RFC 9162's split of the leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_root(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """Reference MTH(leaves[lo:hi]) without slicing copies; recursion depth is log2(n)."""
    n = hi - lo
    if n == 1:
        return leaves[lo]
    k = _split_point(n)
    return node_hash(_range_root(leaves, lo, lo + k), _range_root(leaves, lo + k, hi))


def root_from_leaf_hashes(leaves: Sequence[bytes]) -> bytes:
    """Reference Merkle tree hash straight from RFC 9162 section 2.1.1, for checking the rest."""
    if not leaves:
        return EMPTY_ROOT
    return _range_root(leaves, 0, len(leaves))


# --------------------------------------------------------------------------------------------
# Node-id arithmetic (compact/nodes.go)
# --------------------------------------------------------------------------------------------


def _trailing_zeros(x: int) -> int:
    """Number of trailing zero bits of ``x > 0``."""
    return (x & -x).bit_length() - 1


def _range_nodes(begin: int, end: int) -> list[NodeID]:
    """Perfect nodes covering ``[begin, end)`` minimally, left to right (compact.RangeNodes)."""
    if begin == 0:
        left, right = 0, end
    else:
        xbegin = begin - 1
        mask = (1 << ((xbegin ^ end).bit_length() - 1)) - 1
        left, right = ~xbegin & mask, end & mask
    ids: list[NodeID] = []
    pos = begin
    while left:  # Left border, lower levels first.
        level = _trailing_zeros(left)
        ids.append((level, pos >> level))
        pos += 1 << level
        left ^= 1 << level
    while right:  # Right border, upper levels first.
        level = right.bit_length() - 1
        ids.append((level, pos >> level))
        pos += 1 << level
        right ^= 1 << level
    return ids


def _check_int(name: str, value: int, *, verifying: bool = False) -> None:
    """Reject non-integers (and bools) and negatives early: sizes and indices are positions.

    Verifiers report everything as ProofError so callers need to catch only one thing.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        msg = f"{name} must be an int, got {type(value).__name__}"
        raise ProofError(msg) if verifying else TypeError(msg)
    if value < 0:
        msg = f"{name} must be >= 0, got {value}"
        raise ProofError(msg) if verifying else ValueError(msg)


# --------------------------------------------------------------------------------------------
# Proof planning (proof/proof.go)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProofPlan:
    """Which stored nodes a proof needs, and how to fold them into the proof.

    ``node_ids`` are perfect nodes only (level 0 = leaf hashes), so every one of them can be
    read from storage. ``node_ids[begin:end]`` (possibly empty) are the perfect pieces of the
    one *ephemeral* node a proof may need (an imperfect subtree on the right edge); they are
    listed lowest level first and ``rehash`` hashes them together, as ``Nodes.Rehash`` does.
    """

    kind: Literal["inclusion", "consistency", "root"]
    node_ids: list[NodeID]
    begin: int = 0
    end: int = 0

    def rehash(self, fetched: Mapping[NodeID, bytes]) -> list[bytes]:
        """Turn fetched node hashes into the final proof (``[root]`` for a root plan)."""
        hashes: list[bytes] = []
        for nid in self.node_ids:
            h = fetched.get(nid)
            if h is None:
                raise ValueError(f"missing hash for node {nid}")
            if len(h) != HASH_SIZE:
                raise ValueError(f"hash for node {nid} has {len(h)} bytes, want {HASH_SIZE}")
            hashes.append(bytes(h))
        if self.kind == "root" and not hashes:
            return [EMPTY_ROOT]
        if self.begin >= self.end:
            return hashes
        folded = hashes[self.begin]
        for h in hashes[self.begin + 1 : self.end]:
            folded = node_hash(h, folded)  # Pieces are to the left of what is folded so far.
        return [*hashes[: self.begin], folded, *hashes[self.end :]]

    def _skip_first(self) -> ProofPlan:
        """Drop the seed node, which the verifier already holds (Nodes.skipFirst)."""
        begin, end = (self.begin - 1, self.end - 1) if self.begin < self.end else (0, 0)
        return ProofPlan(self.kind, self.node_ids[1:], begin, end)


def _nodes(index: int, level: int, size: int, kind: Literal["inclusion", "consistency"]) -> ProofPlan:
    """Node ids proving that node ``(level, index)`` is in the tree of ``size`` (proof.nodes).

    The path from the node up to the "fork" (where it leaves the path to leaf ``size``) gives
    one sibling per level; above the fork the proof needs the subtree to its right, which is
    ephemeral unless perfect, and then the perfect subtrees to its left.
    """
    inner = (index ^ (size >> level)).bit_length() - 1
    fork_level, fork_index = level + inner, index >> inner
    fork_begin, fork_end = fork_index << fork_level, (fork_index + 1) << fork_level

    ids: list[NodeID] = [(level, index)]
    lvl, idx = level, index
    while lvl < fork_level:
        ids.append((lvl, idx ^ 1))
        lvl, idx = lvl + 1, idx >> 1
    len1 = len(ids)
    ids.extend(reversed(_range_nodes(fork_end, size)))  # Ephemeral node's pieces, low first.
    len2 = len(ids)
    ids.extend(reversed(_range_nodes(0, fork_begin)))  # Left of the fork, low first.
    if len1 >= len2:
        len1 = len2 = 0
    return ProofPlan(kind, ids, len1, len2)


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """Plan the inclusion proof of leaf ``index`` in the tree of ``size`` (needs index < size)."""
    _check_int("index", index)
    _check_int("size", size)
    if index >= size:
        raise ValueError(f"index {index} out of bounds for tree size {size}")
    return _nodes(index, 0, size, "inclusion")._skip_first()


def consistency_plan(size1: int, size2: int) -> ProofPlan:
    """Plan the proof that the tree of ``size2`` extends the tree of ``size1``.

    Empty when ``size1 == size2`` or ``size1 == 0`` (nothing to prove). Note that the
    verifier, like current transparency-dev, refuses ``size1 == 0`` outright: a proof from
    the empty tree says nothing, so callers should not offer one.
    """
    _check_int("size1", size1)
    _check_int("size2", size2)
    if size1 > size2:
        raise ValueError(f"size1 {size1} > size2 {size2}")
    if size1 == size2 or size1 == 0:
        return ProofPlan("consistency", [])
    # Prove inclusion of the biggest perfect subtree ending at size1; its root is in the proof
    # unless it is the whole old tree, whose root the verifier already has.
    level = _trailing_zeros(size1)
    plan = _nodes((size1 - 1) >> level, level, size2, "consistency")
    return plan._skip_first() if size1 & (size1 - 1) == 0 else plan


def root_plan(size: int) -> ProofPlan:
    """Plan the root of the tree at any (historic) ``size`` from its perfect subtrees."""
    _check_int("size", size)
    ids = list(reversed(_range_nodes(0, size)))  # Lowest first: the root is all "ephemeral".
    return ProofPlan("root", ids, 0, len(ids))


def _check_leaves(leaves: Sequence[bytes], size: int) -> None:
    """Convenience builders need every leaf of the tree they prove against."""
    if size > len(leaves):
        raise ValueError(f"size {size} exceeds the {len(leaves)} leaves given")


def _fetch_from_leaves(leaves: Sequence[bytes], plan: ProofPlan) -> dict[NodeID, bytes]:
    """Compute the plan's perfect nodes straight from the leaves (what a DB would return)."""
    return {(lvl, idx): _range_root(leaves, idx << lvl, (idx + 1) << lvl) for lvl, idx in plan.node_ids}


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """Inclusion proof from in-memory leaf hashes (tests, small trees); uses the plan."""
    plan = inclusion_plan(index, size)
    _check_leaves(leaves, size)
    return plan.rehash(_fetch_from_leaves(leaves, plan))


def consistency_proof(leaves: Sequence[bytes], size1: int, size2: int) -> list[bytes]:
    """Consistency proof from in-memory leaf hashes (tests, small trees); uses the plan."""
    plan = consistency_plan(size1, size2)
    _check_leaves(leaves, size2)
    return plan.rehash(_fetch_from_leaves(leaves, plan))


# --------------------------------------------------------------------------------------------
# Compact range [0, size) (compact/range.go)
# --------------------------------------------------------------------------------------------


class Frontier:
    """Right edge of the tree: one perfect subtree hash per set bit of ``size``, largest first.

    Enough to append and to compute the current root in O(log n), and small enough to keep
    in one column next to the tree size.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        _check_int("size", size)
        hs = [bytes(h) for h in hashes]
        if len(hs) != size.bit_count():
            raise ValueError(f"size {size} needs {size.bit_count()} hashes, got {len(hs)}")
        for i, h in enumerate(hs):
            if len(h) != HASH_SIZE:
                raise ValueError(f"hashes[{i}] has {len(h)} bytes, want {HASH_SIZE}")
        self._size = size
        self._hashes = hs

    @property
    def size(self) -> int:
        """Number of leaves appended so far (read-only: it must agree with the hashes)."""
        return self._size

    @property
    def hashes(self) -> list[bytes]:
        """Copy of the perfect subtree hashes, largest (leftmost) first."""
        return list(self._hashes)

    def node_ids(self) -> list[NodeID]:
        """Ids of ``hashes`` in the same order, so a frontier can be rebuilt from stored nodes."""
        return _range_nodes(0, self.size)

    def append(self, leaf: bytes) -> list[tuple[NodeID, bytes]]:
        """Append a leaf *hash*; return the perfect nodes (level >= 1) it completes, low first.

        Amortised one node per append and at most log2(size) -- exactly the rows to store.
        """
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"leaf hash has {len(leaf)} bytes, want {HASH_SIZE}")
        seed = bytes(leaf)
        index, level = self.size, 0
        completed: list[tuple[NodeID, bytes]] = []
        while index & 1:  # Each trailing 1 bit of size is a left sibling waiting for us.
            seed = node_hash(self._hashes.pop(), seed)
            index >>= 1
            level += 1
            completed.append(((level, index), seed))
        self._hashes.append(seed)
        self._size += 1
        return completed

    def root(self) -> bytes:
        """Root of the tree of ``size`` leaves: fold the right edge from the smallest subtree."""
        if not self._hashes:
            return EMPTY_ROOT
        h = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            h = node_hash(left, h)
        return h

    def to_bytes(self) -> bytes:
        """Concatenated hashes, for one bytea column (the size is stored beside it)."""
        return b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, size: int, blob: bytes) -> Frontier:
        """Inverse of :meth:`to_bytes`; refuses a blob whose length does not fit ``size``."""
        _check_int("size", size)
        want = size.bit_count() * HASH_SIZE
        if len(blob) != want:
            raise ValueError(f"frontier blob for size {size} must be {want} bytes, got {len(blob)}")
        blob = bytes(blob)
        return cls(size, [blob[i : i + HASH_SIZE] for i in range(0, want, HASH_SIZE)])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frontier):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # Mutable: not hashable.

    def __repr__(self) -> str:
        return f"Frontier(size={self.size}, root={self.root().hex()})"


# --------------------------------------------------------------------------------------------
# Verification (proof/verify.go)
# --------------------------------------------------------------------------------------------


def _check_proof(proof: Sequence[bytes]) -> list[bytes]:
    """Every proof element must be a 32-byte hash (stricter than Go, same accepted set)."""
    out: list[bytes] = []
    for i, h in enumerate(proof):
        if not isinstance(h, bytes | bytearray):
            raise ProofError(f"proof[{i}] is {type(h).__name__}, want bytes")
        if len(h) != HASH_SIZE:
            raise ProofError(f"proof[{i}] has {len(h)} bytes, want {HASH_SIZE}")
        out.append(bytes(h))
    return out


def _verify_match(calculated: bytes, expected: bytes) -> None:
    """Final comparison of a recomputed root with the one the caller trusts."""
    if calculated != expected:
        shown = expected.hex() if isinstance(expected, bytes | bytearray) else repr(expected)
        raise ProofError(f"calculated root {calculated.hex()} does not match expected root {shown}")


def _decomp_incl_proof(index: int, size: int) -> tuple[int, int]:
    """Split an inclusion proof's length into (inner, border) parts, where the paths to
    ``index`` and ``size - 1`` diverge."""
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Climb from ``seed`` at ``index``, taking each proof hash as left or right sibling."""
    for i, h in enumerate(proof):
        seed = node_hash(seed, h) if (index >> i) & 1 == 0 else node_hash(h, seed)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Like _chain_inner but only left siblings: the same subtree at its earlier size."""
    for i, h in enumerate(proof):
        if (index >> i) & 1:
            seed = node_hash(h, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    """Climb the right border, where every proof hash is a left sibling."""
    for h in proof:
        seed = node_hash(h, seed)
    return seed


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Root implied by ``leaf`` (a leaf hash) at ``index`` with ``proof``; raises ProofError."""
    _check_int("index", index, verifying=True)
    _check_int("size", size, verifying=True)
    if index >= size:
        raise ProofError(f"index is beyond size: {index} >= {size}")
    if not isinstance(leaf, bytes | bytearray):
        raise ProofError(f"leaf hash is {type(leaf).__name__}, want bytes")
    if len(leaf) != HASH_SIZE:
        raise ProofError(f"leaf hash has unexpected size {len(leaf)}, want {HASH_SIZE}")
    inner, border = _decomp_incl_proof(index, size)
    if len(proof) != inner + border:
        raise ProofError(f"wrong proof size {len(proof)}, want {inner + border}")
    hashes = _check_proof(proof)
    res = _chain_inner(bytes(leaf), hashes[:inner], index)
    return _chain_border_right(res, hashes[inner:])


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf`` (a leaf hash) is entry ``index`` of the tree of ``size`` with ``root``."""
    _verify_match(root_from_inclusion_proof(leaf, index, size, proof), root)


def root_from_consistency_proof(size1: int, size2: int, proof: Sequence[bytes], root1: bytes) -> bytes:
    """Root of the tree of ``size2`` implied by ``root1`` and ``proof``, after checking that the
    proof also reproduces ``root1``; raises ProofError. Requires 0 < size1 <= size2."""
    _check_int("size1", size1, verifying=True)
    _check_int("size2", size2, verifying=True)
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) < size1 ({size1})")
    if size1 == 0:
        raise ProofError("consistency proof from empty tree is meaningless")
    if size1 == size2:
        if len(proof) > 0:
            raise ProofError("size1 == size2, but proof is not empty")
        return root1
    if len(proof) == 0:
        raise ProofError("empty proof")

    inner, border = _decomp_incl_proof(size1 - 1, size2)
    shift = _trailing_zeros(size1)
    inner -= shift  # shift < inner because size1 < size2.

    # The proof starts with the root of the biggest perfect subtree ending at size1, unless
    # that subtree is the whole old tree, whose root the verifier already has.
    start = 0 if size1 == 1 << shift else 1
    if len(proof) != start + inner + border:
        raise ProofError(f"wrong proof size {len(proof)}, want {start + inner + border}")
    hashes = _check_proof(proof)
    seed = bytes(root1) if start == 0 else hashes[0]
    hashes = hashes[start:]  # Now a suffix of the inclusion proof of entry size1 - 1.

    mask = (size1 - 1) >> shift  # Chain from level `shift`.
    hash1 = _chain_inner_right(seed, hashes[:inner], mask)
    hash1 = _chain_border_right(hash1, hashes[inner:])
    _verify_match(hash1, root1)

    hash2 = _chain_inner(seed, hashes[:inner], mask)
    return _chain_border_right(hash2, hashes[inner:])


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check that the tree of ``size2`` with ``root2`` extends the tree of ``size1`` with ``root1``."""
    _verify_match(root_from_consistency_proof(size1, size2, proof, root1), root2)
