// The shell: owns the shared selection (probe, step, layer), the toolbar and tabs, and the order in which data is
// loaded (latest request wins; neighbouring steps are prefetched); the active view (views.ts) draws the selection.
// The contract between the two is view.ts (frontend/VIEWS.md); the cached loaders are loaders.ts.

import { fetchRuns, fetchSteps, type Attention, type HeadStats, type Manifest, type QK } from "../data/api";
import { CompareControl } from "../controls/compareControl";
import { PartTabs } from "../controls/partTabs";
import { SearchControl } from "../controls/searchControl";
import { SpecialTokensSelect } from "../controls/specialTokens";
import { LayerSelect, ProbeSelect, StepSlider, tabButton } from "../controls/widgets";
import { layerIndex } from "../data/labels";
import {
  encodeLink,
  linkInt,
  readLink,
  reloadOnPastedLink,
  shownLink,
  storedLayer,
  writeLink,
  type LinkParams,
} from "./deepLink";
import { shellKey } from "./keys";
import { exportMenu } from "../export/menu";
import { onHostReload } from "./hostEvents";
import { Loaders } from "./loaders";
import { page } from "./page";
import { installStyles } from "./styles";
import { followTheme } from "./theme";
import type { ProbeRef, Selection, SharedState, View, ViewHost } from "./view";
import { VIEWS } from "./views";

declare global {
  interface Window {
    /** performance.now() when the first view finished painting (benchmark hook). */
    __tbaFirstPaintMs?: number;
    /** The shell, for tests and benchmarks (e.g. `__tba.select({view: "model"})`). */
    __tba?: App;
  }
}

const PREFETCH_RADIUS = 2;
const sameProbe = (a: ProbeRef | null | undefined, b: ProbeRef | null | undefined): boolean =>
  !!a && !!b && a.run === b.run && a.tag === b.tag;

export class App implements ViewHost {
  private readonly views: View[] = [];
  private readonly factories = VIEWS;
  private active = 0;
  private readonly tabs = document.createElement("div");
  private readonly probeSelect = new ProbeSelect((p) => void this.selectProbe(p));
  private readonly layerSelect = new LayerSelect((l) => this.select({ layer: l }));
  private readonly stepSlider = new StepSlider((i) => this.select({ step: this.steps[i] as number }));
  private readonly parts = new PartTabs((probe) => this.select({ probe }));
  private readonly special = new SpecialTokensSelect(() => this.select({}));
  private readonly compare = new CompareControl(() => this.select({}));
  private readonly search = new SearchControl(
    () => this.views[this.active]?.root,
    () => this.select({}),
  );
  private readonly message = document.createElement("div");
  private readonly notice = document.createElement("div");
  private readonly summary = document.createElement("div");
  private readonly main = document.createElement("div");

  private readonly data = new Loaders(() => ({ mode: this.special.mode, filter: this.search.filter }));

  private probes: ProbeRef[] = [];
  private probe: ProbeRef | null = null;
  private steps: number[] = [];
  private stepIndex = 0;
  private layer = 0;
  // Latest-request-wins for the shell's own loads (runs, steps, manifest).
  private ticket = 0;
  private current: SharedState | null = null;
  // The link the page was opened with (shell/deepLink.ts), consumed by the first load; then the URL follows the view.
  private link: LinkParams = readLink();
  private summarySet = false;

  get state(): SharedState {
    if (!this.current) throw new Error("no shared state yet");
    return this.current;
  }

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
    this.tabs.className = "tba-tabs";
    this.tabs.setAttribute("role", "tablist");
    // Ids and labels of unbuilt views: build lazily, but the tabs need them now.
    this.factories.forEach((_, i) => {
      const v = this.view(i);
      this.tabs.appendChild(tabButton(v.id, v.label, () => this.select({ view: v.id })));
    });
    toolbar.append(
      this.tabs,
      this.probeSelect.el,
      this.parts.el,
      this.layerSelect.el,
      this.stepSlider.el,
      this.compare.el,
      this.special.el,
      this.search.el,
      exportMenu(this),
      reload,
    );
    this.summary.className = "tba-summary";
    this.notice.className = "tba-notice";
    this.notice.id = "notice";
    this.message.className = "tba-message";
    this.message.id = "message";
    this.main.className = "tba-main";
    // In a notebook, hidden: there is no server to ask for new runs or steps.
    if (page().embedded) reload.style.display = "none";
    page().root.append(toolbar, this.summary, this.notice, this.message, this.main);
    // The app's own body, not the document: in a notebook the rest of the page's keys are the notebook's.
    page().root.addEventListener("keydown", (e) => this.onKey(e));
    followTheme(() => this.select({})); // canvases pick theme colours when they paint
    reloadOnPastedLink();
    this.special.restore(this.link["special"]);
    this.compare.restore(this.link["cmp"]);
    const linked = this.factories.findIndex((_, j) => this.view(j).id === this.link["view"]);
    this.activate(Math.max(0, linked), false);
    page().hooks.__tba = this;
    if (!page().embedded) onHostReload(() => void this.start()); // TensorBoard reloaded: look for new runs and steps
    void this.start();
  }

  private view(i: number): View {
    let v = this.views[i];
    if (!v) {
      v = (this.factories[i] as () => View)();
      v.root.dataset["viewRoot"] = v.id;
      v.root.classList.add("tba-view");
      v.root.style.display = "none";
      this.views[i] = v;
      this.main.appendChild(v.root);
    }
    return v;
  }

  private activate(i: number, render = true): void {
    const prev = this.views[this.active];
    if (prev && this.active !== i) {
      prev.hide?.();
      prev.root.style.display = "none";
    }
    this.active = i;
    const v = this.view(i);
    page().root.dataset["view"] = v.id;
    this.tabs.querySelectorAll<HTMLElement>(".tba-tab").forEach((t, j) => {
      t.classList.toggle("active", j === i);
      t.setAttribute("aria-selected", String(j === i));
    });
    // Hidden but in place: the toolbar does not reflow when a tab without layers is chosen.
    this.layerSelect.el.style.visibility = v.usesLayer === false ? "hidden" : "";
    if (render && this.current) void this.render();
  }

  // -- ViewHost ------------------------------------------------------------------------------------
  isCurrent(state: SharedState): boolean {
    return state === this.current;
  }

  // Loaders: the shared probe unless the view asks for another.
  manifest(step: number, probe: ProbeRef = this.probe as ProbeRef): Promise<Manifest> {
    return this.data.manifest(step, probe);
  }

  attention(step: number, layer: number, probe: ProbeRef = this.probe as ProbeRef): Promise<Attention> {
    return this.data.attention(step, layer, probe);
  }

  attentionHead(
    step: number,
    layer: number,
    head: number,
    probe: ProbeRef = this.probe as ProbeRef,
  ): Promise<Attention> {
    return this.data.attentionHead(step, layer, head, probe);
  }

  qk(step: number, layer: number, probe: ProbeRef = this.probe as ProbeRef): Promise<QK> {
    return this.data.qk(step, layer, probe);
  }

  headStats(probe: ProbeRef = this.probe as ProbeRef): Promise<HeadStats | null> {
    return this.data.headStats(probe);
  }

  select(sel: Selection): void {
    if (sel.view !== undefined) {
      const i = this.factories.findIndex((_, j) => this.view(j).id === sel.view);
      if (i >= 0 && i !== this.active) this.activate(i, false);
    }
    if (sel.link) this.link = { ...sel.link, view: sel.view ?? this.view(this.active).id };
    if (sel.layer !== undefined) this.layer = sel.layer;
    if (sel.step !== undefined) {
      const i = this.steps.indexOf(sel.step);
      if (i >= 0) this.stepIndex = i;
    }
    if (sel.probe && !sameProbe(sel.probe, this.probe)) {
      void this.selectProbe(sel.probe, false, sel.step); // the step asked for, not the old probe's
      return;
    }
    void this.update();
  }

  setSummary(text: string): void {
    this.summary.textContent = text;
    this.summarySet = true;
  }

  /** What is shown, as a deep link (shell/deepLink.ts); null before the first state. */
  private shownNow(): LinkParams | null {
    const s = this.current;
    return s ? shownLink(s, this.view(this.active), { cmp: this.compare.code(), special: this.special.code() }) : null;
  }

  currentLink(): string {
    const l = this.shownNow();
    return l ? encodeLink(l) : "";
  }

  updateLink(): void {
    const l = this.shownNow();
    if (l && page().root.dataset["state"] === "ready") writeLink(l);
  }

  // -- loading -------------------------------------------------------------------------------------
  private setState(state: "loading" | "ready" | "error" | "empty", text = ""): void {
    page().root.dataset["state"] = state;
    this.message.textContent = text;
    this.message.classList.toggle("error", state === "error");
    const v = this.views[this.active];
    if (v) v.root.style.display = state === "error" || state === "empty" ? "none" : "";
  }

  activeView(): View {
    return this.view(this.active);
  }

  fail(e: unknown): void {
    this.setState("error", `Could not load attention data: ${e instanceof Error ? e.message : String(e)}`);
  }

  /** (Re)loads the run list, keeping the current probe when it still exists. */
  async start(): Promise<void> {
    const ticket = ++this.ticket;
    this.setState("loading");
    this.data.clearStats(); // new steps change the statistics series
    try {
      const runs = await fetchRuns();
      if (ticket !== this.ticket) return;
      // Unreadable series do not stop the rest from loading; say which and why (text only: names are user data).
      this.notice.textContent = runs
        .flatMap((r) => (r.problems ?? []).map((p) => `${r.run} / ${p.tag}: ${p.message}`))
        .join("\n");
      const probes = runs.flatMap((r) => r.probes.map((tag) => ({ run: r.run, tag })));
      this.probes = probes;
      if (probes.length === 0) {
        this.probeSelect.set([], null);
        this.setState(
          "empty",
          "No attention data found in this logdir yet.\n\nLog some with tb_attention.AttentionWriter(logdir)." +
            'add_attention("probe/name", attn, tokens=tokens, step=step), then press Reload.',
        );
        return;
      }
      const keep = probes.find((p) => sameProbe(p, this.probe));
      const linked = probes.find((p) => p.run === this.link["run"] && p.tag === this.link["tag"]);
      const step = keep ? undefined : (linkInt(this.link["step"]) ?? undefined);
      await this.selectProbe(keep || linked || (probes[0] as ProbeRef), true, step);
    } catch (e) {
      if (ticket === this.ticket) this.fail(e);
    }
  }

  /** `wantStep`: the step to show when the probe has it (else the current step, else the latest). */
  private async selectProbe(probe: ProbeRef, refreshList = false, wantStep?: number): Promise<void> {
    const ticket = ++this.ticket;
    this.setState("loading");
    try {
      const steps = await fetchSteps(probe.run, probe.tag);
      if (ticket !== this.ticket) return;
      if (refreshList) this.probeSelect.set(this.probes, probe);
      if (steps.length === 0) {
        this.setState("empty", `${probe.run} / ${probe.tag} has no steps yet.`);
        return;
      }
      // Keep the step number when the new probe has it (comparing probes at one step); else show the latest.
      const current = wantStep ?? (this.probe ? this.steps[this.stepIndex] : undefined);
      const same = current === undefined ? -1 : steps.indexOf(current);
      this.probe = probe;
      this.probeSelect.set(this.probes, probe);
      this.parts.sync(probe, this.probes);
      this.steps = steps;
      this.stepIndex = same >= 0 ? same : steps.length - 1;
      this.compare.sync(probe, steps, this.probes);
      await this.update();
    } catch (e) {
      if (ticket === this.ticket) this.fail(e);
    }
  }

  /** Builds the new shared state (manifest of the step, clamped layer) and renders the active view. */
  private async update(): Promise<void> {
    if (!this.probe || this.steps.length === 0) return;
    const ticket = ++this.ticket;
    const probe = this.probe;
    this.stepSlider.set(this.steps, this.stepIndex);
    const step = this.steps[this.stepIndex] as number;
    page().root.dataset["state"] = "loading";
    // Start the current layer's attention with the manifest instead of after it (one round trip less on first
    // paint); a layer the new probe lacks just fails quietly here and is clamped below.
    const v = this.view(this.active);
    if (v.usesLayer !== false && !v.prefetch) this.data.warmLayer(step, this.layer, probe);
    try {
      const manifest = await this.manifest(step, probe);
      if (ticket !== this.ticket) return;
      const linkedLayer = storedLayer(manifest, this.link["layer"]); // the model's number in the link
      if (linkedLayer !== null) this.layer = linkedLayer;
      this.layer = Math.min(this.layer, Math.max(0, manifest.num_layers - 1));
      this.layerSelect.set(manifest.num_layers, this.layer, (l) => String(layerIndex(manifest, l)));
      const cmp = this.compare.resolve(probe, this.steps, this.stepIndex);
      this.current = {
        compare: cmp.ref,
        compareNote: cmp.note,
        probe,
        probes: this.probes,
        steps: this.steps,
        stepIndex: this.stepIndex,
        step,
        layer: this.layer,
        manifest,
      };
      await this.render();
    } catch (e) {
      if (ticket === this.ticket) this.fail(e);
    }
  }

  private async render(): Promise<void> {
    const state = this.current;
    if (!state) return;
    const v = this.view(this.active);
    page().root.dataset["state"] = "loading";
    v.root.style.display = "";
    // The link's view gets its own part of the link (heads, query, zoom…) once, before its first paint.
    if (this.link["view"] === v.id || (this.link["view"] === undefined && Object.keys(this.link).length)) {
      v.restoreLink?.(this.link);
    }
    this.summarySet = false;
    try {
      await v.show(this);
      if (state !== this.current || v !== this.views[this.active]) return;
      if (!this.summarySet) this.summary.textContent = ""; // never another view's (or state's) line
      this.link = {};
      page().hooks.__tbaFirstPaintMs ??= performance.now();
      const flags = page().root.dataset;
      flags["paintedStep"] = String(state.step);
      flags["paintedLayer"] = String(state.layer);
      flags["paintedView"] = v.id;
      this.setState("ready");
      this.updateLink();
      if (this.search.text) this.search.highlight(false);
      this.prefetch(state);
    } catch (e) {
      if (state === this.current) this.fail(e);
    }
  }

  /** Neighbouring steps' manifest and current layer, so scrubbing hits the cache. */
  private prefetch(state: SharedState): void {
    for (let d = 1; d <= PREFETCH_RADIUS; d++) {
      for (const i of [state.stepIndex + d, state.stepIndex - d]) {
        const step = state.steps[i];
        if (step === undefined) continue;
        this.data.rawManifest(step, state.probe).catch(() => undefined);
        const v = this.view(this.active);
        if (v.prefetch) v.prefetch(this, step);
        else if (v.usesLayer !== false) this.data.warmLayer(step, state.layer, state.probe);
      }
    }
  }

  private onKey(e: KeyboardEvent): void {
    if (this.current) shellKey(e, this.current, this.view(this.active), (sel) => this.select(sel));
  }
}
