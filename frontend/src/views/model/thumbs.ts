// The model view at LLM scale (more than 144 heads, 512 tokens, or any "qk" layer): every head as a heatmap
// thumbnail of the `lod` route (max-pooled on the server, 64 × 64 cells), one request per layer, each layer painted
// as it arrives, the first screenful first. Click a thumbnail to open that head in the matrix view (or head view).

import { VIRIDIS } from "../../draw/colormap";
import { ColorBar } from "../../draw/legend";
import { codeColors } from "../../draw/tileGrid";
import { headIndex, headLabel, layerLabel, sharedHeads } from "../../data/labels";
import type { Manifest } from "../../data/api";
import { lodLoaders } from "../../shell/lodLoaders";
import type { SharedState, ViewHost } from "../../shell/view";
import { installScaleCss } from "../../draw/scaleCss";
import { selectControl } from "../../controls/widgets";

const IN_FLIGHT = 4;

export class ThumbGrid {
  readonly root = document.createElement("div");
  private readonly grid = document.createElement("div");
  private readonly legend = new ColorBar("model-thumbs-colorbar");
  private readonly open: HTMLSelectElement;
  private canvases: HTMLCanvasElement[][] = [];
  private shape = "";
  private shown: SharedState | null = null;
  private host: ViewHost | null = null;
  private readonly colors = codeColors(VIRIDIS, 1, "sqrt");

  constructor() {
    installScaleCss();
    this.root.className = "mv-lod";
    this.grid.className = "mv-lod-grid";
    this.grid.id = "model-thumbs";
    const [openLabel, open] = selectControl("model-open", "Click opens", [
      ["matrix", "matrix view"],
      ["head", "head view"],
    ]);
    this.open = open;
    const bar = document.createElement("div");
    bar.className = "tba-viewbar";
    bar.append(openLabel);
    const body = document.createElement("div");
    body.className = "mv-lod-body";
    body.append(this.grid, this.legend.el);
    this.root.append(bar, body);
    this.grid.addEventListener("click", (e) => {
      const el = (e.target as Element).closest<HTMLElement>(".mv-lod-thumb");
      const s = this.shown;
      if (!el || !s || !this.host) return;
      const layer = Number(el.dataset["layer"]);
      const head = Number(el.dataset["head"]);
      const h = String(headIndex(s.manifest, layer, head));
      const view = this.open.value;
      // The target view reads its head from these link parameters (the model's numbers), as from a deep link.
      this.host.select({ view, layer, link: view === "head" ? { heads: h } : { head: h } });
    });
  }

  private layout(m: Manifest, Sq: number, Sk: number): void {
    const L = m.num_layers;
    const H = m.num_heads;
    const key = JSON.stringify([L, H, Sq, Sk, m.layers?.map((x) => [x.index, x.heads]) ?? null]);
    if (key === this.shape) return;
    this.shape = key;
    const avail = Math.max(400, (window.innerWidth || 1280) - 240);
    const tw = Math.max(24, Math.min(96, Math.floor(avail / H) - 4));
    const th = Math.max(12, Math.round((tw * Sq) / Sk));
    this.grid.style.gridTemplateColumns = `auto repeat(${H}, ${tw}px)`;
    const shared = sharedHeads(m);
    const cells: HTMLElement[] = [document.createElement("div")];
    for (let h = 0; h < H; h++) cells.push(text("mv-col-label", shared ? String(shared[h]) : `#${h}`));
    this.canvases = [];
    for (let l = 0; l < L; l++) {
      cells.push(text("mv-row-label", layerLabel(m, l, true)));
      const row: HTMLCanvasElement[] = [];
      for (let h = 0; h < H; h++) {
        const c = document.createElement("canvas");
        c.className = "mv-lod-thumb";
        c.width = Sk;
        c.height = Sq;
        c.style.width = `${tw}px`;
        c.style.height = `${th}px`;
        c.dataset["layer"] = String(l);
        c.dataset["head"] = String(h);
        c.dataset["label"] = `${layerLabel(m, l)}:${headIndex(m, l, h)}`;
        c.title = `${layerLabel(m, l, true)}, ${headLabel(m, l, h)}: click to open`;
        row.push(c);
        cells.push(c);
      }
      this.canvases.push(row);
    }
    this.grid.replaceChildren(...cells);
  }

  /** Paints every layer's thumbnails; resolves once the layers on screen are painted (the rest follow). */
  async show(host: ViewHost, state: SharedState): Promise<string | null> {
    this.host = host;
    const m = state.manifest;
    const { probe, step } = state;
    const first = await lodLoaders.lod(probe, step, 0);
    if (!host.isCurrent(state)) return null;
    this.layout(m, first.Sq, first.Sk);
    this.shown = state;
    this.grid.dataset["painted"] = "0";
    this.grid.dataset["done"] = "0";
    let painted = 0;
    const paint = (l: number, thumbs: Uint8Array, Sq: number, Sk: number): void => {
      const row = this.canvases[l] ?? [];
      row.forEach((c, h) => {
        const ctx = c.getContext("2d");
        if (!ctx || c.width !== Sk || c.height !== Sq) return;
        const img = ctx.createImageData(Sk, Sq);
        const px = new Uint32Array(img.data.buffer);
        const lut = new Uint32Array(this.colors.buffer);
        const off = h * Sq * Sk;
        for (let i = 0; i < Sq * Sk; i++) px[i] = lut[thumbs[off + i] as number] as number;
        ctx.putImageData(img, 0, 0);
      });
      this.grid.dataset["painted"] = String(++painted);
    };
    paint(0, first.thumbs, first.Sq, first.Sk);
    this.legend.set(
      { map: VIRIDIS, lo: 0, hi: 1, scale: "sqrt", title: "attention weight (largest in each cell)" },
      160,
    );
    // Layers on screen first (the rows above the fold), the rest after: first paint does not wait for 32 layers.
    const rowH = (this.canvases[0]?.[0]?.getBoundingClientRect().height ?? 40) + 4;
    const top = this.grid.getBoundingClientRect().top;
    const onScreen = Math.max(1, Math.ceil(((window.innerHeight || 900) - Math.max(0, top)) / rowH));
    let next = 1;
    const worker = async (): Promise<void> => {
      while (next < m.num_layers && host.isCurrent(state)) {
        const l = next++;
        const lod = await lodLoaders.lod(probe, step, l);
        if (host.isCurrent(state)) paint(l, lod.thumbs, lod.Sq, lod.Sk);
      }
    };
    const workers = Array.from({ length: IN_FLIGHT }, worker);
    const all = Promise.all(workers).then(() => {
      if (host.isCurrent(state)) this.grid.dataset["done"] = "1";
    });
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (painted >= Math.min(onScreen, m.num_layers) || !host.isCurrent(state)) resolve();
        else requestAnimationFrame(check);
      };
      all.catch(reject);
      check();
    });
    const notes: string[] = [];
    if (state.compare) notes.push("Compare with is not drawn at this size");
    if (m.kept && (m.kept.q || m.kept.k)) notes.push("the token subset is not applied to thumbnails");
    return (
      (notes.length ? `(${notes.join("; ")}) · ` : "") +
      `${m.num_layers} layers × ${m.num_heads} heads · ${first.Q.toLocaleString("en-US")} tokens · ` +
      `each thumbnail the largest weight of ${Math.ceil(first.Q / first.Sq)} × ${Math.ceil(first.K / first.Sk)} ` +
      "weights per cell · click a thumbnail to open that head"
    );
  }
}

function text(cls: string, t: string): HTMLDivElement {
  const d = document.createElement("div");
  d.className = cls;
  d.textContent = t;
  return d;
}
