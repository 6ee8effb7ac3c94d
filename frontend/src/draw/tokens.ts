// Token rows as the line, neuron and heatmap views draw them: one row per token, sized for the sequence length,
// with control characters made visible (token strings are untrusted text; the views set them via textContent).

/** Row height shrinks from 20 px (≤ 32 tokens) to 12 px (≥ 160) so long sequences stay scannable. */
export function rowHeightFor(n: number): number {
  if (n <= 32) return 20;
  if (n >= 160) return 12;
  return Math.round(20 - ((n - 32) / 128) * 8);
}

/** Control characters would break a one-line row; show them escaped (the raw string stays in the title). */
export function displayText(token: string): string {
  // eslint-disable-next-line no-control-regex
  return token.replace(/[\u0000-\u001f\u007f]/g, (c) =>
    c === "\n"
      ? "\\n"
      : c === "\t"
        ? "\\t"
        : c === "\r"
          ? "\\r"
          : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}
