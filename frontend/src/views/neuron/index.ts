// Neuron view (BertViz's expanded neuron view) for any captured model: for one layer, head and query token,
// the query vector, every key vector, q⊙k, the scaled score q·k·s, softmax of those scores, and the attention
// the model logged. Needs the logged q/k (route `qk`). Hover a query token to preview, click to lock, Esc
// unlocks; ←/→ change head. The softmax is recomputed in the browser over the keys the model did not mask
// (inferred: logged weight 0), so a difference to the logged column reveals biases the q/k do not carry.
// With the toolbar's "Compare with" set, the reference's q·k·s and softmax for the same layer/head/query and
// Δ = current − reference are added as columns (Δ on the PuOr diverging map of the other views).
// This file loads the data and follows the query token; layout.ts places the columns, draw.ts paints them,
// math.ts recomputes the scores and softmax, rows.ts keeps only the rows near the screen in the DOM and on the canvas.

import { HoverLock } from "../../controls/hoverLock";
import { checkShape, HttpError, type Attention, type Manifest, type QK } from "../../data/api";
import { deltaSummary } from "../../data/compare";
import type { View, ViewHost } from "../../shell/view";
import { connectors, numberColumns, strips } from "./draw";
import { NeuronRows } from "./rows";
import { fillLegend, keyNumbers, StripBars, verdict } from "./notes";
import { headColor } from "../../draw/palette";
import { columnLayout, headings, INITIAL_LAYOUT, type Layout } from "./layout";
import { describe, kvHeadOf, maxAbs, recomputeOf, rowOf, type Recompute, type Row } from "./math";
import { headIndex, kvHeadIndex, layerLabel } from "../../data/labels";
import { setHeadOptions } from "../../controls/widgets";
import { linkInt, storedHead } from "../../shell/deepLink";
import { lodLoaders } from "../../shell/lodLoaders";
import { headWeightsOk, loadData, loadRef, oneHead, type Ref } from "./load";

interface Data {
  m: Manifest;
  layer: number;
  qk: QK;
  /** null: one head past 2^26 weights (the server refuses it): the softmax is rebuilt here only (math.ts). */
  attn: Attention | null;
  rc: Recompute;
  /** The "Compare with" reference at the same layer, when it has q/k of the same shape. */
  ref: Ref | null;
  /** q/k and weights hold only the head shown (index 0; long probes and "qk" layers, load.ts). */
  one: boolean;
}

export class NeuronView implements View {
  readonly id = "neuron";
  readonly label = "Neuron view";
  readonly root = document.createElement("div");
  private readonly headSelect = document.createElement("select");
  private readonly info = document.createElement("div");
  private readonly body = document.createElement("div");
  private readonly header = document.createElement("div");
  private readonly rows = new NeuronRows(this.body, () => this.drawRows());
  private readonly note = document.createElement("div");
  private readonly cmp = document.createElement("div"); // which reference Δ is against, or why there is none
  private readonly verdict = document.createElement("div"); // recomputed softmax vs logged, and why they may differ
  private readonly legend = document.createElement("div"); // what the cell colours and shades mean
  private readonly bars = new StripBars(); // the q and k strips' colour bars, in the legend line
  private head = 0;
  private step = 0;
  private data: Data | null = null;
  private tokensKey = "";
  private readonly query = new HoverLock<number>(() => {
    this.drawQuery();
    this.host?.updateLink();
  });
  private host: ViewHost | null = null;
  private pendingLink: Record<string, string> | null = null;
  private lay: Layout = INITIAL_LAYOUT;

  constructor() {
    this.root.className = "neuron-view";
    const bar = document.createElement("div");
    bar.className = "tba-viewbar";
    this.headSelect.id = "neuron-head";
    this.headSelect.addEventListener("change", () => {
      this.head = Number(this.headSelect.value);
      if (this.data?.one)
        this.host?.select({}); // one head loaded: load the other
      else this.paint();
      this.host?.updateLink();
    });
    const lab = document.createElement("label");
    lab.className = "control";
    const span = document.createElement("span");
    span.textContent = "Head";
    lab.append(span, this.headSelect);
    this.info.className = "nv-info";
    bar.append(lab, this.info);
    this.note.className = "tba-message";
    this.cmp.className = "nv-info nv-compare";
    this.cmp.style.marginBottom = "6px";
    this.verdict.className = "nv-info nv-verdict";
    this.verdict.style.marginBottom = "6px";
    this.body.className = "nv-body";
    this.header.className = "nv-header";
    this.body.append(this.header);
    this.legend.className = "tba-legend-line nv-legend";
    this.root.append(bar, this.legend, this.cmp, this.verdict, this.note, this.body);
    const qCol = this.rows.q.el;
    qCol.addEventListener("mouseover", (e) => this.query.hover(indexOf(e)));
    qCol.addEventListener("mouseleave", () => this.query.hover(null));
    qCol.addEventListener("click", (e) => {
      const i = indexOf(e);
      if (i !== null) this.query.click(i);
    });
    this.rows.k.el.addEventListener("mouseover", (e) => {
      const j = indexOf(e);
      if (j !== null) this.keyTitle(e.target as HTMLElement, j);
    });
  }

  async show(host: ViewHost): Promise<void> {
    this.host = host;
    const state = host.state;
    const m = state.manifest;
    if (!m.has_qk) {
      this.message(
        "Queries and keys were not logged for this probe, so there is no neuron view.\n" +
          "Log them with add_attention(..., queries=q, keys=k) (or the capture API) to see q, k, q⊙k and q·k.",
      );
      return;
    }
    let qk: QK;
    let attn: Attention | null;
    const one = oneHead(state);
    const link = this.pendingLink;
    this.pendingLink = null;
    this.head = Math.min(storedHead(m, state.layer, link?.["head"]) ?? this.head, m.num_heads - 1);
    // Never rejects; loads alongside the current step. One head at a time: no comparison (two heads' q/k at 4k).
    const refP = one
      ? Promise.resolve(state.compare ? "Compare with is not drawn at this length" : null)
      : loadRef(host, state);
    try {
      [qk, attn] = await loadData(host, state, one, this.head);
    } catch (e) {
      if (e instanceof HttpError && e.status === 404 && host.isCurrent(state)) {
        this.message("Queries and keys were not logged for this step.");
        return;
      }
      throw e;
    }
    if (!host.isCurrent(state)) return;
    if (attn) {
      checkShape(attn, m.tokens.length, (m.key_tokens ?? m.tokens).length);
      if (qk.Q !== attn.Q || qk.K !== attn.K || qk.H !== attn.H)
        throw new Error(`q/k are ${qk.H}×${qk.Q}/${qk.K} but attention is ${attn.H}×${attn.Q}×${attn.K}`);
    } else if (qk.Q !== m.tokens.length || qk.K !== (m.key_tokens ?? m.tokens).length) {
      throw new Error(`q/k are ${qk.Q}/${qk.K} tokens but the step has ${m.tokens.length}`);
    }
    let ref = await refP;
    if (!host.isCurrent(state)) return;
    if (ref && typeof ref !== "string") {
      const a = [qk.H, qk.Hkv, qk.Q, qk.K, qk.D];
      const b = [ref.qk.H, ref.qk.Hkv, ref.qk.Q, ref.qk.K, ref.qk.D];
      if (a.join() !== b.join() || ref.attn.Q !== qk.Q || ref.attn.K !== qk.K) {
        ref = `cannot compare with ${ref.ref.label}: q/k shapes differ ([H, H_kv, Q, K, D] ${a.join("×")} vs ${b.join("×")})`;
      }
    }
    this.step = state.step;
    const rc = recomputeOf(m, state.layer, qk.D);
    rc.biasTable = rc.bias === "relative" && !!qk.bias && qk.bias.length === qk.Q + qk.K - 1;
    this.scores = null;
    this.data = {
      m,
      layer: state.layer,
      qk,
      attn,
      rc,
      ref: ref && typeof ref !== "string" ? ref : null,
      one,
    };
    const r = this.data.ref;
    this.cmp.textContent = r
      ? `Reference: ${r.ref.label} (columns "ref") · Δ = step ${state.step} − ${r.ref.label}: orange = higher now, purple = lower`
      : typeof ref === "string"
        ? `Compare: ${ref}`
        : "";
    this.root.dataset["compare"] = r ? r.ref.label : "";
    this.note.textContent = "";
    this.body.style.display = "";
    setHeadOptions(this.headSelect, m.num_heads, (h) => String(headIndex(m, state.layer, h)));
    const q = linkInt(link?.["q"]);
    if (q !== null && q < qk.Q && this.query.current !== q) this.query.click(q);
    this.headSelect.value = String(this.head);
    this.layout();
    this.paint();
    host.setSummary(
      (r ? deltaSummary(state, r.ref) + " · " : typeof ref === "string" ? `(${ref}) · ` : "") +
        `${layerLabel(m, state.layer)} · ${m.num_heads} query heads, ${m.num_kv_heads ?? qk.Hkv} key heads · d_head ${qk.D} · ${qk.Q} tokens · ` +
        "hover a query token to see its computation, click to lock it (Esc unlocks), ←/→ change head",
    );
  }

  private message(text: string): void {
    this.data = null;
    this.cmp.textContent = "";
    this.root.dataset["compare"] = "";
    this.note.textContent = text;
    this.body.style.display = "none";
  }

  private layout(): void {
    const d = this.data as Data;
    const left = d.m.tokens;
    const right = d.m.key_tokens ?? d.m.tokens;
    const n = Math.max(left.length, right.length);
    const ctx = this.rows.win.ctx;
    const { fontPx, ...lay } = columnLayout(ctx, left, right, d.qk.D, d.ref !== null);
    this.lay = lay;
    const { x, rowH, headerH } = lay;
    const key = JSON.stringify([left, right, rowH, headerH]);
    this.body.style.width = `${x.end}px`;
    this.body.style.height = `${headerH + n * rowH}px`;
    this.body.style.setProperty("--row-h", `${rowH}px`);
    this.body.style.setProperty("--font-px", `${fontPx}px`);
    this.rows.setLayout(lay);
    if (key !== this.tokensKey) {
      this.tokensKey = key;
      this.rows.setTokens(left, right, lay);
      if (this.query.current !== null && this.query.current >= left.length) this.query.reset();
    }
    this.rows.sync(true);
  }

  /** Headings (DOM text), the info line and legend, then every row of the canvas window. */
  private paint(): void {
    const d = this.data;
    if (!d) return;
    const t0 = performance.now();
    const { qk } = d;
    const h = this.head;
    const H = d.m.num_heads;
    const Hkv = d.one ? (d.m.num_kv_heads ?? H) : qk.Hkv;
    const kh = kvHeadOf(h, H, Hkv);
    const group = H / Math.max(1, Hkv);
    const model = (q: number): number => headIndex(d.m, d.layer, q);
    const khName = kvHeadIndex(d.m, d.layer, kh);
    const sharers = Array.from({ length: group }, (_, g) => model(kh * group + g)).join(", ");
    const shared = Hkv < H ? ` · GQA: key head ${khName} is shared by query heads ${sharers}` : "";
    const rope = "q/k as the model used them (post-RoPE where the model applies RoPE; pre-RoPE is not logged)";
    this.info.textContent = `${rope} · ${describe(d.rc, qk.D)}${shared}`;
    this.root.dataset["scaling"] = d.rc.scaling.toPrecision(6);
    this.root.dataset["scalingFrom"] = d.rc.scalingFrom;
    this.header.replaceChildren(...headings(this.lay, qk, khName, d.ref ? d.ref.ref : null, this.step));
    // Column scales are per head (every row, not the drawn ones), so rows are comparable within a column.
    const qOff = d.one ? 0 : h * qk.Q * qk.D;
    const kOff = d.one ? 0 : kh * qk.K * qk.D;
    const qMax = maxAbs(qk.queries, qOff, qk.Q * qk.D);
    this.scales = { d, qOff, kOff, qMax, kMax: maxAbs(qk.keys, kOff, qk.K * qk.D) };
    fillLegend(this.legend, this.bars, this.scales.qMax, this.scales.kMax);
    this.root.dataset["head"] = String(h);
    this.root.dataset["headLabel"] = String(model(h));
    this.drawRows();
    this.root.dataset["paintMs"] = (performance.now() - t0).toFixed(1);
  }

  /** Per head, set by paint(): until then (a linked query locked in show()) nothing is drawn. */
  private scales: { d: Data; qOff: number; kOff: number; qMax: number; kMax: number } | null = null;

  /** The q and k strips of the rows in the canvas window, then the query's columns (on scroll, after paint()). */
  private drawRows(): void {
    const d = this.data;
    const sc = this.scales;
    if (!d || sc?.d !== d) return;
    const { qk } = d;
    const { qOff, kOff, qMax, kMax } = sc;
    const x = this.lay.x;
    const [r0, r1] = this.rows.range();
    const ctx = this.rows.win.ctx;
    this.rows.win.clear(x.end);
    const D = qk.D;
    strips(ctx, this.lay, (r, c) => qk.queries[qOff + r * D + c] as number, r0, Math.min(r1, qk.Q), D, x.qVec, qMax);
    strips(ctx, this.lay, (r, c) => qk.keys[kOff + r * D + c] as number, r0, Math.min(r1, qk.K), D, x.kVec, kMax);
    this.drawQuery();
  }

  /** Everything that depends on the query token: q⊙k, scores, softmax, logged weights, connector lines. */
  private drawQuery(): void {
    const d = this.data;
    const sc = this.scales;
    if (!d || sc?.d !== d) return;
    const t0 = performance.now();
    const { qk, attn } = d;
    const lay = this.lay;
    const x = lay.x;
    const h = this.head;
    const i = Math.min(this.query.current ?? 0, qk.Q - 1);
    const D = qk.D;
    const K = qk.K;
    const win = this.rows.win;
    const ctx = win.ctx;
    const top = Math.max(lay.headerH, win.top);
    const height = win.top + win.height - top;
    ctx.clearRect(x.gap, top, x.kTok - x.gap, height);
    ctx.clearRect(x.prod - 2, top, x.end - x.prod + 2, height);
    ctx.clearRect(0, top, x.qVec, height); // query highlight lives behind the query tokens
    // One query's row costs K × D multiply-adds: computed on hover, reused while scrolling.
    let s = this.scores;
    if (!s || s.d !== d || s.h !== h || s.i !== i) {
      const cur = rowOf(qk, attn, d.one ? 0 : h, i, d.rc);
      // The reference row: same head and query, its own q/k, scaling and mask.
      const ref = d.ref ? rowOf(d.ref.qk, d.ref.attn, h, i, d.ref.rc) : null;
      s = this.scores = { cur, ref, i, h, d };
    }
    const { cur, ref } = s;
    const [r0, r1] = this.rows.range();
    const k1 = Math.min(r1, K);
    const qo = ((d.one ? 0 : h) * qk.Q + i) * D;
    const ko = sc.kOff;
    const prod = (j: number, c: number): number => (qk.queries[qo + c] as number) * (qk.keys[ko + j * D + c] as number);
    strips(ctx, lay, prod, r0, k1, D, x.prod, cur.prodMax, cur.masked);
    const dpMax = numberColumns(ctx, lay, K, cur, ref, r0, k1);
    connectors(ctx, lay, i, cur.aRow, headColor(this.head), win.top, win.top + win.height);
    this.rows.mark(i, this.query.isLocked);
    this.root.dataset["query"] = String(i);
    this.root.dataset["locked"] = String(this.query.isLocked);
    // Largest |Δ softmax| of this query (test/benchmark hook; "" when not comparing).
    this.root.dataset["deltaMax"] = ref ? dpMax.toPrecision(4) : "";
    // How the recomputed softmax compares with the logged weights (test hook and the line under the columns).
    this.root.dataset["recomputeDiff"] = cur.logged ? cur.maxDiff.toPrecision(4) : "";
    this.root.dataset["recompute"] = !cur.logged ? "rebuilt" : cur.withinStorage ? "agrees" : "differs";
    this.verdict.textContent = verdict(cur, d.rc);
    this.root.dataset["queryMs"] = (performance.now() - t0).toFixed(2); // hover → drawn (benchmark hook)
  }

  private scores: { cur: Row; ref: Row | null; i: number; h: number; d: Data } | null = null;

  /** Exact numbers as the key token's tooltip (computed on hover; the canvas shows rounded ones). */
  private keyTitle(el: HTMLElement, j: number): void {
    const s = this.scores;
    const d = this.data;
    if (!s || !d) return;
    const right = d.m.key_tokens ?? d.m.tokens;
    const who = `key ${j}: ${right[j] ?? ""}\nquery ${s.i}: ${d.m.tokens[s.i] ?? ""}\n`;
    el.title = who + keyNumbers(j, s.cur, s.ref, d.ref ? d.ref.ref.label : "");
  }

  linkParams(): Record<string, string> {
    const d = this.data;
    return {
      head: d ? String(headIndex(d.m, d.layer, this.head)) : "",
      q: this.query.isLocked && this.query.current !== null ? String(this.query.current) : "",
    };
  }

  restoreLink(params: Record<string, string>): void {
    this.pendingLink = params;
  }

  prefetch(host: ViewHost, step: number): void {
    if (!host.state.manifest.has_qk) return;
    if (oneHead(host.state)) {
      lodLoaders.qkHead(host.state.probe, step, host.state.layer, this.head).catch(() => undefined);
      if (headWeightsOk(host.state)) host.attentionHead(step, host.state.layer, this.head).catch(() => undefined);
      return;
    }
    host.qk(step, host.state.layer).catch(() => undefined);
    host.attention(step, host.state.layer).catch(() => undefined);
  }

  onKey(e: KeyboardEvent): boolean {
    if (e.key === "Escape") return this.query.unlock();
    if ((e.key === "ArrowLeft" || e.key === "ArrowRight") && this.data) {
      const H = this.data.m.num_heads;
      this.head = (this.head + (e.key === "ArrowRight" ? 1 : H - 1)) % H;
      this.headSelect.value = String(this.head);
      if (this.data.one) this.host?.select({});
      else this.paint();
      this.host?.updateLink();
      return true;
    }
    return false;
  }
}

function indexOf(e: Event): number | null {
  const el = (e.target as Element).closest<HTMLElement>(".token");
  return el ? Number(el.dataset["index"]) : null;
}
