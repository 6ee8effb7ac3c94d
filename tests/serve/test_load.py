"""Many clients at once against a real TensorBoard, and a long run: no errors, bounded plugin caches.
(Latency figures at full scale: benchmarks/bench_load.py, docs/reliability.md.)"""

import random
import threading
import urllib.error
import urllib.request

import numpy as np

from tb_attention import AttentionWriter
from tests.conftest import softmax_attention

STEPS, LAYERS = 12, 3


def test_twenty_concurrent_clients_get_no_errors(tmp_path, rng, tensorboard_server):
    with AttentionWriter(str(tmp_path / "run")) as w:
        for step in range(STEPS):
            w.add_attention("p", softmax_attention(rng, LAYERS, 4, 48), tokens=[str(i) for i in range(48)], step=step)
    base = tensorboard_server(tmp_path, "--reload_interval=0")
    plugin = base + "data/plugin/attention/"
    urllib.request.urlopen(plugin + "steps?run=run&tag=p", timeout=60).read()  # loaded
    failures = []

    def client(seed):
        rnd = random.Random(seed)
        for _ in range(15):
            step, layer = rnd.randrange(STEPS), rnd.randrange(LAYERS)
            route = rnd.choice(
                [
                    "runs",
                    "steps?run=run&tag=p",
                    f"tokens?run=run&tag=p&step={step}",
                    f"attention?run=run&tag=p&step={step}&layer={layer}",
                    "head_stats?run=run&tag=p",
                ]
            )
            try:
                with urllib.request.urlopen(plugin + route, timeout=60) as resp:
                    resp.read()
            except (urllib.error.URLError, OSError) as e:
                failures.append((route, repr(e)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_plugin_caches_stay_bounded_over_a_long_run(tmp_path, load):
    attn = np.full((1, 1, 2, 2), 0.5, np.float32)
    with AttentionWriter(str(tmp_path / "run")) as w:
        for step in range(600):
            w.add_attention("p", attn, tokens=["a", "b"], step=step)
    loaded = load(tmp_path)
    for step in range(600):
        assert loaded.get("tokens", run="run", tag="p", step=step).status_code == 200
    assert len(loaded.plugin._reader.manifests) <= 256
