"""The frontend never reaches for the document directly (frontend/VIEWS.md): in a notebook output the app lives in
a shadow root with its own flags, styles, hooks and transport (frontend/src/shell/page.ts, data/transport.ts), and a
view that used document.body, window hooks or fetch would break there, or touch the notebook page itself."""

import pathlib
import re

SRC = pathlib.Path(__file__).resolve().parents[2] / "frontend" / "src"

# pattern -> the only files allowed to use it, and why
RULES = {
    r"(?<!parent\.)document\.body": {
        "shell/page.ts",  # the TensorBoard default of page().root
        "export/snapshot.ts",  # the snapshot's loader runs on a page of its own
        "export/menu.ts",  # a download link, appended to the document and removed at once
        "notebook/theme.ts",  # reads the notebook's own theme markers on purpose
    },
    r"document\.head": {"shell/page.ts"},
    r"document\.(querySelector|getElementById|addEventListener)": {"export/snapshot.ts"},
    r"window\.__tba": {"export/snapshot.ts", "shell/loaders.ts"},  # the snapshot's page sets __tbaSnapshot
    r"(?<![\w.])fetch\(": {"data/transport.ts", "export/snapshot.ts"},  # the transport; the snapshot's own page
}


def test_no_view_reaches_for_the_document_window_or_network_directly():
    offenders = []
    for path in sorted(SRC.rglob("*.ts")):
        rel = path.relative_to(SRC).as_posix()
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            code = line.split("//")[0]
            for pattern, allowed in RULES.items():
                if re.search(pattern, code) and rel not in allowed:
                    offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "use page() / request() instead (frontend/VIEWS.md):\n" + "\n".join(offenders)


def test_the_checker_sees_a_direct_use():
    assert re.search(r"(?<![\w.])fetch\(", "  const r = await fetch(url);")
    assert re.search(r"(?<!parent\.)document\.body", "document.body.dataset.x = 1")
    assert not re.search(r"(?<![\w.])fetch\(", "  const r = await prefetch(url); x.fetch(y)")
