"""Re-evaluate a shipped zoo checkpoint on its test split (behind ``probe zoo eval NAME``).

Detection recipes have their own ``evaluate``; separation and denoising models are scored
here with the same metric code their recipes used (``model_zoo.metrics``), with oracle
masks on the same items, so a re-run can be compared with the card.
"""

from __future__ import annotations

import importlib

from model_zoo.registry import read_card


def _dataset(card: dict | None) -> str:
    data = (card or {}).get("data") or {}
    return data.get("dataset") or data.get("kind") or data.get("name") or "instruments"


def evaluate(name: str, model, split: str = "test", n: int | None = None) -> dict:
    """``{"metrics": {system: scores}, "oracle": {oracle_*: scores}, "n_items": k}`` for zoo model ``name``."""
    mod = importlib.import_module(f"model_zoo.{name}")
    recipe = importlib.import_module(f"model_zoo.recipes.{name}")
    if hasattr(recipe, "evaluate"):
        res = recipe.evaluate(model, split=split, n=n)
        return res if "metrics" in res else {"metrics": res, "oracle": {}}
    spec = mod.make_spec(model)
    if mod.TASK == "denoising":
        from model_zoo.data import noisy_set

        items = noisy_set(split, n=n)
        res = recipe.evaluate_denoiser(lambda y: mod.separate(model, y)[0], items, grid=spec.grid)
    else:
        from model_zoo.data import separation_set
        from model_zoo.metrics import evaluate_separator

        items = separation_set(_dataset(read_card(name)), split, n=n)
        systems = {"model": lambda y: mod.separate(model, y)}
        if hasattr(mod, "separate_dc") and hasattr(mod, "separate_mi"):
            systems = {"mi": lambda y: mod.separate_mi(model, y), "dc_kmeans": lambda y: mod.separate_dc(model, y)}
        res = evaluate_separator(systems, items, spec.grid)
    res = {k: v for k, v in res.items() if k != "per_item"}
    oracle = {k: v for k, v in res.items() if k.startswith("oracle")}
    metrics = {k: v for k, v in res.items() if not k.startswith("oracle")}
    return {"metrics": metrics, "oracle": oracle, "n_items": len(items)}
