"""Notebook views: BertViz's one call, offline, in Jupyter, JupyterLab, VS Code and Colab (docs/notebook.md).

    from tb_attention import notebook as tba
    tba.head_view(outputs.attentions, tokens)        # BertViz's signature
    tba.model_view(outputs.attentions, tokens)
    tba.neuron_view(model, tokenizer, "a sentence")  # runs the capture itself: the q/k the model used
    tba.show(cap, tokens=tokens)                     # a tb_attention.capture result: all views as tabs
    tba.show("runs/exp1", probe="probe/copy")        # a logdir: all views with the step slider, no server

Each call returns a `NotebookView`: one self-contained HTML fragment (the plugin's own bundle and route responses
inside, nothing fetched), shown when it is a cell's last expression; `.save("fig.html")` writes it as a page.
Importing this module is light: numpy only; torch and the capture load when a call needs them.
"""

from tb_attention.notebook.api import NotebookView, head_view, model_view, neuron_view, show

__all__ = ["NotebookView", "head_view", "model_view", "neuron_view", "show"]
