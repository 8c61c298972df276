"""Tests for ledger.merkle: upstream test vectors, known answers, exhaustive small trees, properties.

No database: proofs are planned and then fed from a brute-force dict of perfect node hashes,
which is exactly what the storage layer will do with rows.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Frontier,
    NodeID,
    ProofError,
    consistency_plan,
    consistency_proof,
    inclusion_plan,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_consistency_proof,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    root_plan,
    verify_consistency,
    verify_inclusion,
)

# Hypothesis must not leave a database folder in the shared working tree.
FAST = settings(database=None, deadline=None, max_examples=150)

# --------------------------------------------------------------------------------------------
# Shared fixtures: leaves, brute-force perfect nodes, RFC 9162 reference proofs
# --------------------------------------------------------------------------------------------

MAX_EXHAUSTIVE = 64
MAX_RANDOM = 300
LEAVES: list[bytes] = [leaf_hash(i.to_bytes(4, "big")) for i in range(512)]


def brute_perfect_nodes(leaves: Sequence[bytes]) -> dict[NodeID, bytes]:
    """Every perfect subtree hash of ``leaves``, each from the reference root of its slice."""
    out: dict[NodeID, bytes] = {}
    level = 0
    while (1 << level) <= len(leaves):
        for idx in range(len(leaves) >> level):
            out[(level, idx)] = root_from_leaf_hashes(leaves[idx << level : (idx + 1) << level])
        level += 1
    return out


NODES = brute_perfect_nodes(LEAVES)  # Perfect nodes never change, so one dict serves all sizes.
ROOTS = [root_from_leaf_hashes(LEAVES[:n]) for n in range(MAX_RANDOM + 1)]


class RFCReference:
    """RFC 9162 section 2.1.3.1 / 2.1.4.1 PATH and SUBPROOF, transcribed literally."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = leaves
        self._mth: dict[tuple[int, int], bytes] = {}

    def mth(self, lo: int, hi: int) -> bytes:
        key = (lo, hi)
        if key not in self._mth:
            self._mth[key] = root_from_leaf_hashes(self.leaves[lo:hi])
        return self._mth[key]

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = 1 << ((n - 1).bit_length() - 1)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            return [*self.subproof(m, lo, lo + k, b), self.mth(lo + k, hi)]
        return [*self.subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]


REF = RFCReference(LEAVES)


def flip(b: bytes, bit: int) -> bytes:
    """``b`` with one bit flipped."""
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# --------------------------------------------------------------------------------------------
# transparency-dev test vectors (../shared/testdata/merkle)
# --------------------------------------------------------------------------------------------

VECTOR_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "merkle"
VECTOR_FILES = sorted(p for kind in ("inclusion", "consistency") for p in (VECTOR_DIR / kind).rglob("*.json"))


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def _b64_list(values: list[str | None] | None) -> list[bytes]:
    return [_b64(v) for v in values or []]


def test_vectors_are_present() -> None:
    """Fail loudly, rather than parametrize nothing, if shared/ is not beside the repo."""
    assert len(VECTOR_FILES) > 150, VECTOR_DIR
    assert any("additional" in p.parts for p in VECTOR_FILES)
    assert any("single-entry" in p.parts for p in VECTOR_FILES)


@pytest.mark.parametrize("path", VECTOR_FILES, ids=[p.relative_to(VECTOR_DIR).as_posix() for p in VECTOR_FILES])
def test_vector(path: Path) -> None:
    """The verifier accepts exactly the vectors with wantErr false."""
    v: dict[str, Any] = json.loads(path.read_text())
    kind = path.relative_to(VECTOR_DIR).parts[0]
    if kind == "inclusion":
        args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _b64_list(v["proof"]))
        if v["wantErr"]:
            with pytest.raises(ProofError):
                verify_inclusion(*args, _b64(v["root"]))
        else:
            verify_inclusion(*args, _b64(v["root"]))
            assert root_from_inclusion_proof(*args) == _b64(v["root"])
    else:
        args2 = (v["size1"], v["size2"], _b64_list(v["proof"]), _b64(v["root1"]), _b64(v["root2"]))
        if v["wantErr"]:
            with pytest.raises(ProofError):
                verify_consistency(*args2)
        else:
            verify_consistency(*args2)


# --------------------------------------------------------------------------------------------
# Known answers (transparency-dev proof/verify_test.go, RFC 6962 reference tree)
# --------------------------------------------------------------------------------------------

STD_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
STD_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
STD_HASHES = [leaf_hash(d) for d in STD_LEAVES]

# (1-based leaf, size, proof) and (size1, size2, proof) from verify_test.go.
STD_INCLUSION = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
STD_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def test_constants_and_hashing() -> None:
    assert HASH_SIZE == 32
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert Frontier().root() == EMPTY_ROOT
    assert root_plan(0).rehash({}) == [EMPTY_ROOT]
    assert leaf_hash(b"") == STD_ROOTS[0]  # A one-leaf tree's root is its leaf hash.
    assert node_hash(STD_HASHES[0], STD_HASHES[1]) == STD_ROOTS[1]


def test_known_roots() -> None:
    """RFC 6962 reference roots for sizes 1..8, by every root-producing path."""
    nodes = brute_perfect_nodes(STD_HASHES)
    frontier = Frontier()
    for n in range(1, 9):
        frontier.append(STD_HASHES[n - 1])
        assert root_from_leaf_hashes(STD_HASHES[:n]) == STD_ROOTS[n - 1]
        assert frontier.root() == STD_ROOTS[n - 1]
        assert root_plan(n).rehash(nodes) == [STD_ROOTS[n - 1]]


@pytest.mark.parametrize(("leaf", "size", "proof"), STD_INCLUSION)
def test_known_inclusion_proofs(leaf: int, size: int, proof: list[str]) -> None:
    want = [bytes.fromhex(h) for h in proof]
    assert inclusion_proof(STD_HASHES, leaf - 1, size) == want
    verify_inclusion(STD_HASHES[leaf - 1], leaf - 1, size, want, STD_ROOTS[size - 1])


@pytest.mark.parametrize(("size1", "size2", "proof"), STD_CONSISTENCY)
def test_known_consistency_proofs(size1: int, size2: int, proof: list[str]) -> None:
    want = [bytes.fromhex(h) for h in proof]
    assert consistency_proof(STD_HASHES, size1, size2) == want
    verify_consistency(size1, size2, want, STD_ROOTS[size1 - 1], STD_ROOTS[size2 - 1])


def test_happy_path_vectors_match_generated_proofs() -> None:
    """Our planner produces byte-identical proofs to the upstream happy-path vectors."""
    seen = 0
    for path in VECTOR_FILES:
        v = json.loads(path.read_text())
        if v["desc"] != "happy path":
            continue
        seen += 1
        if "leafIdx" in v:
            assert _b64(v["leafHash"]) == STD_HASHES[v["leafIdx"]]
            got = inclusion_proof(STD_HASHES, v["leafIdx"], v["treeSize"])
        else:
            got = consistency_proof(STD_HASHES, v["size1"], v["size2"])
        assert got == _b64_list(v["proof"]), path
    assert seen >= 8


# --------------------------------------------------------------------------------------------
# Exhaustive small trees
# --------------------------------------------------------------------------------------------


def test_root_plan_every_size() -> None:
    for n in range(MAX_RANDOM + 1):
        plan = root_plan(n)
        assert plan.rehash(NODES) == [ROOTS[n]]
        assert len(plan.node_ids) == n.bit_count()


def test_inclusion_every_proof() -> None:
    """Sizes 1..64: proofs equal RFC 9162 PATH, verify, and any corruption is rejected."""
    for n in range(1, MAX_EXHAUSTIVE + 1):
        root = ROOTS[n]
        for i in range(n):
            proof = inclusion_plan(i, n).rehash(NODES)
            assert proof == REF.path(i, 0, n), (i, n)
            verify_inclusion(LEAVES[i], i, n, proof, root)
            assert root_from_inclusion_proof(LEAVES[i], i, n, proof) == root
            bit = (7 * i + 13 * n) % 256  # Vary the flipped bit across cases.
            for k in range(len(proof)):
                bad = [*proof[:k], flip(proof[k], bit), *proof[k + 1 :]]
                with pytest.raises(ProofError):
                    verify_inclusion(LEAVES[i], i, n, bad, root)
            with pytest.raises(ProofError):
                verify_inclusion(flip(LEAVES[i], bit), i, n, proof, root)
            with pytest.raises(ProofError):
                verify_inclusion(LEAVES[i], i, n, proof, flip(root, bit))
            for j in {i - 1, i + 1} & set(range(n)):  # Another position, same proof.
                with pytest.raises(ProofError):
                    verify_inclusion(LEAVES[i], j, n, proof, root)
            if proof:
                with pytest.raises(ProofError):
                    verify_inclusion(LEAVES[i], i, n, proof[:-1], root)
            with pytest.raises(ProofError):
                verify_inclusion(LEAVES[i], i, n, [*proof, root], root)


def test_consistency_every_proof() -> None:
    """All 1 <= m <= n <= 64: proofs equal RFC 9162 PROOF, verify, corruption is rejected."""
    for n in range(1, MAX_EXHAUSTIVE + 1):
        root2 = ROOTS[n]
        for m in range(1, n + 1):
            root1 = ROOTS[m]
            proof = consistency_plan(m, n).rehash(NODES)
            assert proof == (REF.subproof(m, 0, n, True) if m < n else []), (m, n)
            verify_consistency(m, n, proof, root1, root2)
            assert root_from_consistency_proof(m, n, proof, root1) == root2
            bit = (5 * m + 11 * n) % 256
            for k in range(len(proof)):
                bad = [*proof[:k], flip(proof[k], bit), *proof[k + 1 :]]
                with pytest.raises(ProofError):
                    verify_consistency(m, n, bad, root1, root2)
            with pytest.raises(ProofError):
                verify_consistency(m, n, proof, flip(root1, bit), root2)
            with pytest.raises(ProofError):
                verify_consistency(m, n, proof, root1, flip(root2, bit))
            if m < n:
                with pytest.raises(ProofError):
                    verify_consistency(m, n, proof, root2, root1)
                with pytest.raises(ProofError):
                    verify_consistency(m, n, proof[:-1], root1, root2)
                with pytest.raises(ProofError):
                    verify_consistency(m, n, [*proof, root1], root1, root2)


def test_every_bit_flip_small_trees() -> None:
    """For trees up to 8 leaves, each of the 256 bits of every hash involved matters."""
    for n in range(1, 9):
        for i in range(n):
            proof = inclusion_proof(LEAVES, i, n)
            for bit in range(256):
                for k in range(len(proof)):
                    bad = [*proof[:k], flip(proof[k], bit), *proof[k + 1 :]]
                    with pytest.raises(ProofError):
                        verify_inclusion(LEAVES[i], i, n, bad, ROOTS[n])
                with pytest.raises(ProofError):
                    verify_inclusion(flip(LEAVES[i], bit), i, n, proof, ROOTS[n])
                with pytest.raises(ProofError):
                    verify_inclusion(LEAVES[i], i, n, proof, flip(ROOTS[n], bit))
        for m in range(1, n):
            proof = consistency_proof(LEAVES, m, n)
            for bit in range(256):
                for k in range(len(proof)):
                    bad = [*proof[:k], flip(proof[k], bit), *proof[k + 1 :]]
                    with pytest.raises(ProofError):
                        verify_consistency(m, n, bad, ROOTS[m], ROOTS[n])
                with pytest.raises(ProofError):
                    verify_consistency(m, n, proof, flip(ROOTS[m], bit), ROOTS[n])
                with pytest.raises(ProofError):
                    verify_consistency(m, n, proof, ROOTS[m], flip(ROOTS[n], bit))


def test_convenience_functions_match_plans() -> None:
    for n in range(1, 33):
        for i in range(n):
            assert inclusion_proof(LEAVES[:n], i, n) == inclusion_plan(i, n).rehash(NODES)
        for m in range(0, n + 1):
            assert consistency_proof(LEAVES[:n], m, n) == consistency_plan(m, n).rehash(NODES)


def test_frontier_matches_reference_and_emits_every_perfect_node_once() -> None:
    n = 2 * MAX_EXHAUSTIVE + 1
    frontier = Frontier()
    emitted: dict[NodeID, bytes] = {}
    for size in range(1, n + 1):
        new = frontier.append(LEAVES[size - 1])
        assert len(new) <= (size - 1).bit_length()
        for nid, h in new:
            assert nid not in emitted, nid
            assert nid[0] >= 1
            emitted[nid] = h
        assert frontier.size == size
        assert frontier.root() == ROOTS[size]
        # Emitted so far == all perfect nodes (level >= 1) of the tree of this size.
        want = {nid: h for nid, h in NODES.items() if nid[0] >= 1 and (nid[1] + 1) << nid[0] <= size}
        assert emitted == want
        # The frontier's own hashes are the perfect nodes on the right edge.
        assert [NODES[nid] for nid in frontier.node_ids()] == frontier.hashes
        blob = frontier.to_bytes()
        assert len(blob) == HASH_SIZE * size.bit_count()
        again = Frontier.from_bytes(size, blob)
        assert again == frontier
        assert again.root() == frontier.root()
    assert sum(1 for nid in emitted) == n - n.bit_count()  # Amortised < 1 node per append.


def test_frontier_resumes_from_storage() -> None:
    """A frontier rebuilt from bytes keeps appending exactly like the original."""
    a = Frontier()
    for leaf in LEAVES[:37]:
        a.append(leaf)
    b = Frontier.from_bytes(37, a.to_bytes())
    for leaf in LEAVES[37:100]:
        assert a.append(leaf) == b.append(leaf)
    assert b.root() == ROOTS[100]
    assert Frontier(0).to_bytes() == b""
    assert Frontier.from_bytes(0, b"") == Frontier()


# --------------------------------------------------------------------------------------------
# Properties on larger / random trees
# --------------------------------------------------------------------------------------------


@FAST
@given(data=st.data(), n=st.integers(1, MAX_RANDOM))
def test_random_inclusion_any_bit_flip_fails(data: st.DataObject, n: int) -> None:
    i = data.draw(st.integers(0, n - 1))
    proof = inclusion_plan(i, n).rehash(NODES)
    verify_inclusion(LEAVES[i], i, n, proof, ROOTS[n])
    leaf, root = LEAVES[i], ROOTS[n]
    target = data.draw(st.integers(-2, len(proof) - 1))  # -2: leaf, -1: root, else proof[k].
    bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1))
    if target == -2:
        leaf = flip(leaf, bit)
    elif target == -1:
        root = flip(root, bit)
    else:
        proof[target] = flip(proof[target], bit)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, i, n, proof, root)


@FAST
@given(data=st.data(), n=st.integers(2, MAX_RANDOM))
def test_random_consistency_any_bit_flip_fails(data: st.DataObject, n: int) -> None:
    m = data.draw(st.integers(1, n - 1))
    proof = consistency_plan(m, n).rehash(NODES)
    assert proof == REF.subproof(m, 0, n, True)
    verify_consistency(m, n, proof, ROOTS[m], ROOTS[n])
    root1, root2 = ROOTS[m], ROOTS[n]
    target = data.draw(st.integers(-2, len(proof) - 1))
    bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1))
    if target == -2:
        root1 = flip(root1, bit)
    elif target == -1:
        root2 = flip(root2, bit)
    else:
        proof[target] = flip(proof[target], bit)
    with pytest.raises(ProofError):
        verify_consistency(m, n, proof, root1, root2)


def _fake_fetch(ids: list[NodeID]) -> dict[NodeID, bytes]:
    return {nid: leaf_hash(repr(nid).encode()) for nid in ids}


def _expected_inclusion_len(index: int, size: int) -> int:
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


@FAST
@given(data=st.data(), size=st.integers(1, 2**64 - 1))
def test_plans_on_huge_trees_are_small_and_perfect(data: st.DataObject, size: int) -> None:
    """Plans for up-to-2^64 trees only name existing perfect nodes, O(log n) of them, and
    rehash to proofs of exactly the length the verifier expects."""
    index = data.draw(st.integers(0, size - 1))
    size1 = data.draw(st.integers(1, size))
    for plan in (inclusion_plan(index, size), consistency_plan(size1, size), root_plan(size)):
        assert len(plan.node_ids) <= 2 * size.bit_length()
        assert len(set(plan.node_ids)) == len(plan.node_ids)
        for level, idx in plan.node_ids:
            assert level >= 0 and idx >= 0 and (idx + 1) << level <= size
    proof = inclusion_plan(index, size).rehash(_fake_fetch(inclusion_plan(index, size).node_ids))
    assert len(proof) == _expected_inclusion_len(index, size)
    cplan = consistency_plan(size1, size)
    cproof = cplan.rehash(_fake_fetch(cplan.node_ids))
    if size1 == size:
        assert cproof == []
    else:
        shift = (size1 & -size1).bit_length() - 1
        start = 0 if size1 == 1 << shift else 1
        assert len(cproof) == start + _expected_inclusion_len(size1 - 1, size) - shift


@FAST
@given(n=st.integers(0, MAX_RANDOM), cut=st.integers(0, MAX_RANDOM))
def test_frontier_random_prefix_roundtrip(n: int, cut: int) -> None:
    cut = min(cut, n)
    f = Frontier()
    for leaf in LEAVES[:cut]:
        f.append(leaf)
    f = Frontier.from_bytes(cut, f.to_bytes())
    for leaf in LEAVES[cut:n]:
        f.append(leaf)
    assert f.root() == ROOTS[n]
    assert f == Frontier(n, [NODES[nid] for nid in f.node_ids()])


# --------------------------------------------------------------------------------------------
# Argument validation and error reporting
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size"), [(0, 0), (5, 5), (6, 5), (-1, 3), (0, -1)])
def test_inclusion_plan_rejects_bad_arguments(index: int, size: int) -> None:
    with pytest.raises(ValueError):
        inclusion_plan(index, size)


@pytest.mark.parametrize(("size1", "size2"), [(3, 2), (1, 0), (-1, 2), (0, -1)])
def test_consistency_plan_rejects_bad_arguments(size1: int, size2: int) -> None:
    with pytest.raises(ValueError):
        consistency_plan(size1, size2)


def test_trivial_consistency_plans_are_empty() -> None:
    assert consistency_plan(0, 0).node_ids == []
    assert consistency_plan(0, 9).node_ids == []
    assert consistency_plan(9, 9).node_ids == []
    assert consistency_proof(LEAVES, 0, 9) == []
    assert consistency_proof(LEAVES, 9, 9) == []


def test_bad_arguments_elsewhere() -> None:
    with pytest.raises(ValueError):
        root_plan(-1)
    with pytest.raises(ValueError, match="missing hash"):
        inclusion_plan(3, 10).rehash({})
    plan = inclusion_plan(3, 10)
    with pytest.raises(ValueError, match="bytes"):
        plan.rehash({nid: b"short" for nid in plan.node_ids})
    with pytest.raises(ValueError):
        inclusion_proof(LEAVES[:5], 0, 6)  # Not enough leaves.
    with pytest.raises(TypeError):
        inclusion_plan(1.0, 3)  # type: ignore[arg-type]


def test_frontier_rejects_bad_state() -> None:
    with pytest.raises(ValueError):
        Frontier(3, [LEAVES[0]])  # Size 3 needs two hashes.
    with pytest.raises(ValueError):
        Frontier(1, [b"short"])
    with pytest.raises(ValueError):
        Frontier(-1)
    with pytest.raises(ValueError):
        Frontier.from_bytes(3, b"\x00" * HASH_SIZE)
    with pytest.raises(ValueError):
        Frontier().append(b"raw document, not a leaf hash")
    with pytest.raises(AttributeError):
        Frontier().size = 3  # type: ignore[misc]


def test_verifier_errors_are_clear_proof_errors() -> None:
    proof = inclusion_proof(LEAVES, 2, 5)
    assert issubclass(ProofError, ValueError)
    with pytest.raises(ProofError, match="beyond size"):
        verify_inclusion(LEAVES[2], 5, 5, proof, ROOTS[5])
    with pytest.raises(ProofError, match="leaf hash"):
        verify_inclusion(LEAVES[2][:31], 2, 5, proof, ROOTS[5])
    with pytest.raises(ProofError, match="wrong proof size"):
        verify_inclusion(LEAVES[2], 2, 5, proof[:-1], ROOTS[5])
    with pytest.raises(ProofError, match=r"proof\[1\] has 31 bytes"):
        verify_inclusion(LEAVES[2], 2, 5, [proof[0], proof[1][:31], proof[2]], ROOTS[5])
    with pytest.raises(ProofError, match="does not match"):
        verify_inclusion(LEAVES[3], 2, 5, proof, ROOTS[5])
    with pytest.raises(ProofError, match=">= 0"):
        verify_inclusion(LEAVES[2], -1, 5, proof, ROOTS[5])
    cproof = consistency_proof(LEAVES, 3, 7)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 7, [], EMPTY_ROOT, ROOTS[7])
    with pytest.raises(ProofError, match="size2"):
        verify_consistency(7, 3, cproof, ROOTS[7], ROOTS[3])
    with pytest.raises(ProofError, match="empty proof"):
        verify_consistency(3, 7, [], ROOTS[3], ROOTS[7])
    with pytest.raises(ProofError, match="not empty"):
        verify_consistency(7, 7, cproof, ROOTS[7], ROOTS[7])
    with pytest.raises(ProofError, match="want bytes"):
        verify_consistency(3, 7, [cproof[0], "x" * 32, *cproof[2:]], ROOTS[3], ROOTS[7])  # type: ignore[list-item]
