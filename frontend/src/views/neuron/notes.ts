// The neuron view's explanations: the legend line (what each colour and shade means) and the verdict comparing the
// recomputed softmax with the logged weight, against what storage alone explains.

import { QK_LAYER_WEIGHTS } from "../../data/scale";
import { ColorBar } from "../../draw/legend";
import { tokenColor } from "../../shell/theme";
import { NEG, POS } from "./draw";
import type { Recompute, Row } from "./math";

/** Why "softmax" and "logged" may differ, and whether they do here beyond what storage explains. */
export function verdict(r: Row, rc: Recompute): string {
  const why =
    "softmax is recomputed here from the logged fp16 q/k; logged is the stored weight (8-bit, error ≤ 0.62 % of the " +
    "row maximum)";
  if (!r.logged) {
    return (
      "softmax is rebuilt here from the logged fp16 q/k and the layer's recompute parameters (as the server rebuilds " +
      `a "qk" layer); the weights are not loaded: one head is past ${QK_LAYER_WEIGHTS.toLocaleString("en-US")} ` +
      "weights, so the logged column shows the same softmax" +
      sinkText(r)
    );
  }
  const diff = `max |softmax − logged| = ${r.maxDiff.toPrecision(2)} for this query`;
  if (r.withinStorage) return `${diff}: agrees within storage precision (${why})` + sinkText(r);
  const cause =
    rc.bias && rc.bias !== "none" && !rc.biasTable
      ? `the model adds ${rc.bias} position terms to the scores that q·k do not carry`
      : rc.scalingFrom === "assumed" || rc.mask === null || rc.bias === null
        ? "this probe did not log every recompute parameter (see above)"
        : "the model used something the logged q/k and parameters do not capture";
  return `${diff}: DIFFERS beyond storage precision: ${cause} (${why})` + sinkText(r);
}

/** Key j's exact numbers for its tooltip: now (`cur`) and, when comparing, the reference `ref` (named `label`). */
export function keyNumbers(j: number, cur: Row, ref: Row | null, label: string): string {
  // A masked key's score is not computed (NaN, math.ts): say so rather than print NaN.
  const num = (v: number, digits: number): string => (Number.isNaN(v) ? "masked" : v.toPrecision(digits));
  const score = cur.score[j] as number;
  const soft = cur.soft[j] as number;
  let t =
    `q·k·s = ${num(score, 5)}\nsoftmax (recomputed) = ${soft.toPrecision(4)}\n` +
    (cur.logged
      ? `logged attention = ${(cur.aRow[j] as number).toPrecision(4)} ` +
        `(storage precision ±${(cur.tol[j] as number).toPrecision(2)})`
      : "logged attention: not loaded (one head is past 2^26 weights; softmax is rebuilt here)");
  if (ref) {
    const rs = ref.score[j] as number;
    const rp = ref.soft[j] as number;
    t +=
      `\n${label}: q·k·s = ${num(rs, 5)}, softmax = ${rp.toPrecision(4)}` +
      `\nΔ q·k·s = ${num(score - rs, 4)}, Δ softmax = ${(soft - rp).toPrecision(4)}`;
  }
  return t;
}

function sinkText(r: Row): string {
  return r.sinkMass > 0 ? ` · the sink takes ${(100 * r.sinkMass).toFixed(1)} % of this row` : "";
}

/** The colour of a strip cell of value v ∈ [−1, 1] (÷ the column's largest |value|) as it is seen: the sign's colour
 * at opacity |v| over the page background `bg`, so the bar's colours are the cells'. */
function stripMap(bg: string): Uint8ClampedArray {
  const ctx = document.createElement("canvas").getContext("2d") as CanvasRenderingContext2D;
  ctx.fillStyle = bg;
  ctx.fillRect(0, 0, 1, 1);
  const under = ctx.getImageData(0, 0, 1, 1).data;
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const v = (i / 255) * 2 - 1;
    const a = Math.abs(v);
    const col = v >= 0 ? POS : NEG;
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = (under[c] as number) * (1 - a) + (col[c] as number) * a;
  }
  return lut;
}

/** The q and k strips' colour bars: signed, ticks in the vectors' own units, blue = positive, red = negative. */
export class StripBars {
  readonly el = document.createElement("div");
  private readonly q = new ColorBar("nv-q-colorbar");
  private readonly k = new ColorBar("nv-k-colorbar");

  constructor() {
    this.el.className = "nv-bars";
    this.el.style.cssText = "display: flex; gap: 18px;";
    this.el.append(this.q.el, this.k.el);
  }

  set(qMax: number, kMax: number): void {
    const map = stripMap(tokenColor("--tba-bg"));
    const ends: [string, string] = ["positive", "negative"];
    for (const [bar, max, what] of [
      [this.q, qMax, "q"],
      [this.k, kMax, "k"],
    ] as const) {
      const m = max > 0 ? max : 1;
      bar.set({ map, lo: -m, hi: m, signed: true, title: `${what} component`, ends }, 60);
    }
  }
}

/** What the colours mean: the q and k colour bars (sign and value of a component), and how the other columns shade. */
export function fillLegend(el: HTMLElement, bars: StripBars, qMax: number, kMax: number): void {
  bars.set(qMax, kMax);
  const text = document.createElement("span");
  text.style.cssText = "flex: 1 1 320px; max-width: 760px;"; // beside the bars, not below them
  text.textContent =
    "q, k: one cell per dimension, blue = positive, red = negative, shade = |value| ÷ the column's largest (the " +
    "bars' ends) · q⊙k: the same, ÷ its largest for this query · q·k·s: shade = |score| ÷ the largest · softmax, " +
    "logged: shade = weight (0 → 1) · lines: logged weight, in the head's colour";
  el.replaceChildren(bars.el, text);
}
