// The view registry: tabs appear in this order. Adding a view = one import + one line (see frontend/VIEWS.md).

import type { ViewFactory } from "./view";
import { DiffView } from "../views/diff";
import { EmbeddingView } from "../views/embedding";
import { EvolutionView } from "../views/evolution";
import { HeadTab } from "../views/head";
import { MatrixView } from "../views/matrix";
import { ModelView } from "../views/model";
import { NeuronView } from "../views/neuron";

export const VIEWS: ViewFactory[] = [
  () => new HeadTab(),
  () => new ModelView(),
  () => new NeuronView(),
  () => new MatrixView(),
  () => new DiffView(),
  () => new EmbeddingView(),
  () => new EvolutionView(),
];
