// The toolbar's "Special tokens" select: hide [CLS], [SEP], BOS, padding… in every view, optionally
// renormalising the remaining weights of each row. The shell applies the choice in its loaders (data/tokenFilter).

import type { SpecialMode } from "../data/tokenFilter";
import { controlLabel } from "./widgets";

export class SpecialTokensSelect {
  readonly el: HTMLLabelElement;
  private readonly select = document.createElement("select");

  constructor(onChange: () => void) {
    this.select.id = "special-select";
    for (const [v, t] of [
      ["show", "show"],
      ["hide", "hide"],
      ["renorm", "hide + renormalise"],
    ]) {
      const o = document.createElement("option");
      o.value = v as string;
      o.textContent = t as string;
      this.select.appendChild(o);
    }
    this.select.title =
      "Special tokens ([CLS], [SEP], <s>, <pad>, <|endoftext|>, …): hide them, and optionally " +
      "rescale each row of the remaining weights to sum to 1";
    this.select.addEventListener("change", onChange);
    this.el = controlLabel("Special tokens", this.select);
  }

  get mode(): SpecialMode {
    return this.select.value as SpecialMode;
  }

  /** Deep-link value (shell/deepLink.ts): "" for the default ("show"). */
  code(): string {
    return this.mode === "show" ? "" : this.mode;
  }

  restore(code: string | undefined): void {
    if (code === "hide" || code === "renorm") this.select.value = code;
  }
}
