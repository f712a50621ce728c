"""probe's Streamlit app: the router. Run ``probe app`` or ``streamlit run apps/probe_app.py``.

This file only routes; every page lives in ``apps/views/`` and only places widgets and
figures that the probe library builds. :func:`main` is a function so tests can drive it.

The folder is deliberately not called ``pages/``: Streamlit treats a ``pages/`` folder next
to the entry script as a legacy (v1) multipage app until the first ``st.navigation`` call in
the process, so on a fresh server a deep link such as ``/attribution`` would run that page
file alone — without this router, its page config and its menu.
"""

from __future__ import annotations

import sys
from pathlib import Path

PAGES_DIR = Path(__file__).resolve().parent / "views"

#: (file, title, icon) of every page, in menu order
PAGES = (
    ("overview.py", "Overview", ":material/graphic_eq:"),
    ("filters.py", "Filters", ":material/tune:"),
    ("embeddings.py", "Embeddings", ":material/scatter_plot:"),
    ("attribution.py", "Attribution", ":material/hearing:"),
    ("activations.py", "Activations", ":material/stacked_line_chart:"),
    ("nmf.py", "NMF", ":material/grid_view:"),
    ("corpus.py", "Corpus", ":material/library_music:"),
)
#: the tab icon: a local image (an emoji or material icon would make the browser fetch one from the network)
ICON = Path(__file__).resolve().parent / "icon.png"


def main() -> None:
    import streamlit as st

    root = str(PAGES_DIR.parents[1])
    if root not in sys.path:  # pages import the `apps` package from the repository root
        sys.path.insert(0, root)
    st.set_page_config(page_title="probe", page_icon=str(ICON), layout="wide")
    from apps import warmup

    if warmup.enabled():
        from apps.cache import start_warmup

        start_warmup()  # once per server process
        warmup.wait_for_imports()  # never import pandas & co. at the same time as the warm-up thread
    pages = [st.Page(str(PAGES_DIR / f), title=title, icon=icon, default=(i == 0))
             for i, (f, title, icon) in enumerate(PAGES)]
    st.navigation(pages).run()


if __name__ == "__main__":
    main()
