// The browser's cosignature check (api/static/cosign.js) with both Ed25519 implementations the
// page may use (WebCrypto and the vendored @noble/curves), against signed-note.md's own example
// and a checkpoint signed by `ledger witness sign` (COSIGN_CASE, written by the Python test).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { webcrypto } from "node:crypto";

if (!globalThis.crypto) globalThis.crypto = webcrypto;

const cosign = await import("./static/cosign.js");
const { sha256WebCrypto, sha256Fallback } = await import("./static/sha256.js");
const IMPLEMENTATIONS = [
  ["WebCrypto", cosign.ed25519WebCrypto, sha256WebCrypto],
  ["noble-curves", cosign.ed25519Fallback, sha256Fallback],
];

const SPEC_KEY = cosign.b64decode("6TJ5GubnqECkYWTJBHhkJtXngh3YspoA1hyucq/dTaQ=");
const SPEC_NOTE =
  "This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

test("the signed-note spec example verifies, a changed text does not", async () => {
  const { body, signatures } = cosign.parseNote(SPEC_NOTE);
  assert.equal(body, "This is an example message.\n");
  for (const [name, verify, sha256] of IMPLEMENTATIONS) {
    const id = await cosign.keyId(sha256, "example.com/foo", SPEC_KEY);
    assert.deepEqual([...id], [0x53, 0x0d, 0x90, 0x3a], name);
    const sig = signatures[0].bytes.slice(4);
    assert.equal(await verify(SPEC_KEY, sig, new TextEncoder().encode(body)), true, name);
    assert.equal(await verify(SPEC_KEY, sig, new TextEncoder().encode("This is an example message!\n")), false, name);
  }
});

test("a cosigned checkpoint: accepted, and refused for another root, size, key or text", async () => {
  const c = JSON.parse(readFileSync(process.env.COSIGN_CASE, "utf8"));
  const witnesses = [{ name: c.name, publicKey: cosign.b64decode(c.public_key) }];
  const root = Uint8Array.from(Buffer.from(c.root_hex, "hex"));
  for (const [name, verify, sha256] of IMPLEMENTATIONS) {
    const good = await cosign.verifyCosignatures({ note: c.note, size: c.size, root, witnesses, sha256, verify });
    assert.equal(good.checkpoint, "ok", name);
    assert.deepEqual(good.results.map((r) => r.ok), [true], name);
    const otherRoot = Uint8Array.from(root, (x, i) => (i === 0 ? x ^ 1 : x));
    assert.equal((await cosign.verifyCosignatures({ note: c.note, size: c.size, root: otherRoot, witnesses, sha256, verify })).checkpoint, "mismatch");
    assert.equal((await cosign.verifyCosignatures({ note: c.note, size: c.size + 1, root, witnesses, sha256, verify })).checkpoint, "mismatch");
    const stranger = [{ name: c.name, publicKey: SPEC_KEY }];
    const wrongKey = await cosign.verifyCosignatures({ note: c.note, size: c.size, root, witnesses: stranger, sha256, verify });
    assert.deepEqual(wrongKey.results.map((r) => r.ok), [false], name);
    // The same signature under a checkpoint whose origin was changed.
    const moved = "x" + c.note;
    const movedCheck = await cosign.verifyCosignatures({ note: moved, size: c.size, root, witnesses, sha256, verify });
    assert.deepEqual(movedCheck.results.map((r) => r.ok), [false], name);
  }
});
