"""probe's Streamlit app (run ``probe app``): ordinary modules around the library's pipelines.

* :mod:`apps.state` — shared, lock-guarded models and what can be picked (no streamlit);
* :mod:`apps.uploads` — accepted uploads and their decoding (no streamlit);
* :mod:`apps.menus` — attribution methods and targets offered (no streamlit);
* :mod:`apps.cache` — Streamlit caches around :mod:`probe.pipelines`;
* :mod:`apps.ui` — the selection in ``st.session_state``, error display, figure placement;
* ``apps/probe_app.py`` routes; ``apps/views/`` are the pages.

Importing this package does not import streamlit.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the zoo and probe, when the app runs from a checkout without pip install -e
    sys.path.insert(0, str(ROOT))
