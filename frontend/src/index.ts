// Entry point TensorBoard calls (plugin_entry.html does `import("./index.js").then(m => m.render())`).
// Data flows data/ (routes, binary decoding) → shell/ (shared selection, cached loaders, toolbar) → views/<view>/
// (one tab each, drawing with draw/); controls/ are the toolbar's and views' widgets, export/ the Export buttons.

import { App } from "./shell/app";

// Notebook outputs (tb_attention/notebook/) mount the same app in a shadow root, from data they embed.
export { mountNotebook } from "./notebook/mount";
export { widgetRender } from "./notebook/widget";

let mounted = false;

export function render(): void {
  if (mounted) return; // render() is called once per iframe load; guard against double mounting anyway
  mounted = true;
  new App().mount();
}
