// The toolbar's "Compare with": another step of the probe (relative or absolute) or another run/probe at the
// same step. The choice survives step changes; it is resolved per step into SharedState.compare. Only references that
// can be compared are offered: other probes are checked against the current one (shape, and which layers and heads
// of the model they logged) in the background, and those that differ are hidden with the reason in their tooltip.

import { fetchManifest, fetchSteps } from "../data/api";
import { mismatch } from "../data/compare";
import { controlLabel } from "./widgets";
import type { CompareRef, ProbeRef } from "../shell/view";

type Choice =
  { kind: "none" } | { kind: "rel"; d: number } | { kind: "step"; step: number } | { kind: "probe"; probe: ProbeRef };

const same = (a: Choice, b: Choice): boolean => JSON.stringify(a) === JSON.stringify(b);
const MAX_CHECKED = 64; // probes checked for compatibility (two small requests each); beyond, offered unchecked

export class CompareControl {
  readonly el: HTMLLabelElement;
  private readonly select = document.createElement("select");
  private choices: Choice[] = [];
  private choice: Choice = { kind: "none" };
  private checks = 0; // latest sync wins

  constructor(onChange: () => void) {
    this.select.id = "compare-select";
    this.select.title =
      "Compare the step shown with another step, or with another run at the same step: " +
      "the head, model, matrix, neuron and diff views then draw current − reference";
    this.select.addEventListener("change", () => {
      this.choice = this.choices[Number(this.select.value)] ?? { kind: "none" };
      onChange();
    });
    this.el = controlLabel("Compare with", this.select);
  }

  /** Rebuilds the options for a probe, keeping the choice when it still exists. */
  sync(probe: ProbeRef, steps: readonly number[], probes: readonly ProbeRef[]): void {
    const others = probes.filter((p) => p.run !== probe.run || p.tag !== probe.tag);
    const options: [Choice, string][] = [
      [{ kind: "none" }, "—"],
      [{ kind: "rel", d: -1 }, "previous step"],
      [{ kind: "rel", d: 1 }, "next step"],
      ...steps.map((s): [Choice, string] => [{ kind: "step", step: s }, `step ${s}`]),
      ...others.map((p): [Choice, string] => [{ kind: "probe", probe: p }, `${p.run} / ${p.tag} (same step)`]),
    ];
    const idx = Math.max(
      0,
      options.findIndex(([c]) => same(c, this.choice)),
    );
    this.choices = options.map(([c]) => c);
    this.choice = this.choices[idx] as Choice;
    this.select.replaceChildren(
      ...options.map(([c, text], i) => {
        const o = document.createElement("option");
        o.value = String(i);
        o.textContent = text; // run/tag names are user data: text only
        if (c.kind === "probe") o.dataset["probe"] = JSON.stringify([c.probe.run, c.probe.tag]);
        return o;
      }),
    );
    this.select.value = String(idx);
    void this.hideIncompatible(probe, steps, others.slice(0, MAX_CHECKED));
  }

  /** Hides the other probes that cannot be compared with this one (checked at their last logged step). */
  private async hideIncompatible(probe: ProbeRef, steps: readonly number[], others: ProbeRef[]): Promise<void> {
    const ticket = ++this.checks;
    const last = steps[steps.length - 1];
    if (last === undefined || others.length === 0) return;
    const mine = await fetchManifest(probe.run, probe.tag, last).catch(() => null);
    if (!mine || ticket !== this.checks) return;
    await Promise.all(
      others.map(async (p) => {
        let why: string | null;
        try {
          const theirs = await fetchSteps(p.run, p.tag);
          const at = theirs.includes(last) ? last : theirs[theirs.length - 1];
          why = at === undefined ? "no steps" : mismatch(mine, await fetchManifest(p.run, p.tag, at));
        } catch (e) {
          why = e instanceof Error ? e.message : String(e);
        }
        if (ticket !== this.checks || why === null) return;
        const key = JSON.stringify([p.run, p.tag]);
        const o = Array.from(this.select.options).find((x) => x.dataset["probe"] === key);
        if (!o) return;
        o.hidden = o.disabled = true;
        o.title = why;
        o.dataset["incompatible"] = why;
      }),
    );
  }

  /** The reference for the step at `stepIndex`, or a note why there is none (ref null and note "" when off). */
  resolve(probe: ProbeRef, steps: readonly number[], stepIndex: number): { ref: CompareRef | null; note: string } {
    const c = this.choice;
    const step = steps[stepIndex] as number;
    if (c.kind === "none") return { ref: null, note: "" };
    if (c.kind === "probe") {
      return { ref: { probe: c.probe, step, label: `${c.probe.run} / ${c.probe.tag} at step ${step}` }, note: "" };
    }
    const ref = c.kind === "step" ? c.step : steps[stepIndex + c.d];
    if (ref === undefined) {
      return { ref: null, note: `no ${c.kind === "rel" && c.d < 0 ? "previous" : "next"} logged step to compare with` };
    }
    if (ref === step) return { ref: null, note: "the reference is the step shown" };
    return { ref: { probe, step: ref, label: `step ${ref}` }, note: "" };
  }

  /** The choice as a deep-link value (shell/deepLink.ts): "", "prev", "next", "step:N" or JSON [run, tag]. */
  code(): string {
    const c = this.choice;
    if (c.kind === "none") return "";
    if (c.kind === "rel") return c.d < 0 ? "prev" : "next";
    if (c.kind === "step") return `step:${c.step}`;
    return JSON.stringify([c.probe.run, c.probe.tag]);
  }

  /** Takes a deep-link value as the choice (kept by the next sync() when the probe offers it). */
  restore(code: string | undefined): void {
    if (!code) return;
    if (code === "prev" || code === "next") this.choice = { kind: "rel", d: code === "prev" ? -1 : 1 };
    else if (/^step:\d+$/.test(code)) this.choice = { kind: "step", step: Number(code.slice(5)) };
    else {
      try {
        const [run, tag] = JSON.parse(code) as unknown[];
        if (typeof run === "string" && typeof tag === "string") this.choice = { kind: "probe", probe: { run, tag } };
      } catch {
        // not a link value of ours: keep "—"
      }
    }
  }
}
