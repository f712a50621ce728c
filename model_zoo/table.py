"""The README's zoo table, generated from the model cards (``python -m model_zoo.table``).

``python -m model_zoo.table --write`` replaces the block between ``<!-- zoo-table -->``
markers in README.md; a test checks the README matches the cards.
"""

from __future__ import annotations

import sys
from pathlib import Path

from model_zoo.registry import MODELS, read_card

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- zoo-table -->", "<!-- /zoo-table -->"
_ORACLE = ("oracle", "mixture", "baseline", "nmf")


def _fmt(x, nd=2):
    return "–" if x is None else (f"{x:.{nd}f}" if isinstance(x, (int, float)) else str(x))


def _model_rows(test: dict) -> dict:
    return {k: v for k, v in test.items() if isinstance(v, dict) and not k.startswith(_ORACLE)}


def key_metric(card: dict) -> tuple[str, str]:
    """(model figure, reference figure) for one card, as text."""
    test = (card.get("metrics") or {}).get("test") or {}
    task = card.get("task")
    if task == "detection":
        floors = card.get("floors") or {}
        ref = "; ".join(f"floor {k.replace('_', ' ')} {v.get('floor')}: {'met' if v.get('met') else 'not met'}"
                        for k, v in floors.items() if isinstance(v, dict)) or "–"
        return (f"segment F1 {_fmt(test.get('segment_f1'))}, ER {_fmt(test.get('segment_er'))}, "
                f"event F1 {_fmt(test.get('event_f1'))}", ref)
    rows = _model_rows(test)
    parts = []
    for name, m in rows.items():
        if "snr_improvement" in m or "snri" in m:
            parts.append(f"{name}: SNRi {_fmt(m.get('snr_improvement', m.get('snri')))} dB, SI-SDRi {_fmt(m.get('si_sdri'))} dB")
        elif "si_sdri" in m:
            parts.append(f"{name}: SI-SDRi {_fmt(m['si_sdri'])} dB")
    refs = []
    for name, m in test.items():
        if isinstance(m, dict) and name.startswith(("oracle", "nmf", "baseline")) and "si_sdri" in m:
            refs.append(f"{name.replace('_', ' ')} {_fmt(m['si_sdri'])} dB")
    return "; ".join(parts) or "–", "; ".join(refs) or "–"


def markdown_table() -> str:
    lines = ["| model | task | input | params | test result | reference on the same test items |",
             "|---|---|---|---:|---|---|"]
    for name in MODELS:
        card = read_card(name)
        if card is None:
            lines.append(f"| `{name}` | – | – | – | not trained yet | – |")
            continue
        got, ref = key_metric(card)
        lines.append(f"| [`{name}`](model_zoo/cards/{name}.md) | {card.get('task', '–')} | {card.get('input_kind', '–')} | "
                     f"{card.get('params', 0):,} | {got} | {ref} |")
    return "\n".join(lines)


def write_readme(path: Path = README) -> None:
    text = path.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{path} lacks the {START} … {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{markdown_table()}\n{END}{tail}")


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_readme()
    else:
        print(markdown_table())
