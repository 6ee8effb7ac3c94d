// Q/K embedding view (AttentionViz-style joint query-key embedding, docs/embedding.md).
// Matrix mode: every layer × head as a small scatter of the probe batch's queries (green) and keys (pink), with
// its faithfulness score; click one to open the single-head view. Single-head mode: one head large, colour by
// kind / position / token / norm / probe, hover for the token and its sentence, click a query to draw lines to
// the keys it attends to most (real attention, from the attention route), token search. PCA paints at once; the
// default "faithful" layout (and t-SNE/UMAP) is computed by the server in the background (progress shown) and
// animates in; moving the step slider animates points because layouts are aligned across steps.
// This file owns the controls, the batch and the mode switch with its layout requests and polling; matrix.ts and
// single.ts draw the two modes.

import { HttpError } from "../../data/api";
import type { SharedState, View, ViewHost } from "../../shell/view";
import {
  fetchBatchInfo,
  fetchHead,
  isPending,
  offerSettings,
  METHOD_LABEL,
  METHODS,
  type BatchInfo,
  type HeadLayout,
  type MatrixLayout,
  type Method,
  type Options,
  type Pending,
} from "./api";
import { el, installEmbeddingStyles } from "./dom";
import { MatrixGrid } from "./matrix";
import { loadMatrix } from "./matrix_loader";
import { page } from "../../shell/page";
import { batchOf, buildPoints, pointRgb, type ColorBy, type Points } from "./points";
import { SingleHead } from "./single";
import { headIndex, layerIndex } from "../../data/labels";
import { storedHead, storedLayer } from "../../shell/deepLink";

const POLL_MS = 400;

export class EmbeddingView implements View {
  readonly id = "embedding";
  readonly label = "Q/K embedding";
  readonly usesLayer = false;
  readonly root = el("div", "emb-view");
  private readonly methodSelect = el("select");
  private readonly translateBox = el("input");
  private readonly scaleBox = el("input");
  private readonly colorSelect = el("select");
  private readonly search = el("input");
  private readonly backButton = el("button", "emb-back", "← All heads");
  private readonly status = el("span", "emb-status");
  private readonly note = el("div", "emb-note");
  private readonly matrix = new MatrixGrid();
  private readonly single = new SingleHead(this.root, () => ({
    host: this.host,
    state: this.state,
    info: this.info,
    points: this.points,
    selected: this.selected,
  }));
  private host: ViewHost | null = null;
  private state: SharedState | null = null;
  private info: BatchInfo | null = null;
  private infoKey = "";
  private points: Points | null = null;
  private mode: "matrix" | "single" = "matrix";
  private selected = { layer: 0, head: 0 };
  private opts: Options = { method: "faithful", translate: true, scale: true };
  private gen = 0;
  private pendingSel: string | null = null;
  /** The parts of the matrix on screen (one per layer, of one method): repainted when the colouring changes. */
  private lastMatrix: MatrixLayout[] = [];

  constructor() {
    installEmbeddingStyles();
    this.root.dataset["embMode"] = "matrix";
    const controls = el("div", "emb-controls");
    for (const m of METHODS) {
      const o = el("option", undefined, METHOD_LABEL[m]);
      o.value = m;
      this.methodSelect.appendChild(o);
    }
    this.methodSelect.className = "emb-method";
    this.methodSelect.value = this.opts.method;
    this.translateBox.type = "checkbox";
    this.translateBox.checked = true;
    this.translateBox.className = "emb-translate";
    this.scaleBox.type = "checkbox";
    this.scaleBox.checked = true;
    this.scaleBox.className = "emb-scale";
    for (const [v, t] of [
      ["kind", "query / key"],
      ["position", "position"],
      ["token", "token"],
      ["norm", "norm"],
      ["probe", "probe input"],
    ] as const) {
      const o = el("option", undefined, t);
      o.value = v;
      this.colorSelect.appendChild(o);
    }
    this.colorSelect.className = "emb-color";
    this.search.type = "search";
    this.search.placeholder = "search tokens";
    this.search.className = "emb-search";
    this.backButton.type = "button";
    this.backButton.style.display = "none";
    const lab = (text: string, input: HTMLElement, title: string): HTMLLabelElement => {
      const l = el("label");
      l.title = title;
      if (input instanceof HTMLSelectElement) l.append(document.createTextNode(text), input);
      else l.append(input, document.createTextNode(text));
      return l;
    };
    controls.append(
      this.backButton,
      lab("Layout", this.methodSelect, "Projection to 2-D (faithful: distance ranks keys as q·k does)"),
      lab(" centre keys", this.translateBox, "Translate keys so their centroid is the queries' (softmax unchanged)"),
      lab(" equal spread", this.scaleBox, "Scale q by c and k by 1/c so both clouds spread equally (q·k unchanged)"),
      lab("Colour", this.colorSelect, "Point colour"),
      this.search,
      this.status,
    );
    this.note.style.display = "none";
    this.root.append(controls, this.note, this.matrix.note, this.matrix.el, this.single.el, this.single.tip);

    const rerun = (): void => {
      this.opts = {
        method: this.methodSelect.value as Method,
        translate: this.translateBox.checked,
        scale: this.scaleBox.checked,
      };
      void this.refresh();
    };
    this.methodSelect.addEventListener("change", rerun);
    this.translateBox.addEventListener("change", rerun);
    this.scaleBox.addEventListener("change", rerun);
    this.colorSelect.addEventListener("change", () => {
      this.single.setColorBy(this.colorSelect.value as ColorBy);
      for (const m of [...this.lastMatrix]) this.paint(m); // the Colour setting applies to every head's scatter
    });
    this.search.addEventListener("input", () => {
      this.single.updateSearch(this.search.value);
      this.single.draw();
    });
    this.backButton.addEventListener("click", () => this.setMode("matrix"));
    this.matrix.el.addEventListener("click", (e) => {
      const cell = (e.target as Element).closest<HTMLElement>(".emb-cell");
      if (!cell) return;
      this.selected = { layer: Number(cell.dataset["layer"]), head: Number(cell.dataset["head"]) };
      this.setMode("single");
    });
    (page().hooks as Record<string, unknown>)["__tbaEmb"] = {
      /** Client coordinates of point i in the single-head canvas (tests). */
      screenOf: (i: number): [number, number] | null => this.single.screenOf(i, this.mode === "single"),
      numQueries: (): number => this.points?.numQueries ?? 0,
    };
  }

  // -- shell contract ------------------------------------------------------------------------------------
  async show(host: ViewHost): Promise<void> {
    this.host = host;
    const state = host.state;
    this.state = null;
    if (!state.manifest.has_qk) {
      this.message(
        "Queries and keys were not logged for this probe, so there is no Q/K embedding.\n" +
          "Log a probe batch with add_attention_batch(prefix, attentions, tokens=..., queries=..., keys=...) " +
          "(or add_attention(..., queries=q, keys=k), or the capture API) to see it.",
      );
      return;
    }
    try {
      await this.showBatch(host, state);
    } catch (e) {
      if (e instanceof HttpError && e.status === 404 && host.isCurrent(state)) {
        this.message(e.message);
        return;
      }
      throw e;
    }
  }

  private message(text: string): void {
    this.gen++;
    this.note.textContent = text;
    this.note.style.display = "";
    this.matrix.el.style.display = "none";
    this.single.el.style.display = "none";
  }

  private async showBatch(host: ViewHost, state: SharedState): Promise<void> {
    this.note.style.display = "none";
    const run = state.probe.run;
    const tag = batchOf(state.probe.tag);
    const key = `${run}\u0000${tag}`;
    if (key !== this.infoKey || !this.info) {
      const info = await fetchBatchInfo(run, tag);
      if (!host.isCurrent(state)) return;
      this.info = info;
      this.infoKey = key;
      this.points = buildPoints(info);
      this.single.reset();
      this.opts = offerSettings(info, this.methodSelect, this.translateBox, this.scaleBox, this.opts);
    }
    const info = this.info;
    if (!info.has_qk) {
      this.message(`Queries and keys were not logged for every probe of batch ${JSON.stringify(tag)}.`);
      return;
    }
    if (!info.steps.includes(state.step)) {
      this.message(
        `Step ${state.step} is not logged for every probe of batch ${JSON.stringify(tag)} ` +
          `(${info.probes.length} probes); steps they share: ${info.steps.slice(0, 20).join(", ")}` +
          (info.steps.length > 20 ? ", …" : ""),
      );
      return;
    }
    this.state = state;
    const [linkLayer, linkHead] = (this.pendingSel ?? "").split(":");
    this.pendingSel = null;
    const sl = storedLayer(state.manifest, linkLayer);
    const sh = sl === null ? null : storedHead(state.manifest, sl, linkHead);
    if (sl !== null && sh !== null && sl < info.num_layers && sh < info.num_heads) {
      this.selected = { layer: sl, head: sh }; // a deep link to one head: open it large
      this.mode = "single";
      this.root.dataset["embMode"] = "single";
      this.backButton.style.display = "";
      this.single.reset();
    }
    if (this.selected.layer >= info.num_layers || this.selected.head >= info.num_heads)
      this.selected = { layer: 0, head: 0 };
    this.single.updateSearch(this.search.value);
    this.single.updateLegend();
    const tokens = this.points ? this.points.numQueries : 0;
    host.setSummary(
      `${info.probes.length} probe input${info.probes.length === 1 ? "" : "s"} · ${tokens} tokens · ` +
        `${info.num_layers} layers × ${info.num_heads} heads · ${this.points ? this.points.token.length : 0} points per head`,
    );
    await this.refresh();
  }

  hide(): void {
    this.gen++;
    this.single.hideTip();
  }

  linkParams(): Record<string, string> {
    const m = this.state?.manifest;
    const { layer, head } = this.selected;
    return { sel: this.mode === "single" && m ? `${layerIndex(m, layer)}:${headIndex(m, layer, head)}` : "" };
  }

  /** `sel=L:H` (the model's numbers) opens that head in single-head mode. */
  restoreLink(params: Record<string, string>): void {
    this.pendingSel = params["sel"] ?? null;
  }

  onKey(e: KeyboardEvent): boolean {
    if (e.key === "Escape" && this.mode === "single") {
      this.setMode("matrix");
      return true;
    }
    return false;
  }

  // -- modes ---------------------------------------------------------------------------------------------
  private setMode(mode: "matrix" | "single"): void {
    this.mode = mode;
    this.root.dataset["embMode"] = mode;
    this.backButton.style.display = mode === "single" ? "" : "none";
    this.matrix.el.style.display = mode === "matrix" ? "" : "none";
    this.single.el.style.display = mode === "single" ? "" : "none";
    if (mode === "single") this.single.reset();
    this.host?.updateLink();
    void this.refresh();
  }

  /** Paints the current mode; PCA (or a cached layout) first, then polls for a nonlinear layout. */
  private async refresh(): Promise<void> {
    const gen = ++this.gen;
    const host = this.host;
    const state = this.state;
    const info = this.info;
    if (!host || !state || !info) return;
    this.matrix.el.style.display = this.mode === "matrix" ? "" : "none";
    this.single.el.style.display = this.mode === "single" ? "" : "none";
    const opts = { ...this.opts };
    const run = state.probe.run;
    const live = (): boolean => gen === this.gen && host.isCurrent(state);
    if (this.mode === "matrix") {
      // PCA first, then the slower layout, a layer at a time (matrix_loader.ts): resolves on the first layer.
      this.lastMatrix = [];
      let painted = 0;
      this.root.dataset["embLayersPainted"] = "0";
      this.root.dataset["embPartMethod"] = "";
      this.status.textContent = "";
      await loadMatrix(
        {
          run,
          tag: info.tag,
          step: state.step,
          layers: info.num_layers,
          whole: info.only !== undefined,
          live,
          paint: (m) => {
            if (m.method !== this.root.dataset["embPartMethod"]) painted = 0;
            this.paint(m);
            painted += m.L;
            this.root.dataset["embPartMethod"] = m.method;
            this.root.dataset["embLayersPainted"] = String(painted);
          },
          complete: (method) => {
            this.status.textContent = "";
            this.root.dataset["embMethod"] = method;
          },
          progress: (method, fraction) => this.setStatus(method, fraction),
          fail: (e) => (this.status.textContent = e.message),
        },
        opts,
      );
      return;
    }
    const load = (o: Options): Promise<HeadLayout | Pending> =>
      fetchHead(run, info.tag, state.step, this.selected.layer, this.selected.head, o);
    let first = await load(opts);
    if (!live()) return;
    const keepOld = this.single.showing;
    if (keepOld) {
      // A head is on screen (e.g. the step changed): keep it until the new layout arrives, a fraction of a second
      // for "faithful", so the points animate once from the old step to the new one. Give up waiting after 2 s.
      const deadline = performance.now() + 2000;
      while (isPending(first) && performance.now() < deadline) {
        this.setStatus(opts.method, first.progress);
        await new Promise((r) => window.setTimeout(r, 120));
        if (!live()) return;
        first = await load(opts);
        if (!live()) return;
      }
    }
    if (isPending(first)) {
      // Show PCA while the requested layout is computed (unless a head stays on screen, above).
      if (!keepOld) {
        const pca = await load({ ...opts, method: "pca" });
        if (!live()) return;
        if (!isPending(pca)) this.paint(pca);
      }
      this.setStatus(opts.method, first.progress);
      const poll = async (): Promise<void> => {
        if (!live()) return;
        let next;
        try {
          next = await load(opts);
        } catch (e) {
          if (live()) this.status.textContent = (e as Error).message;
          return;
        }
        if (!live()) return;
        if (isPending(next)) {
          this.setStatus(opts.method, next.progress);
          window.setTimeout(() => void poll(), POLL_MS);
        } else {
          this.status.textContent = "";
          this.paint(next);
        }
      };
      window.setTimeout(() => void poll(), POLL_MS);
      return;
    }
    this.status.textContent = "";
    this.paint(first);
  }

  private setStatus(method: Method, progress: number): void {
    this.status.textContent = `computing ${METHOD_LABEL[method].replace(" (default)", "")} layout… `;
    const p = el("progress");
    p.max = 1;
    p.value = progress;
    this.status.appendChild(p);
  }

  private paint(layout: MatrixLayout | HeadLayout): void {
    if ("L" in layout) {
      this.lastMatrix = [...this.lastMatrix.filter((x) => x.layer0 !== layout.layer0), layout];
      const p = this.points;
      const by = this.colorSelect.value as ColorBy;
      // The matrix has no per-head norms: colour by norm there falls back to query / key (the legend says so).
      const rgbOf = p && by !== "kind" && by !== "norm" ? (i: number) => pointRgb(p, by, i) : null;
      const layers = this.info?.num_layers ?? layout.L;
      this.matrix.paint(layout, layers, this.root, this.state?.manifest ?? {}, rgbOf, by === "norm");
    } else this.single.setLayout(layout);
  }
}
