"""``python -m model_zoo.train NAME [recipe options]``: run a zoo recipe (config, training, eval, card)."""

from __future__ import annotations

import importlib
import sys

from model_zoo.registry import MODELS


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m model_zoo.train NAME [--smoke] [--minutes M] [--resume]\nmodels: {', '.join(MODELS)}")
        return 0 if argv else 1
    name, rest = argv[0], argv[1:]
    if name not in MODELS:
        print(f"unknown model {name!r}; known: {', '.join(MODELS)}", file=sys.stderr)
        return 2
    recipe = importlib.import_module(f"model_zoo.recipes.{name}")
    result = recipe.main(rest)
    return result if isinstance(result, int) else 0  # recipes may return their summary dict


if __name__ == "__main__":
    sys.exit(main())
