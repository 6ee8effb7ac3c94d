// Mounts the app in a notebook output (tb_attention/notebook/fragment.py writes the element and its loader): in a
// shadow root of the output's own element, with the data the output embeds (payload.ts) as the only transport.
// Each output imports its own instance of the bundle module, so the module-level page and transport chosen here
// belong to this output alone; nothing is put on window, no id or CSS leaves the shadow root.

import { setTransport, type Transport } from "../data/transport";
import { App } from "../shell/app";
import { setPage } from "../shell/page";
import type { Selection } from "../shell/view";
import { decodePayload, payloadTransport, type Options } from "./payload";
import { notebookIsDark, watchNotebookTheme } from "./theme";

// Inside an output: no page margin, the toolbar is not a page header, room for the notes.
const NOTEBOOK_CSS = `
:host { display: block; }
body { margin: 0; outline: none; border-radius: 4px; }
.tba-toolbar { position: static; }
.tba-nb-notes { margin: 0; padding: 6px 16px 0; color: #6d4c00; font-size: 12px; white-space: pre-wrap; }
.tba-nb-notes:empty { display: none; }
body.tba-dark .tba-nb-notes { color: #ffcc80; }
`;

function fixedTheme(
  theme: string | null | undefined,
  host: HTMLElement,
): { isDark(): boolean; watch(f: () => void): void } {
  if (theme === "dark" || theme === "light") return { isDark: () => theme === "dark", watch: () => undefined };
  return { isDark: () => notebookIsDark(host), watch: watchNotebookTheme };
}

/** Waits until the app has painted `view` once (or gives up quietly: the options are a convenience). */
function whenPainted(body: HTMLElement, view: string, then: () => void): void {
  const deadline = performance.now() + 20_000;
  const poll = (): void => {
    const d = body.dataset;
    if (d["state"] === "ready" && d["paintedView"] === view) then();
    else if (performance.now() < deadline && d["state"] !== "error") setTimeout(poll, 50);
  };
  poll();
}

/** BertViz's `heads=`: the head view's own toggles, as a double-click (solo) on the first and clicks on the rest. */
function selectHeads(body: HTMLElement, heads: number[]): void {
  const box = (h: number): HTMLElement | null => body.querySelector<HTMLElement>(`.head-toggle[data-head="${h}"]`);
  const [first, ...rest] = heads;
  if (first === undefined || !box(first)) return;
  box(first)?.dispatchEvent(new MouseEvent("dblclick", { bubbles: true }));
  for (const h of rest) box(h)?.dispatchEvent(new MouseEvent("click", { bubbles: true }));
}

function applyOptions(app: App, body: HTMLElement, o: Options): void {
  for (const id of o.hide ?? []) {
    const tab = body.querySelector<HTMLElement>(`.tba-tab[data-view="${CSS.escape(id)}"]`);
    if (tab) tab.style.display = "none";
  }
  // Before the first load: the first paint is already the asked-for view and layer.
  const sel: Selection = {};
  if (o.view !== undefined) sel.view = o.view;
  if (o.layer !== undefined) sel.layer = o.layer;
  app.select(sel);
  const heads = o.heads;
  if (heads && heads.length && (o.view ?? "head") === "head") whenPainted(body, "head", () => selectHeads(body, heads));
  const head = o.head;
  if (typeof head === "number" && o.view === "neuron") {
    whenPainted(body, "neuron", () => {
      const select = body.querySelector<HTMLSelectElement>("#neuron-head");
      if (!select || select.value === String(head)) return;
      select.value = String(head);
      select.dispatchEvent(new Event("change"));
    });
  }
}

/** Mounts the app in `host`'s shadow root, answering its requests with `transport` (payload or kernel). */
export function mountWith(
  host: HTMLElement,
  transport: Transport,
  options: Options,
  bundle: () => Promise<Uint8Array>,
): App {
  const shadow = host.shadowRoot ?? host.attachShadow({ mode: "open" });
  // A <body> of its own: the app's stylesheet says `body …` and `body.tba-dark …`, which then match here too.
  const body = document.createElement("body");
  body.tabIndex = 0; // a click in the view focuses it, so the view's keys ([ ] ↑ ↓ ← → Esc) reach it
  const style = document.createElement("style");
  style.textContent = NOTEBOOK_CSS;
  const notes = document.createElement("div");
  notes.className = "tba-nb-notes";
  notes.textContent = (options.notes ?? []).join("\n"); // text only: notes may name runs and tags
  body.appendChild(notes);
  shadow.append(style, body);
  // While the view has focus, the notebook's own shortcuts (JupyterLab's command mode: d d, ↑ ↓, …) stay out.
  host.setAttribute("data-lm-suppress-shortcuts", "true");
  setPage({
    root: body,
    styles: shadow,
    hooks: host as unknown as Partial<Window>,
    embedded: true,
    theme: fixedTheme(options.theme, host),
    bundle,
  });
  setTransport(transport);
  const app = new App();
  app.mount();
  // Keys the app handled (it prevents their default) are not the notebook's to handle again.
  body.addEventListener("keydown", (e) => {
    if (e.defaultPrevented) e.stopPropagation();
  });
  applyOptions(app, body, options);
  return app;
}

/** A static output (fragment.py): the data is the payload the output embeds. */
export async function mountNotebook(
  host: HTMLElement,
  payloadText: string,
  bundle: () => Promise<Uint8Array>,
): Promise<void> {
  const payload = await decodePayload(payloadText);
  mountWith(host, payloadTransport(payload), payload.options, bundle);
}
