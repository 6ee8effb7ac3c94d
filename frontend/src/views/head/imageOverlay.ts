// ViT probes: the logged input image with one query token's attention painted over the patch grid (mean of the
// active heads), and the special tokens' (CLS, registers) weights as a legend. The head view mounts it and keeps it
// on the hovered/locked query token; pointing at a patch picks that patch's query token.
//
// Positions: the views see a token subset (special tokens hidden, query search, sentence filter), so the overlay
// maps subset indices back to probe positions (`Manifest.kept`) before applying the grid's divmod.

import type { Attention, Manifest } from "../../data/api";
import { VIRIDIS } from "../../draw/colormap";
import { request } from "../../data/transport";
import { page } from "../../shell/page";
import type { ProbeRef } from "../../shell/view";

const TARGET = 256; // px of the longer side: small images are enlarged by an integer factor (crisp patches)
const images = new Map<string, Promise<ImageBitmap>>(); // a few steps' images; usually the same picture

function loadImage(probe: ProbeRef, step: number): Promise<ImageBitmap> {
  const key = JSON.stringify([probe.run, probe.tag, step]);
  let p = images.get(key);
  if (!p) {
    const q = new URLSearchParams({ run: probe.run, tag: probe.tag, step: String(step) });
    p = request(`image?${q}`).then(async (res) => {
      if (!res.ok) throw new Error(`image: ${(await res.text()).slice(0, 300)} (HTTP ${res.status})`);
      return createImageBitmap(await res.blob());
    });
    images.set(key, p);
    p.catch(() => images.get(key) === p && images.delete(key));
    while (images.size > 8) images.delete(images.keys().next().value as string);
  }
  return p;
}

export interface OverlayData {
  manifest: Manifest;
  attn: Attention;
  /** Probe positions of the drawn query / key tokens (null: all, in order). */
  qpos: number[] | null;
  kpos: number[] | null;
  /** The model's name of stored head h (data/labels.ts). */
  headName?: (h: number) => string;
}

export class ImageOverlay {
  readonly root = document.createElement("div");
  /** A patch was pointed at (click = true: clicked) or left (null): the query token index in the drawn subset. */
  onPick: ((query: number | null, click: boolean) => void) | null = null;
  private readonly canvas = document.createElement("canvas");
  private readonly legend = document.createElement("div");
  private data: OverlayData | null = null;
  private image: ImageBitmap | null = null;
  private active: boolean[] = [];
  private query: number | null = null;
  private scale = 1;

  constructor() {
    this.root.className = "tba-image-overlay";
    // Sticky below the toolbar: a ViT probe has ~200 tokens, so the head view is taller than the screen.
    this.root.style.cssText = "display: none; position: sticky; top: 120px; flex: none; max-width: 280px;";
    this.legend.style.cssText = "margin-top: 6px; font-size: 12px; line-height: 1.5; overflow-wrap: anywhere;";
    this.canvas.style.cursor = "crosshair";
    this.canvas.id = "image-overlay-canvas";
    this.canvas.title = "Hover a patch to see its attention; click to lock it";
    this.legend.className = "tba-overlay-legend";
    this.root.append(this.canvas, this.legend);
    const pick = (e: MouseEvent, click: boolean): void => this.onPick?.(this.queryAt(e.offsetX, e.offsetY), click);
    this.canvas.addEventListener("mousemove", (e) => pick(e, false));
    this.canvas.addEventListener("click", (e) => pick(e, true));
    this.canvas.addEventListener("mouseleave", () => this.onPick?.(null, false));
  }

  /** Loads the step's image (when the manifest has one) and paints; hidden for probes without an image. */
  async show(probe: ProbeRef, step: number, data: OverlayData, active: boolean[], query: number | null): Promise<void> {
    const m = data.manifest;
    if (!m.image || !m.patch_grid) {
      this.data = null;
      this.root.style.display = "none";
      return;
    }
    this.data = data;
    this.active = active.slice();
    this.query = query;
    try {
      this.image = await loadImage(probe, step);
    } catch (e) {
      this.image = null;
      this.legend.textContent = String((e as Error).message); // the head view itself still works
    }
    this.root.style.display = "";
    const bar = page().root.querySelector(".tba-toolbar");
    if (bar) this.root.style.top = `${Math.ceil(bar.getBoundingClientRect().height) + 8}px`;
    this.paint();
  }

  hide(): void {
    this.data = null;
    this.root.style.display = "none";
  }

  setActive(active: boolean[]): void {
    this.active = active.slice();
    this.paint();
  }

  /** The query token (index in the drawn subset) whose attention is shown; null: the default (CLS). */
  setQuery(query: number | null): void {
    this.query = query;
    this.paint();
  }

  private grid(): { rows: number; cols: number; ns: number; cw: number; ch: number } | null {
    const g = this.data?.manifest.patch_grid;
    if (!g || !this.image) return null;
    const [ph, pw] = g.patch_size ?? [this.image.height / g.rows, this.image.width / g.cols];
    return { rows: g.rows, cols: g.cols, ns: g.num_special, cw: pw * this.scale, ch: ph * this.scale };
  }

  private queryAt(x: number, y: number): number | null {
    const g = this.grid();
    if (!g || !this.data) return null;
    const r = Math.floor(y / g.ch);
    const c = Math.floor(x / g.cw);
    if (r < 0 || c < 0 || r >= g.rows || c >= g.cols) return null;
    const pos = g.ns + r * g.cols + c;
    const i = this.data.qpos ? this.data.qpos.indexOf(pos) : pos;
    return i >= 0 && i < this.data.attn.Q ? i : null; // a hidden (filtered-out) token cannot be picked
  }

  /** The hovered/locked query, else the first special token (CLS) when it is drawn. */
  private shownQuery(): number | null {
    if (this.query !== null) return this.query;
    const g = this.data?.manifest.patch_grid;
    const qpos = this.data?.qpos;
    if (!g || g.num_special === 0) return null;
    const i = qpos ? qpos.findIndex((p) => p < g.num_special) : 0;
    return i >= 0 ? i : null;
  }

  private paint(): void {
    const d = this.data;
    const img = this.image;
    if (!d || !img) return;
    const dpr = window.devicePixelRatio || 1;
    const side = Math.max(img.width, img.height);
    this.scale = side >= TARGET ? TARGET / side : Math.floor(TARGET / side);
    const w = Math.round(img.width * this.scale);
    const h = Math.round(img.height * this.scale);
    if (this.canvas.width !== Math.round(w * dpr) || this.canvas.height !== Math.round(h * dpr)) {
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(h * dpr);
      this.canvas.style.width = `${w}px`;
      this.canvas.style.height = `${h}px`;
    }
    const ctx = this.canvas.getContext("2d");
    const g = this.grid();
    if (!ctx || !g) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingEnabled = this.scale < 1; // enlarge with nearest neighbour: pixels stay pixels
    ctx.clearRect(0, 0, w, h);
    ctx.drawImage(img, 0, 0, w, h);

    const q = this.shownQuery();
    const { H, Q, K, weights } = d.attn;
    const heads = [...Array(H).keys()].filter((h) => this.active[h] !== false);
    this.root.dataset["query"] = q === null ? "" : String(q);
    if (q === null || q >= Q || heads.length === 0) {
      this.legend.textContent = "Hover or click a query token (or a patch) to see its attention here.";
      return;
    }
    // Mean over the active heads of the query's row.
    const row = new Float32Array(K);
    for (const h of heads) {
      for (let k = 0; k < K; k++) row[k] += (weights[(h * Q + q) * K + k] as number) / heads.length;
    }
    let max = 0;
    const special: string[] = [];
    const keyTokens = d.manifest.key_tokens ?? d.manifest.tokens;
    for (let k = 0; k < K; k++) {
      const pos = d.kpos ? (d.kpos[k] as number) : k;
      if (pos >= g.ns) max = Math.max(max, row[k] as number);
      else special.push(`${keyTokens[k]}: ${(row[k] as number).toFixed(2)}`);
    }
    // Colour and opacity relative to the strongest patch (√ so weak patches stay visible); blocky, one rect each.
    for (let k = 0; k < K && max > 0; k++) {
      const pos = d.kpos ? (d.kpos[k] as number) : k;
      if (pos < g.ns) continue;
      const t = Math.sqrt((row[k] as number) / max);
      if (t < 0.05) continue;
      const c = Math.round(t * 255) * 3;
      ctx.fillStyle = `rgba(${VIRIDIS[c]},${VIRIDIS[c + 1]},${VIRIDIS[c + 2]},${(0.75 * t).toFixed(3)})`;
      const p = pos - g.ns;
      ctx.fillRect((p % g.cols) * g.cw, Math.floor(p / g.cols) * g.ch, g.cw, g.ch);
    }
    const qp = d.qpos ? (d.qpos[q] as number) : q;
    if (qp >= g.ns) {
      // Outline the query's own patch, white on black so it shows on any picture.
      const p = qp - g.ns;
      const x = (p % g.cols) * g.cw;
      const y = Math.floor(p / g.cols) * g.ch;
      ctx.lineWidth = 3;
      ctx.strokeStyle = "#000";
      ctx.strokeRect(x + 1.5, y + 1.5, g.cw - 3, g.ch - 3);
      ctx.lineWidth = 1;
      ctx.strokeStyle = "#fff";
      ctx.strokeRect(x + 1.5, y + 1.5, g.cw - 3, g.ch - 3);
    }
    const name = d.headName ?? ((h: number) => `head ${h}`);
    const headsText = heads.length === 1 && H > 1 ? name(heads[0] as number) : `mean of ${heads.length} heads`;
    // Token strings are untrusted: textContent only.
    this.legend.textContent =
      `query ${d.manifest.tokens[q]} · ${headsText} · strongest patch ${max.toFixed(2)}` +
      (special.length ? ` · ${special.join(" · ")}` : "");
  }
}
