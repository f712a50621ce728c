"""Training recipes of the model zoo: one module per model, each with ``main(argv=None)``.

``model_zoo/train.py`` dispatches ``NAME`` to ``model_zoo.recipes.NAME.main``. Shared helpers
(seeding, safetensors checkpoints, model cards, resumable training, the standard command line)
live in :mod:`model_zoo.recipes._common`.
"""
