"""The README's promises stay true: its zoo table matches the cards, its commands match CI."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_zoo_table_matches_cards():
    from model_zoo.table import END, START, markdown_table

    text = (ROOT / "README.md").read_text()
    block = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert block == markdown_table().strip(), "README zoo table is stale: run python -m model_zoo.table --write"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash .ci/setup && .venv/bin/python -m pytest -q" in readme
    assert "bash .ci/setup" in ci and ".venv/bin/python -m pytest -q" in ci
    assert "rc\" = 5" in ci  # no-tests-collected must fail


def test_every_zoo_model_is_shipped_with_a_card():
    from model_zoo.registry import CARDS, MODELS, checkpoint_path

    for name in MODELS:
        assert checkpoint_path(name).is_file(), f"{name} has no checkpoint"
        assert (CARDS / f"{name}.json").is_file() and (CARDS / f"{name}.md").is_file(), f"{name} has no card"
        assert checkpoint_path(name).stat().st_size <= 10 * 2**20
