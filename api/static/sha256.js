// SHA-256 for the in-browser check: WebCrypto where the page is a secure context (https or
// localhost), else the vendored @noble/hashes (MIT, see vendor/noble-hashes/LICENSE). A 街道
// intranet serving plain http on a LAN address has no crypto.subtle at all.

export async function sha256Fallback(bytes) {
  const { sha256 } = await import("./vendor/noble-hashes/sha2.js");
  return sha256(bytes);
}

export async function sha256WebCrypto(bytes) {
  return new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", bytes));
}

export function hasWebCrypto() {
  return Boolean(globalThis.crypto && globalThis.crypto.subtle && globalThis.crypto.subtle.digest);
}

export function pickSha256() {
  return hasWebCrypto() ? { name: "WebCrypto", sha256: sha256WebCrypto } : { name: "noble-hashes", sha256: sha256Fallback };
}
