// Loading the matrix mode a layer at a time: each layer is its own `embedding_matrix?layers=l` request, a few in
// flight, painted as it arrives, so the first paint waits for one layer's heads instead of every head (1,024 for a
// 32 × 32 model; the server scores each head it lays out). PCA first (computed in the request), then the chosen
// nonlinear layout, whose layers the server computes as background jobs (202 + progress) that are polled.

import { fetchMatrix, isPending, type MatrixLayout, type Method, type Options } from "./api";

const IN_FLIGHT = 3; // requests at once: enough to hide a round trip, few enough not to queue up the server's threads
const POLL_MS = 400;

export interface MatrixLoad {
  run: string;
  tag: string;
  step: number;
  layers: number;
  /** One request for the whole matrix (a notebook output embeds only that answer). */
  whole: boolean;
  /** False once the view moved on: stop fetching and painting. */
  live: () => boolean;
  paint: (part: MatrixLayout) => void;
  /** Every layer of `method` painted. */
  complete: (method: Method) => void;
  progress: (method: Method, fraction: number) => void;
  /** A failure after the first paint (before it, the returned promise rejects). */
  fail: (e: Error) => void;
}

/** Loads one method's layouts, layer by layer; `painted` is called after each part is painted. */
async function pass(job: MatrixLoad, o: Options, painted: () => void): Promise<void> {
  const parts: ([number, number] | null)[] = job.whole ? [null] : [];
  if (!job.whole) for (let l = 0; l < job.layers; l++) parts.push([l, l]);
  let next = 0;
  let done = 0;
  const one = async (part: [number, number] | null): Promise<void> => {
    for (;;) {
      const m = await fetchMatrix(job.run, job.tag, job.step, o, part);
      if (!job.live()) return;
      if (!isPending(m)) {
        job.paint(m);
        done++;
        painted();
        return;
      }
      job.progress(o.method, (done + m.progress) / parts.length);
      await new Promise((r) => window.setTimeout(r, POLL_MS));
      if (!job.live()) return;
    }
  };
  const worker = async (): Promise<void> => {
    while (next < parts.length && job.live()) await one(parts[next++] ?? null);
  };
  // The first layer alone: on a 2-core server, three requests at once would each take three times as long, and
  // the first paint waits for one of them.
  if (parts.length) await one(parts[next++] ?? null);
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, parts.length - next) }, worker));
  if (job.live() && done === parts.length) job.complete(o.method);
}

/** Paints the matrix for `o`, PCA first when `o` is nonlinear. Resolves once the first layer is painted (the view's
 * first paint); the other layers and the nonlinear layouts keep arriving afterwards while `job.live()`. */
export function loadMatrix(job: MatrixLoad, o: Options): Promise<void> {
  return new Promise((resolve, reject) => {
    let first = false;
    const painted = (): void => {
      if (!first) resolve();
      first = true;
    };
    const run = async (): Promise<void> => {
      if (o.method !== "pca") await pass(job, { ...o, method: "pca" }, painted);
      if (job.live()) await pass(job, o, painted);
      painted(); // nothing to paint (zero layers, or the view moved on): the caller checks live()
    };
    run().catch((e: unknown) => {
      if (!first) reject(e as Error);
      else if (job.live()) job.fail(e as Error);
      first = true;
    });
  });
}
