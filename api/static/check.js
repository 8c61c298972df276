// The in-browser check of the resident pages. It trusts nothing the server says: it hashes the
// entry's document itself, recomputes the root from the proof and compares it with the root the
// resident typed from the paper sheet. The outcome goes into #check-result / #history-result
// with data-result = "ok" or "fail" (PAGES.md).
import { ProofError, hexToBytes, makeHasher, verifyConsistency, verifyInclusion } from "./merkle.js";
import { b64decode, pickEd25519, verifyCosignatures } from "./cosign.js";
import { pickSha256 } from "./sha256.js";

const OK = "已核验 ✓ ";
const FAIL = "核验失败 ✗ ";

class CheckFailed extends Error {}

function show(el, result, text) {
  el.textContent = text;
  el.dataset.result = result;
}

function positiveInt(text, what) {
  const clean = String(text || "").trim();
  if (!/^[0-9]{1,15}$/.test(clean) || Number(clean) < 1) throw new CheckFailed(`${what}应为正整数，请对照收据或公示表重新输入。`);
  return Number(clean);
}

function rootBytes(text, what) {
  const clean = String(text || "").replace(/\s+/g, "").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(clean)) {
    throw new CheckFailed(`${what}应为 64 位（0-9、a-f），现在是 ${clean.length} 位，请对照公示表重新输入。`);
  }
  return hexToBytes(clean);
}

async function getJson(url, what) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "omit", cache: "no-store" });
  } catch {
    throw new CheckFailed(`连不上服务器，取不到${what}，请检查网络后再试。`);
  }
  if (response.status === 404) throw new CheckFailed(`服务器说没有${what}：请核对序号和记录数。`);
  if (!response.ok) throw new CheckFailed(`服务器取${what}时出错（${response.status}），请稍后再试。`);
  try {
    return await response.json();
  } catch {
    throw new CheckFailed(`服务器给出的${what}无法读取。`);
  }
}

function proofBytes(list) {
  if (!Array.isArray(list) || !list.every((h) => typeof h === "string" && /^[0-9a-f]{64}$/.test(h))) {
    throw new CheckFailed("服务器给出的证明格式不对，无法核验。");
  }
  return list.map(hexToBytes);
}

function fenOf(amount) {
  const m = /^-?([0-9]+)\.([0-9]{2})$/.exec(String(amount));
  return m ? Number(m[1]) * 100 + Number(m[2]) : NaN;
}

const KIND_LABELS = {
  contribution: "众筹出资", grant: "以奖代补", expenditure: "支出", refund: "退款",
  in_kind: "出力/实物", pledge: "认筹", reversal: "冲正", other_income: "其他收入",
};

function yuan(fen) {
  const whole = Math.floor(fen / 100).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `¥${whole}.${String(fen % 100).padStart(2, "0")}`;
}

// The document is what is hashed; its fields must be the ones the page and the API show, or a
// server could show one thing and prove another.
function checkDocument(doc, entry, project, seq, expect) {
  let fields;
  try {
    fields = JSON.parse(doc);
  } catch {
    throw new CheckFailed("服务器给出的记录原文无法读取，可能被改动过。");
  }
  const wrong = [];
  if (fields.project !== project) wrong.push("项目");
  if (fields.seq !== seq) wrong.push("序号");
  if (fields.kind !== entry.kind) wrong.push("类型");
  if (fields.amount_fen !== fenOf(entry.amount)) wrong.push("金额");
  if (expect.kind && fields.kind !== expect.kind && !wrong.includes("类型")) wrong.push("类型");
  if (expect.amount && fields.amount_fen !== fenOf(expect.amount) && !wrong.includes("金额")) wrong.push("金额");
  if (expect.seq && fields.seq !== Number(expect.seq) && !wrong.includes("序号")) wrong.push("序号");
  if (expect.receipt && fields.receipt_no !== expect.receipt) wrong.push("收据号");
  if (wrong.length) {
    throw new CheckFailed(`记录原文里的${wrong.join("、")}与本页显示的不一致：服务器给出的内容可能被改动过。`);
  }
  return fields;
}

async function runInclusion(form) {
  const result = form.querySelector("#check-result");
  const project = form.dataset.project;
  show(result, "running", "正在核验……");
  try {
    const seq = positiveInt(form.elements.seq.value, "记账序号");
    const size = positiveInt(form.elements.size.value, "账本记录数");
    const root = rootBytes(form.elements.root.value, "根哈希");
    if (seq > size) throw new CheckFailed(`第 ${seq} 笔晚于这张公示表（记录数 ${size}），还不在这张表的账本里：请用更新的一期公示表。`);
    const base = `/api/v1/projects/${encodeURIComponent(project)}`;
    const entry = await getJson(`${base}/entries/${seq}`, `第 ${seq} 笔记录`);
    if (typeof entry.document !== "string") throw new CheckFailed("服务器没有给出记录原文，无法核验。");
    const fields = checkDocument(entry.document, entry, project, seq, {
      seq: form.dataset.expectSeq, kind: form.dataset.expectKind, amount: form.dataset.expectAmount,
      // Set only while the seq field still holds the seq the server found for that receipt number.
      receipt: form.dataset.expectReceipt && form.dataset.receiptSeq === String(seq) ? form.dataset.expectReceipt : "",
    });
    const { name, sha256 } = pickSha256();
    const h = makeHasher(sha256);
    const leaf = await h.leaf(new TextEncoder().encode(entry.document));
    const proof = await getJson(`${base}/ledger/inclusion?seq=${seq}&size=${size}`, "包含证明");
    try {
      await verifyInclusion(h, seq - 1, size, leaf, proofBytes(proof.proof), root);
    } catch (e) {
      if (!(e instanceof ProofError)) throw e;
      throw new CheckFailed(
        "用这笔记录的原文和服务器给出的证明算出的根哈希，与您输入的不一致。可能是根哈希或记录数抄错了；如果没有抄错，说明记录或证明被改动过，请向社区监督小组反映。",
      );
    }
    showDocument(fields);
    show(result, "ok", `${OK}第 ${seq} 笔（${KIND_LABELS[fields.kind] || fields.kind} ${yuan(fields.amount_fen)}，${fields.occurred_on}）确实记在记录数为 ${size} 的账本里，与您输入的根哈希一致。（本机计算，SHA-256 来自 ${name}）`);
  } catch (e) {
    show(result, "fail", FAIL + (e instanceof CheckFailed ? e.message : `核验过程出错：${e && e.message}`));
  }
}

function showDocument(fields) {
  const box = document.getElementById("check-doc");
  if (!box) return;
  box.querySelector('[data-doc="kind"]').textContent = KIND_LABELS[fields.kind] || fields.kind;
  box.querySelector('[data-doc="amount"]').textContent = yuan(fields.amount_fen);
  box.querySelector('[data-doc="occurred_on"]').textContent = fields.occurred_on;
  box.hidden = false;
}

async function runConsistency(form) {
  const result = form.querySelector("#history-result");
  show(result, "running", "正在核验……");
  try {
    const fromSize = positiveInt(form.elements.from_size.value, "上一期的记录数");
    const toSize = positiveInt(form.elements.to_size.value, "本期的记录数");
    const fromRoot = rootBytes(form.elements.from_root.value, "上一期的根哈希");
    const toRoot = rootBytes(form.elements.to_root.value, "本期的根哈希");
    if (fromSize > toSize) throw new CheckFailed("上一期的记录数不能大于本期的。");
    const base = `/api/v1/projects/${encodeURIComponent(form.dataset.project)}`;
    const proof = await getJson(`${base}/ledger/consistency?from=${fromSize}&to=${toSize}`, "一致性证明");
    const { name, sha256 } = pickSha256();
    try {
      await verifyConsistency(makeHasher(sha256), fromSize, toSize, proofBytes(proof.proof), fromRoot, toRoot);
    } catch (e) {
      if (!(e instanceof ProofError)) throw e;
      throw new CheckFailed("两期的根哈希对不上：可能是数字抄错了；如果没有抄错，说明上一期之后历史被改写过，请向社区监督小组反映。");
    }
    show(result, "ok", `${OK}上一期（记录数 ${fromSize}）的账本原封不动地包含在本期（记录数 ${toSize}）里，历史没有被改写。（本机计算，SHA-256 来自 ${name}）`);
  } catch (e) {
    show(result, "fail", FAIL + (e instanceof CheckFailed ? e.message : `核验过程出错：${e && e.message}`));
  }
}

async function runCosignatures(form) {
  const list = document.getElementById("witness-list");
  const result = document.getElementById("witness-result");
  show(result, "", "正在核验……");
  try {
    let response;
    try {
      response = await fetch(list.dataset.checkpoint, { credentials: "omit", cache: "no-store" });
    } catch {
      throw new CheckFailed("连不上服务器，取不到检查点，请检查网络后再试。");
    }
    if (!response.ok) throw new CheckFailed(`服务器取检查点时出错（${response.status}），请稍后再试。`);
    const note = await response.text();
    const items = [...list.querySelectorAll("li[data-name]")];
    const witnesses = items.map((li) => ({ name: li.dataset.name, publicKey: b64decode(li.dataset.key) }));
    const hasher = pickSha256();
    const ed = await pickEd25519();
    const outcome = await verifyCosignatures({
      note,
      size: Number(list.dataset.size),
      root: hexToBytes(list.dataset.root),
      witnesses,
      sha256: hasher.sha256,
      verify: ed.verify,
    });
    if (outcome.checkpoint !== "ok") {
      throw new CheckFailed(
        outcome.checkpoint === "mismatch"
          ? "服务器给出的检查点与本表的记录数或根哈希不同。"
          : "服务器给出的检查点格式不对，无法核验。",
      );
    }
    outcome.results.forEach((r, i) => {
      const mark = items[i].querySelector(".witness-result");
      show(mark, r.ok ? "ok" : "fail", r.ok ? "签名有效 ✓" : `签名无效 ✗ ${r.reason}`);
    });
    const bad = outcome.results.filter((r) => !r.ok).map((r) => r.name);
    if (bad.length) throw new CheckFailed(`${bad.join("、")}的签名未通过核验。`);
    show(result, "ok", `${OK}${outcome.results.length} 位见证人的签名都有效（Ed25519：${ed.name}；SHA-256：${hasher.name}）。`);
  } catch (error) {
    show(result, "fail", FAIL + (error instanceof CheckFailed ? error.message : "核验时出错，请稍后再试。"));
  }
  form.dataset.done = "1";
}

function wire() {
  const check = document.getElementById("check-form");
  if (check) {
    check.dataset.receiptSeq = check.elements.seq.value.trim();
    check.addEventListener("submit", (event) => {
      // A receipt number goes to the server, which finds its seq (the form's plain GET).
      if (!/^\s*[0-9]+\s*$/.test(check.elements.seq.value)) return;
      event.preventDefault();
      runInclusion(check);
    });
    const sheet = check.querySelector("#check-sheet");
    if (sheet) {
      sheet.addEventListener("change", () => {
        const option = sheet.selectedOptions[0];
        if (!option || !option.dataset.size) return;
        check.elements.size.value = option.dataset.size;
        check.elements.root.value = option.dataset.root;
      });
    }
    if (document.getElementById("check-autorun")) runInclusion(check);
  }
  const witnesses = document.getElementById("witness-form");
  if (witnesses) {
    witnesses.addEventListener("submit", (event) => {
      event.preventDefault();
      runCosignatures(witnesses);
    });
  }
  const history = document.getElementById("history-form");
  if (history) {
    history.addEventListener("submit", (event) => {
      event.preventDefault();
      runConsistency(history);
    });
  }
}

wire();
