// Toolbar widgets: run/probe, layer and step. Each owns its element and reports user changes through a
// callback; setters never fire callbacks, so programmatic updates cannot loop.

function labelled(text: string, control: HTMLElement): HTMLLabelElement {
  const label = document.createElement("label");
  label.className = "control";
  const span = document.createElement("span");
  span.textContent = text;
  label.append(span, control);
  return label;
}

/** A "Label [control]" pair for toolbars. */
export const controlLabel = labelled;

/** A labelled <select> of (value, text) options. */
export function selectControl(
  id: string,
  label: string,
  options: [string, string][],
): [HTMLLabelElement, HTMLSelectElement] {
  const select = document.createElement("select");
  select.id = id;
  for (const [v, t] of options) {
    const o = document.createElement("option");
    o.value = v;
    o.textContent = t;
    select.appendChild(o);
  }
  return [labelled(label, select), select];
}

/**
 * Fills a head <select> with stored heads 0..H-1 (option values), labelled with the model's head numbers
 * (`label`, data/labels.ts), keeping the chosen head when it still exists.
 */
export function setHeadOptions(select: HTMLSelectElement, H: number, label: (h: number) => string = String): void {
  const texts = Array.from({ length: H }, (_, h) => label(h));
  if (select.dataset["labels"] === texts.join(",")) return;
  select.dataset["labels"] = texts.join(",");
  const keep = Number(select.value) || 0;
  select.replaceChildren(
    ...texts.map((t, h) => {
      const o = document.createElement("option");
      o.value = String(h);
      o.textContent = t;
      return o;
    }),
  );
  select.value = String(Math.min(keep, H - 1));
}

/** The Head and Colour selects of the heatmap views (`${prefix}-head`, `${prefix}-scale`). */
export function headAndScaleControls(prefix: string, magnitude: string, onChange: () => void) {
  const [headLabel, head] = selectControl(`${prefix}-head`, "Head", [["0", "0"]]);
  const [scaleLabel, scale] = selectControl(`${prefix}-scale`, "Colour", [
    ["sqrt", magnitude],
    ["linear", "linear"],
    ["log", "log (3 decades)"],
  ]);
  // The zoomed window's colour range: the whole matrix's (comparable with the overview) or its own (detail).
  const [rangeLabel, range] = selectControl(`${prefix}-range`, "Range", [
    ["global", "whole matrix"],
    ["local", "zoomed window"],
  ]);
  range.title = "Colour range of the zoomed window: the whole matrix's largest value, or the window's own";
  head.addEventListener("change", onChange);
  scale.addEventListener("change", onChange);
  range.addEventListener("change", onChange);
  return { head, scale, range, headLabel, scaleLabel, rangeLabel };
}

export interface ProbeRef {
  run: string;
  tag: string;
}

/** One <select> of "run / probe" pairs: simpler than two linked selects and just as short for typical logdirs. */
export class ProbeSelect {
  readonly el: HTMLLabelElement;
  private readonly select = document.createElement("select");
  private items: ProbeRef[] = [];

  constructor(onChange: (p: ProbeRef) => void) {
    this.select.id = "probe-select";
    this.el = labelled("Run / probe", this.select);
    this.select.addEventListener("change", () => {
      const p = this.items[Number(this.select.value)];
      if (p) onChange(p);
    });
  }

  set(items: ProbeRef[], current: ProbeRef | null): void {
    this.items = items;
    this.select.replaceChildren(
      ...items.map((p, i) => {
        const o = document.createElement("option");
        o.value = String(i);
        o.textContent = `${p.run} / ${p.tag}`; // run and tag names are user data: text only
        return o;
      }),
    );
    const idx = current ? items.findIndex((p) => p.run === current.run && p.tag === current.tag) : -1;
    if (idx >= 0) this.select.value = String(idx);
  }
}

export class LayerSelect {
  readonly el: HTMLLabelElement;
  private readonly select = document.createElement("select");
  private labels = "";

  constructor(onChange: (layer: number) => void) {
    this.select.id = "layer-select";
    this.el = labelled("Layer", this.select);
    this.select.addEventListener("change", () => onChange(Number(this.select.value)));
  }

  /** Options are stored layers 0..L-1, labelled with the model's layer numbers (`label`, data/labels.ts). */
  set(numLayers: number, layer: number, label: (l: number) => string = String): void {
    const texts = Array.from({ length: numLayers }, (_, l) => label(l));
    const key = texts.join(",");
    if (key !== this.labels) {
      this.labels = key;
      this.select.replaceChildren(
        ...texts.map((t, l) => {
          const o = document.createElement("option");
          o.value = String(l);
          o.textContent = t;
          return o;
        }),
      );
    }
    this.select.value = String(layer);
  }
}

/** Slider over the *indices* of the logged steps (steps are sparse); the label shows the real step number. */
export class StepSlider {
  readonly el: HTMLLabelElement;
  private readonly input = document.createElement("input");
  private readonly label = document.createElement("span");
  private steps: number[] = [];

  constructor(onChange: (index: number) => void) {
    this.input.type = "range";
    this.input.id = "step-slider";
    this.input.min = "0";
    this.input.step = "1";
    this.label.id = "step-label";
    this.el = labelled("Step", this.input);
    this.el.classList.add("step-control");
    this.el.appendChild(this.label);
    // "input" fires while dragging, so scrubbing animates; the cache and latest-request-wins keep it cheap.
    this.input.addEventListener("input", () => {
      this.showLabel();
      onChange(Number(this.input.value));
    });
  }

  set(steps: number[], index: number): void {
    this.steps = steps;
    this.input.max = String(Math.max(0, steps.length - 1));
    this.input.disabled = steps.length <= 1;
    this.input.value = String(index);
    this.showLabel();
  }

  private showLabel(): void {
    const i = Number(this.input.value);
    const step = this.steps[i];
    this.label.textContent = step === undefined ? "–" : `${step}  (${i + 1}/${this.steps.length})`;
  }
}

/** A tab of the shell's tab bar (`.tba-tab[data-view=id]`). */
export function tabButton(id: string, label: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "tba-tab";
  b.setAttribute("role", "tab");
  b.dataset["view"] = id;
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}
