// Matrix mode: every layer × head as a small scatter of the batch's queries (green) and keys (pink), drawn as
// pixels (72 heads × thousands of points stay cheap), each with its faithfulness score. The server sends the
// points already fitted to each head's box as bytes.

import type { MatrixLayout } from "./api";
import { el, fmt } from "./dom";
import { interleave, K_RGB, Q_RGB } from "./points";
import { headIndex, layerIndex } from "../../data/labels";
import type { Manifest } from "../../data/api";

const CELL = 104; // matrix cell, CSS px

export class MatrixGrid {
  readonly el = el("div", "emb-matrix");
  private cells: HTMLCanvasElement[] = [];
  private cellScores: HTMLElement[] = [];
  private shape = "";
  /** Faithfulness of every painted cell (NaN: not painted yet), for the mean the test hooks read. */
  private scores = new Float32Array(0);
  /** Why the matrix does not show the chosen colouring (the view's root shows it above the grid). */
  readonly note = el("div", "emb-note-line");

  /** `m`: the probe's manifest, for the model's layer / head numbers (a logged subset is not renumbered). */
  private build(L: number, H: number, m: Pick<Manifest, "layers">): void {
    const key = JSON.stringify([L, H, m.layers?.map((x) => [x.index, x.heads]) ?? null]);
    if (key === this.shape) return;
    this.shape = key;
    this.scores = new Float32Array(L * H).fill(NaN);
    const dpr = window.devicePixelRatio || 1;
    this.el.style.gridTemplateColumns = `auto repeat(${H}, ${CELL + 2}px)`;
    const children: HTMLElement[] = [el("div")];
    for (let h = 0; h < H; h++) children.push(el("div", "emb-col-label", `H${headIndex(m, 0, h)}`));
    this.cells = [];
    this.cellScores = [];
    for (let l = 0; l < L; l++) {
      const ln = layerIndex(m, l);
      children.push(el("div", "emb-row-label", `L${ln}`));
      for (let h = 0; h < H; h++) {
        const cell = el("div", "emb-cell");
        cell.dataset["layer"] = String(l);
        cell.dataset["head"] = String(h);
        const hn = headIndex(m, l, h);
        cell.title = `Layer ${ln}, head ${hn}: click for the single-head view`;
        const c = el("canvas");
        c.width = Math.round(CELL * dpr);
        c.height = Math.round(CELL * dpr);
        c.style.width = `${CELL}px`;
        c.style.height = `${CELL}px`;
        const score = el("div", "emb-cell-score");
        cell.append(c, el("div", "emb-cell-label", `L${ln} H${hn}`), score);
        this.cells.push(c);
        this.cellScores.push(score);
        children.push(cell);
      }
    }
    this.el.replaceChildren(...children);
  }

  /** Paints the heads of `m` (layers m.layer0 … in a grid of `layers` rows: the matrix arrives a few layers at a
   * time); the shell's test hooks read the timings and scores off `root`. `rgbOf`: colour of point i (the view's
   * Colour setting), null: query green / key pink. */
  paint(
    m: MatrixLayout,
    layers: number,
    root: HTMLElement,
    names: Pick<Manifest, "layers">,
    rgbOf: ((i: number) => [number, number, number]) | null = null,
    noNorms = false,
  ): void {
    const sampled = m.scoreQueries;
    this.build(Math.max(layers, m.layer0 + m.L), m.H, names);
    this.note.textContent =
      (rgbOf ? "Colour as chosen (keys as their queries' scheme)" : "Green: queries · pink: keys") +
      " · ρ: faithfulness of the picture (1 = it ranks keys exactly as q·k does" +
      (sampled ? `; on ${sampled} evenly spaced queries` : "") +
      ") · click a head to open it" +
      (m.index ? ` · ${m.N.toLocaleString("en-US")} sampled points per head` : "") +
      (noNorms ? " · colour by norm is shown in the single-head view" : "");
    const t0 = performance.now();
    const first = m.layer0 * m.H;
    for (let p = 0; p < m.L * m.H; p++) {
      const c = first + p;
      const canvas = this.cells[c];
      if (!canvas) continue;
      const ctx = canvas.getContext("2d");
      if (!ctx) continue;
      const W = canvas.width;
      const img = ctx.createImageData(W, canvas.height);
      const d = img.data;
      const pad = Math.round(W * 0.06);
      const span = W - 2 * pad - 2;
      const base = p * m.N * 2;
      const r = Math.max(1, Math.round(W / 70));
      for (let n = 0; n < m.N; n++) {
        const i = interleave(n, m.numQueries, m.N);
        const px = pad + Math.round(((m.xy[base + 2 * i] as number) / 255) * span);
        const py = pad + Math.round((1 - (m.xy[base + 2 * i + 1] as number) / 255) * span);
        const rgb = rgbOf ? rgbOf(m.index ? (m.index[i] as number) : i) : i < m.numQueries ? Q_RGB : K_RGB;
        for (let dy = 0; dy <= r; dy++) {
          let o = ((py + dy) * W + px) * 4;
          for (let dx = 0; dx <= r; dx++, o += 4) {
            d[o] = rgb[0];
            d[o + 1] = rgb[1];
            d[o + 2] = rgb[2];
            d[o + 3] = 200;
          }
        }
      }
      ctx.putImageData(img, 0, 0);
      const score = this.cellScores[c];
      if (score) {
        score.textContent = `ρ ${fmt(m.faithfulness[p])}`;
        score.title =
          `faithfulness (mean per-query Spearman of 2-D distance vs q·k` +
          (sampled ? `, over ${sampled} evenly spaced queries` : "") +
          `): ${fmt(m.faithfulness[p])}; original space ${fmt(m.original[p])}; q/k mixing ${fmt(m.mixing[p])}`;
      }
      this.scores[c] = m.faithfulness[p] as number;
    }
    root.dataset["embPaintMs"] = (performance.now() - t0).toFixed(1);
    const painted = Array.from(this.scores).filter((v) => Number.isFinite(v));
    const mean = painted.reduce((a, b) => a + b, 0) / Math.max(1, painted.length);
    root.dataset["embMeanFaithfulness"] = mean.toFixed(3);
  }
}
