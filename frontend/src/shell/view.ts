// The contract between the shell (app.ts) and the views (views/<view>/index.ts). See frontend/VIEWS.md.
// The shell owns the shared selection (probe, step, layer), the toolbar that edits it, the caches and the page
// state flags tests wait on; a view owns one root element and draws the shared selection into it.

import type { Attention, HeadStats, Manifest, QK } from "../data/api";

export interface ProbeRef {
  run: string;
  tag: string;
}

/** One immutable snapshot of the shared selection; a new object is made on every change. */
export interface SharedState {
  readonly probe: ProbeRef;
  /** Every probe of the logdir, for views that compare runs. */
  readonly probes: readonly ProbeRef[];
  /** Logged steps of `probe`, ascending. */
  readonly steps: readonly number[];
  readonly stepIndex: number;
  readonly step: number;
  /** Already clamped to the manifest's layer count. */
  readonly layer: number;
  /** Manifest of (probe, step). */
  readonly manifest: Manifest;
  /**
   * The toolbar's "Compare with" choice resolved for this step: views that support it draw current − reference
   * (head, model, matrix, diff). null when off, or when the choice has no target at this step (`compareNote` says).
   */
  readonly compare: CompareRef | null;
  readonly compareNote: string;
}

export interface CompareRef {
  probe: ProbeRef;
  step: number;
  /** "step 100" or "run / tag at step 100". */
  label: string;
}

export interface Selection {
  step?: number;
  layer?: number;
  probe?: ProbeRef;
  view?: string;
  /** Link parameters handed to the target view's restoreLink() before its next show(), as a deep link's would be
   * (e.g. `{head: "3"}`, the model's numbers): how one view opens another at a head. */
  link?: Record<string, string>;
}

export interface ViewHost {
  /** The latest shared state. */
  readonly state: SharedState;
  /**
   * Latest-request-wins: after every await a view checks `host.isCurrent(state)` and stops when false, so a
   * slow load never paints over a newer selection.
   */
  isCurrent(state: SharedState): boolean;
  // Cached loaders (LRU; concurrent requests share one fetch). `probe` defaults to the shared probe.
  manifest(step: number, probe?: ProbeRef): Promise<Manifest>;
  attention(step: number, layer: number, probe?: ProbeRef): Promise<Attention>;
  /** One head ([1, Q, K]); sliced from the cached layer when that is loaded, else fetched alone (long sequences). */
  attentionHead(step: number, layer: number, head: number, probe?: ProbeRef): Promise<Attention>;
  /** Rejects with HttpError 404 when q/k were not logged. */
  qk(step: number, layer: number, probe?: ProbeRef): Promise<QK>;
  /** null when the probe has no statistics series. */
  headStats(probe?: ProbeRef): Promise<HeadStats | null>;
  /** Changes the shared selection (and optionally the active tab); views' show() is then called again. */
  select(sel: Selection): void;
  /** The line under the toolbar ("6 layers · 12 heads · …"); cleared after a show() that did not set it. */
  setSummary(text: string): void;
  /** The view's own selection changed outside show() (a head toggled, a token locked): rewrite the deep link. */
  updateLink(): void;
}

export interface View {
  /** Stable id: tab `.tba-tab[data-view=id]`, root `[data-view-root=id]`. */
  readonly id: string;
  readonly label: string;
  readonly root: HTMLElement;
  /** false hides the shared layer selector while this view is active (e.g. the model view shows all layers). */
  readonly usesLayer?: boolean;
  /**
   * Called when the tab becomes active and whenever the shared state changes while it is. Resolve once the
   * picture is painted: the shell then sets `body[data-state=ready]`. Reject to show an error.
   */
  show(host: ViewHost): Promise<void>;
  /** The tab was left: drop listeners/timers; keep what makes a return fast. */
  hide?(): void;
  /**
   * Warm the cache for a neighbouring `step` (called after each paint for ±2 steps). Default, for views that use
   * the layer: that step's manifest and current layer. Views that draw something else (one head, q/k) say so.
   */
  prefetch?(host: ViewHost, step: number): void;
  /** Keys the shell does not handle itself (←/→, Esc, …); return true when handled. */
  onKey?(e: KeyboardEvent): boolean;
  /**
   * Deep links (shell/deepLink.ts): the view's own selection (heads, query token, zoom, …) as URL parameters, read
   * after every paint; layers and heads with the model's numbers (data/labels.ts).
   */
  linkParams?(): Record<string, string>;
  /** The parameters of the link the page was opened with, given once, before the view's first show(). */
  restoreLink?(params: Record<string, string>): void;
}

export type ViewFactory = () => View;
