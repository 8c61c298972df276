// Witnesses' cosignatures checked in the resident's browser. A sheet's tree head is a C2SP
// checkpoint (origin, tree size, base64 root); each witness signs it as a C2SP signed note:
// "— <name> base64(key ID ‖ Ed25519 signature)", key ID = SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[:4].
// Nothing the server says is taken on trust: the checkpoint must carry the size and root shown for
// the sheet (which the resident compares with the paper), and every signature is verified here.
// Ed25519 comes from WebCrypto where the browser has it; otherwise (older browsers, plain http
// where crypto.subtle is missing) from the vendored @noble/curves (MIT, vendor/noble-curves/LICENSE).

export function b64decode(text) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw new Error("bad base64");
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// A signed note → its text (through the last newline before the blank line) and signature lines.
export function parseNote(note) {
  const cut = note.lastIndexOf("\n\n");
  if (cut < 0) return { body: note, signatures: [] };
  const signatures = [];
  for (const line of note.slice(cut + 2).split("\n")) {
    if (!line) continue;
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) continue;
    try {
      signatures.push({ name: m[1], bytes: b64decode(m[2]) });
    } catch {
      // A line that is not base64 is no signature of anyone.
    }
  }
  return { body: note.slice(0, cut + 1), signatures };
}

export function parseCheckpoint(body) {
  const lines = body.split("\n");
  if (lines.length !== 4 || lines[3] !== "" || !lines[0] || !/^(0|[1-9][0-9]*)$/.test(lines[1])) return null;
  let root;
  try {
    root = b64decode(lines[2]);
  } catch {
    return null;
  }
  return root.length === 32 ? { origin: lines[0], size: Number(lines[1]), root } : null;
}

export async function keyId(sha256, name, publicKey) {
  const named = new TextEncoder().encode(name);
  const bytes = new Uint8Array(named.length + 2 + publicKey.length);
  bytes.set(named);
  bytes.set([0x0a, 0x01], named.length);
  bytes.set(publicKey, named.length + 2);
  return (await sha256(bytes)).slice(0, 4);
}

export async function ed25519Fallback(publicKey, signature, message) {
  const { ed25519 } = await import("./vendor/noble-curves/ed25519.js");
  try {
    return ed25519.verify(signature, message, publicKey);
  } catch {
    return false;
  }
}

export async function ed25519WebCrypto(publicKey, signature, message) {
  const key = await globalThis.crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
  return globalThis.crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
}

// WebCrypto's Ed25519 where the browser supports it (a probe with a valid key), else noble.
export async function pickEd25519() {
  if (globalThis.crypto && globalThis.crypto.subtle) {
    try {
      // The public key of signed-note.md's example (c2sp.org): any valid key would do.
      const probe = b64decode("6TJ5GubnqECkYWTJBHhkJtXngh3YspoA1hyucq/dTaQ=");
      await globalThis.crypto.subtle.importKey("raw", probe, { name: "Ed25519" }, false, ["verify"]);
      return { name: "WebCrypto", verify: ed25519WebCrypto };
    } catch {
      // Not supported here: fall through.
    }
  }
  return { name: "noble-curves", verify: ed25519Fallback };
}

// Verify the note for each witness ({name, publicKey}); the checkpoint must pin `size` and `root`.
export async function verifyCosignatures({ note, size, root, witnesses, sha256, verify }) {
  const { body, signatures } = parseNote(note);
  const checkpoint = parseCheckpoint(body);
  if (!checkpoint) return { checkpoint: "malformed", results: [] };
  if (checkpoint.size !== size || !equal(checkpoint.root, root)) return { checkpoint: "mismatch", results: [] };
  const message = new TextEncoder().encode(body);
  const results = [];
  for (const w of witnesses) {
    const id = await keyId(sha256, w.name, w.publicKey);
    const mine = signatures.filter((s) => s.name === w.name && s.bytes.length === 68 && equal(s.bytes.slice(0, 4), id));
    let ok = false;
    for (const s of mine) ok = ok || (await verify(w.publicKey, s.bytes.slice(4), message));
    results.push({ name: w.name, ok, reason: mine.length ? (ok ? "" : "签名不对") : "检查点上没有这位见证人的签名" });
  }
  return { checkpoint: "ok", results };
}
