// Entry point TensorBoard calls (plugin_entry.html does `import("./index.js").then(m => m.render())`).
// Owns the app state: which probe/step/layer is shown, the caches, and the order in which data is loaded.

import {
  fetchAttention,
  fetchHeadStats,
  fetchManifest,
  fetchRuns,
  fetchSteps,
  type Attention,
  type HeadStats,
  type Manifest,
} from "./api";
import { LruCache } from "./cache";
import { LayerSelect, ProbeSelect, StepSlider, type ProbeRef } from "./controls";
import { HeadToggles } from "./headToggles";
import { HeadView } from "./headView";
import { installStyles } from "./styles";

declare global {
  interface Window {
    /** performance.now() when the first head view finished painting (benchmark hook). */
    __tbaFirstPaintMs?: number;
    /** Durations of the last full paint and last hover redraw, ms (benchmark hook). */
    __tbaTimings?: { paintMs: number; hoverMs: number };
  }
}

const key = (...parts: (string | number)[]): string => JSON.stringify(parts);
const PREFETCH_RADIUS = 2;

class App {
  private readonly view = new HeadView();
  private readonly probeSelect = new ProbeSelect((p) => void this.selectProbe(p));
  private readonly layerSelect = new LayerSelect((l) => {
    this.layer = l;
    void this.show();
  });
  private readonly stepSlider = new StepSlider((i) => {
    this.stepIndex = i;
    void this.show();
  });
  private readonly heads = new HeadToggles(() => this.repaint());
  private readonly message = document.createElement("div");
  private readonly summary = document.createElement("div");

  private readonly attention = new LruCache<Attention>(24, 256 << 20, (a) => a.weights.byteLength);
  private readonly manifests = new LruCache<Manifest>(64, Infinity, () => 0);
  private readonly stats = new LruCache<HeadStats | null>(8, Infinity, () => 0);

  private probe: ProbeRef | null = null;
  private steps: number[] = [];
  private stepIndex = 0;
  private layer = 0;
  // Latest-request-wins: every load takes a ticket; a load whose ticket is stale when its data arrives
  // (the user has moved on) is dropped instead of painting over newer state.
  private ticket = 0;
  private shown: { step: number; layer: number; manifest: Manifest } | null = null;

  mount(): void {
    installStyles();
    const toolbar = document.createElement("div");
    toolbar.className = "tba-toolbar";
    const reload = document.createElement("button");
    reload.type = "button";
    reload.id = "reload-button";
    reload.textContent = "Reload";
    reload.title = "Look for new runs and steps";
    reload.addEventListener("click", () => void this.start());
    toolbar.append(this.probeSelect.el, this.layerSelect.el, this.stepSlider.el, reload, this.heads.el);
    this.summary.className = "tba-summary";
    this.message.className = "tba-message";
    this.message.id = "message";
    const main = document.createElement("div");
    main.className = "tba-main";
    main.appendChild(this.view.root);
    document.body.append(toolbar, this.summary, this.message, main);
    this.view.onHoverDrawn = (ms) => (this.timings().hoverMs = ms);
    void this.start();
  }

  private timings(): { paintMs: number; hoverMs: number } {
    return (window.__tbaTimings ??= { paintMs: NaN, hoverMs: NaN });
  }

  private setState(state: "loading" | "ready" | "error" | "empty", text = ""): void {
    document.body.dataset["state"] = state;
    this.message.textContent = text;
    this.message.classList.toggle("error", state === "error");
    if (state === "error" || state === "empty") this.view.root.style.display = "none";
  }

  private fail(e: unknown): void {
    this.setState("error", `Could not load attention data: ${e instanceof Error ? e.message : String(e)}`);
  }

  /** (Re)loads the run list, keeping the current probe when it still exists. */
  async start(): Promise<void> {
    const ticket = ++this.ticket;
    this.setState("loading");
    this.stats.clear(); // new steps change the statistics series
    try {
      const runs = await fetchRuns();
      if (ticket !== this.ticket) return;
      const probes = runs.flatMap((r) => r.probes.map((tag) => ({ run: r.run, tag })));
      if (probes.length === 0) {
        this.probeSelect.set([], null);
        this.setState(
          "empty",
          "No attention data found in this logdir yet.\n\nLog some with tb_attention.AttentionWriter(logdir)." +
            'add_attention("probe/name", attn, tokens=tokens, step=step), then press Reload.',
        );
        return;
      }
      const keep = this.probe && probes.find((p) => p.run === this.probe?.run && p.tag === this.probe?.tag);
      await this.selectProbe(keep || (probes[0] as ProbeRef), probes);
    } catch (e) {
      if (ticket === this.ticket) this.fail(e);
    }
  }

  private async selectProbe(probe: ProbeRef, probes?: ProbeRef[]): Promise<void> {
    const ticket = ++this.ticket;
    this.setState("loading");
    try {
      const steps = await fetchSteps(probe.run, probe.tag);
      if (ticket !== this.ticket) return;
      if (probes) this.probeSelect.set(probes, probe);
      if (steps.length === 0) {
        this.setState("empty", `${probe.run} / ${probe.tag} has no steps yet.`);
        return;
      }
      // Keep the step number when the new probe has it (comparing probes at one step); else show the latest.
      const current = this.probe && this.steps[this.stepIndex];
      const same = current === null || current === undefined ? -1 : steps.indexOf(current);
      this.probe = probe;
      this.steps = steps;
      this.stepIndex = same >= 0 ? same : steps.length - 1;
      this.stepSlider.set(steps, this.stepIndex);
      await this.show();
    } catch (e) {
      if (ticket === this.ticket) this.fail(e);
    }
  }

  private loadAttention(step: number, layer: number): Promise<Attention> {
    const { run, tag } = this.probe as ProbeRef;
    return this.attention.get(key(run, tag, step, layer), () => fetchAttention(run, tag, step, layer));
  }

  private loadManifest(step: number): Promise<Manifest> {
    const { run, tag } = this.probe as ProbeRef;
    return this.manifests.get(key(run, tag, step), () => fetchManifest(run, tag, step));
  }

  /** Loads and paints the current (probe, step, layer); layer and head selection carry over. */
  private async show(): Promise<void> {
    if (!this.probe) return;
    const ticket = ++this.ticket;
    const step = this.steps[this.stepIndex] as number;
    document.body.dataset["state"] = "loading";
    try {
      const manifest = await this.loadManifest(step);
      if (ticket !== this.ticket) return;
      const layer = Math.min(this.layer, Math.max(0, manifest.num_layers - 1));
      const attn = await this.loadAttention(step, layer);
      if (ticket !== this.ticket) return;
      // Coalesce bursts (slider drags) into at most one paint per frame.
      await new Promise((r) => requestAnimationFrame(r));
      if (ticket !== this.ticket) return;

      const left = manifest.tokens;
      const right = manifest.key_tokens ?? manifest.tokens;
      if (attn.Q !== left.length || attn.K !== right.length) {
        throw new Error(
          `attention is ${attn.Q}×${attn.K} but the step has ${left.length} query and ${right.length} key tokens`,
        );
      }
      this.layer = layer;
      this.layerSelect.set(manifest.num_layers, layer);
      const active = this.heads.setCount(attn.H);
      this.view.root.style.display = "";
      this.view.setData({ left, right, attn }, active);
      this.shown = { step, layer, manifest };
      this.paintNow();
      this.summary.textContent =
        `${manifest.num_layers} layers · ${attn.H} heads · ${left.length} query` +
        (manifest.key_tokens ? ` / ${right.length} key` : "") +
        " tokens · hover a token to isolate its attention";
      void this.updateEntropyTitles(this.probe, step, layer, attn.H);
      this.prefetch(layer);
    } catch (e) {
      if (ticket === this.ticket) this.fail(e);
    }
  }

  /** Head toggles changed: same data, new subset of heads. */
  private repaint(): void {
    if (!this.shown) return;
    this.view.setActive(this.heads.get());
    this.paintNow();
  }

  private paintNow(): void {
    const t0 = performance.now();
    this.view.paint();
    const t1 = performance.now();
    this.timings().paintMs = t1 - t0;
    window.__tbaFirstPaintMs ??= t1;
    const shown = this.shown as { step: number; layer: number };
    document.body.dataset["paintedStep"] = String(shown.step);
    document.body.dataset["paintedLayer"] = String(shown.layer);
    this.setState("ready");
  }

  private prefetch(layer: number): void {
    for (let d = 1; d <= PREFETCH_RADIUS; d++) {
      for (const i of [this.stepIndex + d, this.stepIndex - d]) {
        const step = this.steps[i];
        if (step === undefined) continue;
        this.loadManifest(step).catch(() => undefined);
        this.loadAttention(step, layer).catch(() => undefined);
      }
    }
  }

  private async updateEntropyTitles(probe: ProbeRef, step: number, layer: number, H: number): Promise<void> {
    // Statistics are a nicety: a missing head_stats series must not break the view.
    const stats = await this.stats
      .get(key(probe.run, probe.tag), () => fetchHeadStats(probe.run, probe.tag).catch(() => null))
      .catch(() => null);
    if (!this.shown || this.shown.step !== step || this.shown.layer !== layer || this.probe !== probe) return;
    const s = stats ? stats.steps.indexOf(step) : -1;
    if (!stats || s < 0 || layer >= stats.numLayers || stats.numHeads !== H) {
      this.heads.setTitles(null);
      return;
    }
    const at = (s * stats.numLayers + layer) * H;
    this.heads.setTitles(stats.entropy.subarray(at, at + H));
  }
}

let mounted = false;

export function render(): void {
  if (mounted) return; // render() is called once per iframe load; guard against double mounting anyway
  mounted = true;
  new App().mount();
}
