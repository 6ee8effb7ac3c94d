// Head view tab: the canvas line view (draw/headView) plus its head toggles. Layer and step come from the shell;
// the head selection is this view's own and survives step and layer changes.

import { checkShape } from "../../data/api";
import { HeadToggles } from "../../controls/headToggles";
import { HeadView } from "../../draw/headView";
import { ImageOverlay } from "./imageOverlay";
import { LESS, MORE, compareTarget, deltaSummary, splitDelta } from "../../data/compare";
import { headColor } from "../../draw/palette";
import { ColorBar } from "../../draw/legend";
import { tokenColor } from "../../shell/theme";
import { headIndex, headLabel, layerLabel, subsetNote } from "../../data/labels";
import { storedHead } from "../../shell/deepLink";
import { subsetAttention, type Subset } from "../../data/tokenFilter";
import { autoTopK } from "../../draw/topk";
import type { SharedState, View, ViewHost } from "../../shell/view";
import { page } from "../../shell/page";
import { usesTopK } from "../../data/scale";
import { LongHead } from "./long";

declare global {
  interface Window {
    /** Durations of the last full paint and last hover redraw, ms (benchmark hook). */
    __tbaTimings?: { paintMs: number; hoverMs: number };
  }
}

function timings(): { paintMs: number; hoverMs: number } {
  return (page().hooks.__tbaTimings ??= { paintMs: NaN, hoverMs: NaN });
}

export class HeadTab implements View {
  readonly id = "head";
  readonly label = "Head view";
  readonly root = document.createElement("div");
  private readonly view = new HeadView();
  private readonly overlay = new ImageOverlay(); // ViT probes with a logged image
  private readonly heads = new HeadToggles(() => {
    this.repaint();
    this.host?.updateLink();
  });
  private pendingLink: Record<string, string> | null = null;
  private readonly legend = new ColorBar("head-legend");
  private shown: SharedState | null = null;
  private host: ViewHost | null = null;
  private readonly linesSelect = document.createElement("select");
  private readonly segSelect = document.createElement("select");
  private readonly gainSelect = document.createElement("select");
  private readonly segControl = document.createElement("label");
  private segKey = "";
  // Beyond 512 queries and for "qk" layers: top-k lines from the server in virtual columns (long.ts).
  private long: LongHead | null = null;
  private isLong = false;
  private readonly body = document.createElement("div");

  constructor() {
    const bar = document.createElement("div");
    bar.className = "tba-viewbar sticky"; // the head toggles stay in reach while a long head view scrolls
    this.linesSelect.id = "lines-select";
    for (const [v, t] of [
      ["auto", "auto"],
      ["0", "all"],
      ["1", "top 1"],
      ["3", "top 3"],
      ["8", "top 8"],
      ["16", "top 16"],
    ]) {
      const o = document.createElement("option");
      o.value = v as string;
      o.textContent = t as string;
      this.linesSelect.appendChild(o);
    }
    this.linesSelect.title = "Lines drawn per query token (auto: all, or the top 8 keys beyond 192 tokens)";
    this.linesSelect.addEventListener("change", () => this.repaint());
    const lines = document.createElement("label");
    lines.className = "control";
    const span = document.createElement("span");
    span.textContent = "Lines";
    lines.append(span, this.linesSelect);
    // Sentence A/B filter (BertViz's "Attention:" dropdown), shown when the probe logged `segments`.
    this.segSelect.id = "segment-filter";
    this.segSelect.addEventListener("change", () => this.host?.select({}));
    this.segControl.className = "control";
    const segSpan = document.createElement("span");
    segSpan.textContent = "Attention";
    this.segControl.append(segSpan, this.segSelect);
    this.segControl.style.display = "none";
    this.gainSelect.id = "opacity-select";
    for (const [v, t] of [
      ["auto", "auto"],
      ["1", "weight ÷ heads (BertViz)"],
      ["2", "× 2"],
      ["4", "× 4"],
      ["10", "× 10"],
    ]) {
      const o = document.createElement("option");
      o.value = v as string;
      o.textContent = t as string;
      this.gainSelect.appendChild(o);
    }
    this.gainSelect.title =
      "Line opacity: auto = weight × min(1, 2/√heads), readable from 1 to 32 active heads; " +
      "BertViz = weight ÷ number of active heads; × n multiplies BertViz's";
    this.gainSelect.addEventListener("change", () => this.repaint());
    const gain = document.createElement("label");
    gain.className = "control";
    const gainSpan = document.createElement("span");
    gainSpan.textContent = "Opacity";
    gain.append(gainSpan, this.gainSelect);
    bar.append(this.heads.el, lines, gain, this.segControl);
    const body = this.body;
    body.className = "tba-head-body";
    body.style.cssText = "display: flex; flex-wrap: wrap; align-items: flex-start; gap: 24px;";
    this.view.root.style.flexShrink = "0"; // its width is the layout's; never squeeze the token columns
    body.append(this.view.root, this.legend.el, this.overlay.root);
    this.root.append(bar, body);
    // The line band takes the row's width beside the colour bar and the image overlay (the flex gaps: 24 px).
    const beside = (el: HTMLElement): number => (el.offsetWidth ? el.offsetWidth + 24 : 0);
    this.view.fitTo(body, () => body.clientWidth - beside(this.legend.el) - beside(this.overlay.root) - 4);
    this.view.onHoverDrawn = (ms) => (timings().hoverMs = ms);
    // The overlay follows the hovered/locked query token; pointing at a patch hovers/locks its query token.
    this.view.onTokenChange = (t) => {
      this.overlay.setQuery(t && t.side === "left" ? t.index : null);
      this.host?.updateLink();
    };
    this.overlay.onPick = (q, click) => this.view.pickQuery(q, click);
  }

  async show(host: ViewHost): Promise<void> {
    this.host = host;
    const toolbar = (this.root.getRootNode() as Document | ShadowRoot).querySelector?.(".tba-toolbar");
    if (toolbar)
      this.root.style.setProperty("--tba-toolbar-h", `${Math.ceil(toolbar.getBoundingClientRect().height)}px`);
    const state = host.state;
    const { step, layer, manifest } = state;
    this.setLong(usesTopK(manifest, layer));
    if (this.isLong) return this.showLong(host, state);
    const [full, target] = await Promise.all([host.attention(step, layer), compareTarget(host, state)]);
    if (!host.isCurrent(state)) return;
    const refFull =
      target && typeof target !== "string" ? await host.attention(target.ref.step, layer, target.ref.probe) : null;
    if (!host.isCurrent(state)) return;
    // Coalesce bursts (slider drags) into at most one paint per frame; the very first paint need not wait.
    if (this.shown) await new Promise((r) => requestAnimationFrame(r));
    if (!host.isCurrent(state)) return;
    checkShape(full, manifest.tokens.length, (manifest.key_tokens ?? manifest.tokens).length);
    const seg = this.segmentSubset(state);
    const cur = subsetAttention(full, seg);
    // Comparing: lines of |Δ|, orange where the current step attends more, purple where less (2·H pseudo-heads).
    const attn = refFull ? splitDelta(cur, subsetAttention(refFull, seg)) : cur;
    this.view.colorOf = refFull ? (h) => (h < cur.H ? MORE : LESS) : headColor;
    const pick = (xs: string[], idx: number[] | null | undefined): string[] =>
      idx ? idx.map((i) => xs[i] as string) : xs;
    const left = pick(manifest.tokens, seg?.q);
    const right = pick(manifest.key_tokens ?? manifest.tokens, seg?.k);
    this.heads.setCount(cur.H);
    this.heads.setLabel((h) => headLabel(manifest, layer, h));
    const link = this.pendingLink;
    this.pendingLink = null;
    if (link?.["heads"]) {
      const on = new Set(link["heads"].split(",").map((x) => storedHead(manifest, layer, x)));
      this.heads.setActive(Array.from({ length: cur.H }, (_, h) => on.has(h)));
    }
    const active = this.heads.get();
    this.view.setData({ left, right, attn }, this.expand(active, attn.H));
    this.shown = state;
    this.paint();
    const lock = /^(left|right):(\d+)$/.exec(link?.["lock"] ?? "");
    if (lock) this.view.lockToken({ side: lock[1] as "left" | "right", index: Number(lock[2]) });
    const t = this.view.currentToken();
    const kept = manifest.kept ?? { q: null, k: null };
    const at = (outer: number[] | null, idx: number[] | null | undefined): number[] | null =>
      idx ? idx.map((i) => (outer ? (outer[i] as number) : i)) : outer;
    const overlayData = {
      manifest: { ...manifest, tokens: left, key_tokens: right },
      attn: cur,
      qpos: at(kept.q, seg?.q),
      kpos: at(kept.k, seg?.k),
      headName: (h: number) => headLabel(manifest, layer, h),
    };
    await this.overlay.show(state.probe, step, overlayData, active, t && t.side === "left" ? t.index : null);
    if (!host.isCurrent(state)) return;
    const cmp =
      target && typeof target !== "string"
        ? deltaSummary(state, target.ref) + " · "
        : typeof target === "string"
          ? `(${target}) · `
          : "";
    const subset = subsetNote(manifest);
    host.setSummary(
      cmp +
        `${layerLabel(manifest, layer)} · ${manifest.num_layers} layers · ${cur.H} heads` +
        (subset ? ` (${subset})` : "") +
        ` · ${left.length} query` +
        (manifest.key_tokens ? ` / ${right.length} key` : "") +
        " tokens · hover a token to isolate its attention, click to lock it",
    );
    void this.updateEntropyTitles(host, state, cur.H);
  }

  /** Swaps the line view in the page (one canvas `#head-canvas` at a time). */
  private setLong(on: boolean): void {
    if (on && !this.long) {
      this.long = new LongHead();
      this.long.view.onHoverDrawn = (ms) => (timings().hoverMs = ms);
      this.long.view.onTokenChange = () => this.host?.updateLink();
      const body = this.view.root.parentElement as HTMLElement; // the row the short view fits itself to
      const legend = (): number => (this.legend.el.offsetWidth ? this.legend.el.offsetWidth + 24 : 0);
      this.long.view.fitTo(body, () => body.clientWidth - legend() - 4);
    }
    if (on !== this.isLong) {
      const [out, into] = on
        ? [this.view.root, (this.long as LongHead).view.root]
        : [(this.long as LongHead).view.root, this.view.root];
      out.replaceWith(into);
      this.overlay.root.style.display = on ? "none" : "";
      if (on) this.shown = null;
    }
    this.isLong = on;
    this.segControl.style.display = on ? "none" : this.segControl.style.display;
  }

  private async showLong(host: ViewHost, state: SharedState): Promise<void> {
    const long = this.long as LongHead;
    const m = state.manifest;
    this.heads.setCount(m.num_heads);
    this.heads.setLabel((h) => headLabel(m, state.layer, h));
    const link = this.pendingLink;
    this.pendingLink = null;
    if (link?.["heads"]) {
      const on = new Set(link["heads"].split(",").map((x) => storedHead(m, state.layer, x)));
      this.heads.setActive(Array.from({ length: m.num_heads }, (_, h) => on.has(h)));
    }
    this.applyLines();
    const t0 = performance.now();
    const summary = await long.show(host, state, this.heads.get());
    if (summary === null || !host.isCurrent(state)) return;
    timings().paintMs = performance.now() - t0;
    this.shown = state;
    const lock = /^(left|right):(\d+)$/.exec(link?.["lock"] ?? "");
    if (lock) long.view.lockToken({ side: lock[1] as "left" | "right", index: Number(lock[2]) });
    host.setSummary(summary);
    void this.updateEntropyTitles(host, state, m.num_heads);
  }

  linkParams(): Record<string, string> {
    const m = this.shown?.manifest;
    const active = this.heads.get();
    const t = this.isLong && this.long ? this.long.view.lockedToken() : this.view.lockedToken();
    return {
      heads:
        !m || active.every(Boolean)
          ? ""
          : active.flatMap((on, h) => (on ? [String(headIndex(m, this.shown?.layer ?? 0, h))] : [])).join(","),
      lock: t ? `${t.side}:${t.index}` : "",
    };
  }

  restoreLink(params: Record<string, string>): void {
    this.pendingLink = params;
  }

  /** Options "All", "A → A", "B → B", "A → B", "B → A" (BertViz), for self-attention with ≥ 2 segments. */
  private segmentSubset(state: SharedState): Subset | null {
    const segs = state.manifest.key_tokens ? null : state.manifest.segments;
    const ids = segs ? [...new Set(segs)].sort((a, b) => a - b) : [];
    const key = JSON.stringify(ids);
    if (key !== this.segKey) {
      this.segKey = key;
      const name = (s: number): string => (s < 26 ? `Sentence ${String.fromCharCode(65 + s)}` : `Segment ${s}`);
      const opts: [string, string][] = [["all", "All"]];
      for (const a of ids) opts.push([`${a},${a}`, `${name(a)} → ${name(a)}`]);
      for (const a of ids) for (const b of ids) if (a !== b) opts.push([`${a},${b}`, `${name(a)} → ${name(b)}`]);
      const keep = this.segSelect.value;
      this.segSelect.replaceChildren(
        ...opts.map(([v, t]) => {
          const o = document.createElement("option");
          o.value = v;
          o.textContent = t;
          return o;
        }),
      );
      this.segSelect.value = opts.some(([v]) => v === keep) ? keep : "all";
      this.segControl.style.display = ids.length >= 2 ? "" : "none";
    }
    if (!segs || ids.length < 2 || this.segSelect.value === "all") return null;
    const [a, b] = this.segSelect.value.split(",").map(Number);
    const idx = (s: number | undefined): number[] => segs.flatMap((x, i) => (x === s ? [i] : []));
    return { q: idx(a), k: idx(b), renorm: false };
  }

  onKey(e: KeyboardEvent): boolean {
    if (e.key === "Escape") return this.isLong && this.long ? this.long.view.unlock() : this.view.unlock();
    // ←/→ solo the previous/next head (wrapping), like BertViz's double-click on a head square.
    if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return false;
    const active = this.heads.get();
    if (active.length === 0) return false;
    const cur = active.every(Boolean) ? -1 : active.indexOf(true);
    const n = active.length;
    const next = e.key === "ArrowRight" ? (cur + 1) % n : (cur - 1 + n) % n;
    this.heads.solo(next);
    return true;
  }

  /** Head toggles → the drawn heads: with a comparison, head h is drawn as pseudo-heads h and h + H. */
  private expand(active: boolean[], drawn: number): boolean[] {
    return drawn === active.length ? active : [...active, ...active];
  }

  private repaint(): void {
    if (!this.shown) return;
    const active = this.heads.get();
    if (this.isLong && this.long) {
      this.long.view.setActive(active);
      this.applyLines();
      this.long.view.paint();
      return;
    }
    this.view.setActive(this.expand(active, this.view.headCount()));
    this.paint();
    this.overlay.setActive(active);
  }

  private paint(): void {
    const v = this.linesSelect.value;
    this.applyLines();
    this.view.topK = v === "auto" ? autoTopK(this.shown ? this.shown.manifest.key_len : 0) : Number(v);
    const t0 = performance.now();
    this.view.paint();
    timings().paintMs = performance.now() - t0;
  }

  /** Line opacity and count from the selects, onto whichever line view is shown; sets the legend. */
  private applyLines(): void {
    const v = this.linesSelect.value;
    // A comparison draws each head as two pseudo-heads (more / less): count it once for the opacity.
    const split = this.view.headCount() > this.heads.get().length ? 2 : 1;
    const nA = Math.max(1, this.heads.get().filter(Boolean).length);
    // auto: weight × min(1, 2/√heads): BertViz's weight ÷ heads fades 12 heads' lines to nothing, 1/√heads does not.
    const factor =
      this.gainSelect.value === "auto" ? nA * Math.min(1, 2 / Math.sqrt(nA)) : Number(this.gainSelect.value) || 1;
    this.view.gain = factor * split;
    if (this.long) {
      this.long.view.gain = factor;
      this.long.view.topK = v === "auto" ? 0 : Number(v); // 0: every key the server sent
    }
    const comparing = split > 1;
    this.legend.set(
      {
        map: comparing ? MORE : tokenColor("--tba-fg"),
        lo: 0,
        hi: 1,
        gain: factor / nA,
        title: comparing
          ? "line opacity: |Δ weight| (orange: more attention now, purple: less)"
          : `line opacity: attention weight (${nA} head${nA === 1 ? "" : "s"}; colour = head)`,
      },
      110,
    );
  }

  private async updateEntropyTitles(host: ViewHost, state: SharedState, H: number): Promise<void> {
    // Statistics are a nicety: a missing head_stats series must not break the view.
    const stats = await host.headStats().catch(() => null);
    if (this.shown !== state || this.host !== host) return;
    const s = stats ? Array.prototype.indexOf.call(stats.steps, state.step) : -1;
    if (!stats || s < 0 || state.layer >= stats.numLayers || stats.numHeads !== H) {
      this.heads.setTitles(null);
      return;
    }
    const at = (s * stats.numLayers + state.layer) * H;
    this.heads.setTitles(stats.entropy.subarray(at, at + H));
  }
}
