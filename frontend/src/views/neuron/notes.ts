// The neuron view's explanations: the legend line (what each colour and shade means) and the verdict comparing the
// recomputed softmax with the logged weight, against what storage alone explains.

import { NEG, POS } from "./draw";
import type { Recompute, Row } from "./math";

/** A swatch (coloured square) for the legend line. */
function swatch(rgb: number[], label: string): HTMLElement {
  const s = document.createElement("span");
  const box = document.createElement("span");
  box.style.cssText = `display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;background:rgb(${rgb.join(",")})`;
  s.append(box, document.createTextNode(label));
  return s;
}

/** Why "softmax" and "logged" may differ, and whether they do here beyond what storage explains. */
export function verdict(r: Row, rc: Recompute): string {
  const why =
    "softmax is recomputed here from the logged fp16 q/k; logged is the stored weight (8-bit, error ≤ 0.62 % of the " +
    "row maximum)";
  const diff = `max |softmax − logged| = ${r.maxDiff.toPrecision(2)} for this query`;
  if (r.withinStorage) return `${diff}: agrees within storage precision (${why})` + sinkText(r);
  const cause =
    rc.bias && rc.bias !== "none"
      ? `the model adds ${rc.bias} position terms to the scores that q·k do not carry`
      : rc.scalingFrom === "assumed" || rc.mask === null || rc.bias === null
        ? "this probe did not log every recompute parameter (see above)"
        : "the model used something the logged q/k and parameters do not capture";
  return `${diff}: DIFFERS beyond storage precision: ${cause} (${why})` + sinkText(r);
}

function sinkText(r: Row): string {
  return r.sinkMass > 0 ? ` · the sink takes ${(100 * r.sinkMass).toFixed(1)} % of this row` : "";
}

/** What the colours mean: sign of a component, its shade against the column's largest |value|. */
export function fillLegend(el: HTMLElement, qMax: number, kMax: number): void {
  const t = (v: number): string => v.toPrecision(3);
  el.replaceChildren(
    swatch(POS, "positive"),
    swatch(NEG, "negative"),
    document.createTextNode(
      `· q, k, q⊙k: one cell per dimension, shade = |value| ÷ the column's largest (q ±${t(qMax)}, k ±${t(kMax)}) · ` +
        "q·k·s: shade = |score| ÷ the largest · softmax, logged: shade = weight (0 → 1) · lines: logged " +
        "weight, in the head's colour",
    ),
  );
}
