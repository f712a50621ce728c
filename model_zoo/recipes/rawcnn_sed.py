"""Recipe: the raw-waveform CNN sound-event detector (``python -m model_zoo.train rawcnn_sed [--minutes M]``).

Config, training, validation-based selection, test scores and card; the loop itself is
:func:`model_zoo.recipes.sed_common.train_detector`. About 12 minutes of training (data included) on one
CPU thread, then about a minute of evaluation.
"""

from __future__ import annotations

from model_zoo import rawcnn_sed as MODEL
from model_zoo.recipes.sed_common import evaluate as _evaluate
from model_zoo.recipes.sed_common import HELD_OUT_NOTE, train_detector

NAME = MODEL.NAME
SUMMARY = ("Raw-waveform CNN (after Dieleman & Schrauwen 2014) that detects 8 classes of recorded sound effects in "
           "10 s scenes: a learned 64-filter bank on the samples, then convolutions to frame-wise class "
           "probabilities every 20 ms.")
ARCHITECTURE = [
    "frontend: Conv1d(1, 64, kernel 400 = 25 ms, stride 160 = 10 ms, padding 200, no bias): the learned filter bank",
    "compression: log(1 + 100 |x|) -> BatchNorm1d(64)",
    "body: Conv1d k5 (128) -> BN -> ReLU; Conv1d k3 stride 2 (128, now 20 ms frames) -> BN -> ReLU; "
    "5 residual dilated Conv1d k3 blocks (dilations 1, 2, 4, 8, 16) -> BN -> ReLU -> Dropout 0.1",
    "classifier: 1x1 Conv1d 128 -> 8, sigmoid per class and frame; output (batch, 8, n/320 + 1) aligned with "
    "the CRNN's centred 20 ms frames; receptive field about 1.4 s",
]


#: Recipe defaults (issue 16): augmentations that generalise across recordings, a longer schedule, the decision
#: rule (threshold and median filter) chosen on validation, 80 validation scenes for a steadier selection.
AUGMENTATION = {"gain_db": 10.0, "mix_snr": [-8.0, 3.0], "mix_prob": 0.4, "speed": 0.15, "eq_db": 6.0, "shift": True,
                "choose_threshold": True, "warmup_steps": 100, "n_val": 80, "eval_seconds": 75.0}
MINUTES = 18.0


def evaluate(model, split: str = "test", n: int | None = None, **kw) -> dict:
    """sed_eval scores of a raw CNN (module or spec) on a scene split; see :func:`sed_common.evaluate`."""
    return _evaluate(model, split, n, **kw)


def main(argv=None) -> int:
    train_detector(MODEL, argv, minutes=MINUTES, lr=3e-3, batch_size=16, summary=SUMMARY, architecture=ARCHITECTURE,
                   notes=[HELD_OUT_NOTE], defaults=AUGMENTATION)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
