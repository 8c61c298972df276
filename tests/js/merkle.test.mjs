// The browser's verifier (api/static/merkle.js) against transparency-dev's vectors, with both
// SHA-256 implementations the page may use: WebCrypto and the vendored fallback.
// Run by tests/test_pages_js.py, which copies api/static/ next to this file as ./static (in a
// folder whose package.json makes .js files ES modules) and sets MERKLE_VECTORS.
import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

// Node 18 has WebCrypto only as node:crypto's export; browsers and Node 20+ have it global.
if (!globalThis.crypto) globalThis.crypto = webcrypto;

const { makeHasher, verifyConsistency, verifyInclusion } = await import("./static/merkle.js");
const { sha256Fallback, sha256WebCrypto } = await import("./static/sha256.js");

const root = process.env.MERKLE_VECTORS;
assert.ok(root, "MERKLE_VECTORS must name the test vector folder");

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : path.endsWith(".json") ? [path] : [];
  });
}

// uint64 values (18446744073709551615) lose precision as JS numbers: read them as strings.
function load(path) {
  return JSON.parse(readFileSync(path, "utf8").replace(/:\s*(\d{16,})/g, ': "$1"'));
}

const b64 = (s) => (s == null ? null : new Uint8Array(Buffer.from(s, "base64")));
const hashers = { webcrypto: sha256WebCrypto, fallback: sha256Fallback };

for (const [name, sha] of Object.entries(hashers)) {
  const h = makeHasher(sha);
  test(`inclusion vectors (${name})`, async () => {
    const paths = files(join(root, "inclusion"));
    assert.ok(paths.length > 20);
    for (const p of paths) {
      const v = load(p);
      let err = null;
      try {
        await verifyInclusion(h, v.leafIdx, v.treeSize, b64(v.leafHash) ?? new Uint8Array(), (v.proof ?? []).map(b64), b64(v.root) ?? new Uint8Array());
      } catch (e) {
        err = e;
      }
      assert.equal(err !== null, v.wantErr, `${p}: ${err}`);
    }
  });
  test(`consistency vectors (${name})`, async () => {
    const paths = files(join(root, "consistency"));
    assert.ok(paths.length > 20);
    for (const p of paths) {
      const v = load(p);
      let err = null;
      try {
        await verifyConsistency(h, v.size1, v.size2, (v.proof ?? []).map(b64), b64(v.root1) ?? new Uint8Array(), b64(v.root2) ?? new Uint8Array());
      } catch (e) {
        err = e;
      }
      assert.equal(err !== null, v.wantErr, `${p}: ${err}`);
    }
  });
}

test("the fallback SHA-256 equals WebCrypto's", async () => {
  for (const text of ["", "abc", "公示".repeat(1000)]) {
    const data = new TextEncoder().encode(text);
    assert.deepEqual(await sha256Fallback(data), await sha256WebCrypto(data));
  }
  const abc = Buffer.from(await sha256Fallback(new TextEncoder().encode("abc"))).toString("hex");
  assert.equal(abc, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
});
