// The toolbar's "Compare with": another step of the probe (relative or absolute) or another run/probe at the
// same step. The choice survives step changes; it is resolved per step into SharedState.compare.

import { controlLabel } from "./widgets";
import type { CompareRef, ProbeRef } from "../shell/view";

type Choice =
  { kind: "none" } | { kind: "rel"; d: number } | { kind: "step"; step: number } | { kind: "probe"; probe: ProbeRef };

const same = (a: Choice, b: Choice): boolean => JSON.stringify(a) === JSON.stringify(b);

export class CompareControl {
  readonly el: HTMLLabelElement;
  private readonly select = document.createElement("select");
  private choices: Choice[] = [];
  private choice: Choice = { kind: "none" };

  constructor(onChange: () => void) {
    this.select.id = "compare-select";
    this.select.title =
      "Compare the step shown with another step, or with another run at the same step: " +
      "the head, model, matrix and diff views then draw current − reference";
    this.select.addEventListener("change", () => {
      this.choice = this.choices[Number(this.select.value)] ?? { kind: "none" };
      onChange();
    });
    this.el = controlLabel("Compare with", this.select);
  }

  /** Rebuilds the options for a probe, keeping the choice when it still exists. */
  sync(probe: ProbeRef, steps: readonly number[], probes: readonly ProbeRef[]): void {
    const options: [Choice, string][] = [
      [{ kind: "none" }, "—"],
      [{ kind: "rel", d: -1 }, "previous step"],
      [{ kind: "rel", d: 1 }, "next step"],
      ...steps.map((s): [Choice, string] => [{ kind: "step", step: s }, `step ${s}`]),
      ...probes
        .filter((p) => p.run !== probe.run || p.tag !== probe.tag)
        .map((p): [Choice, string] => [{ kind: "probe", probe: p }, `${p.run} / ${p.tag} (same step)`]),
    ];
    const idx = Math.max(
      0,
      options.findIndex(([c]) => same(c, this.choice)),
    );
    this.choices = options.map(([c]) => c);
    this.choice = this.choices[idx] as Choice;
    this.select.replaceChildren(
      ...options.map(([, text], i) => {
        const o = document.createElement("option");
        o.value = String(i);
        o.textContent = text; // run/tag names are user data: text only
        return o;
      }),
    );
    this.select.value = String(idx);
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
}
