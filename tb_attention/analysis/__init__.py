"""Pure numpy analysis shared by both sides: per-head metrics (the writer computes them), rollout and divergences
(the server computes them per request), Q/K projections (the server's embedding layouts).

Imports no other part of tb_attention, so either side can use it without pulling in the other."""
