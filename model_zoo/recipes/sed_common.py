"""Shared parts of the sound-event-detection recipes: data, training loop, decoding, sed_eval scores, cards.

Both detectors (:mod:`model_zoo.crnn_sed`, :mod:`model_zoo.rawcnn_sed`) output frame
probabilities ``(batch, classes, frames)`` on 20 ms frames centred at ``t * 0.02`` s, so one
loop trains and scores them both:

* **data**: a buffer of ``--n-train`` training scenes (audio in float16, frame targets), seen
  as random ``--crop-seconds`` crops aligned to the frame grid;
  every step ``--refresh`` buffer slots are replaced by newly made training scenes (from the
  same training recordings: more placements, levels and speeds, never new recordings), and a
  share ``--mix-prob`` of each batch is the sum of two scenes with the union of their labels;
* **selection**: the weights with the best validation segment F1 (threshold 0.5, no
  smoothing) are kept; the median-filter length is then chosen on validation too. The test
  split is touched once, at the end, for the card;
* **scores**: :mod:`sed_eval` segment-based F1 and error rate on 1 s segments and
  event-based F1 with a 200 ms onset collar and an offset collar of max(200 ms, 20 % of the
  event's length) (the DCASE convention).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import numpy as np

from model_zoo.data.scenes import FRAME_SECONDS, SCENE_CLASSES, event_roll, scene, scene_manifest, scene_set
from model_zoo.recipes._common import WeightAverage

__all__ = ["FLOORS", "SUBSET_N", "MEDIAN_CHOICES", "HELD_OUT_NOTE", "scenes_description", "as_spec", "predict", "median_smooth", "decode", "sed_scores",
           "evaluate", "choose_median", "choose_rule", "train_detector", "scene_arrays", "spec_augment",
           "add_learning_curves", "learning_curve_figure", "learning_curve_table", "AUGMENT"]

#: Acceptance floors on the test split (segment-based, 1 s segments).
FLOORS = {"crnn_sed": {"segment_f1": (">=", 0.80), "segment_er": ("<=", 0.40)},
          "rawcnn_sed": {"segment_f1": (">=", 0.70)}}
#: The first SUBSET_N test scenes are re-scored by the tests against the card.
SUBSET_N = 8
MEDIAN_CHOICES = (1, 3, 5, 7, 11, 15, 21, 31)
HELD_OUT_NOTE = ("Test scenes are built only from sound-event recordings (and their re-cut variants) that training "
                 "and validation never used; the 7 ambience recordings behind the events are shared by all splits.")
SCENE_SECONDS = 10.0


# ---- model plumbing --------------------------------------------------------------------
def as_spec(model):
    """A ModelSpec for a zoo detector given as a spec or as its ``nn.Module``."""
    from probe.adapter import ModelSpec

    if isinstance(model, ModelSpec):
        return model
    from model_zoo import crnn_sed, rawcnn_sed

    if isinstance(model, crnn_sed.CRNN):
        return crnn_sed.make_spec(model)
    if isinstance(model, rawcnn_sed.RawCNN):
        return rawcnn_sed.make_spec(model)
    raise TypeError(f"expected a ModelSpec, CRNN or RawCNN, given {type(model).__name__}")


def predict(spec, audio: np.ndarray, *, batch_size: int = 8) -> np.ndarray:
    """Frame probabilities for a stack of equal-length scenes.

    Parameters
    ----------
    spec : probe.ModelSpec
    audio : np.ndarray [shape=(n_scenes, n)]

    Returns
    -------
    np.ndarray [shape=(n_scenes, n_classes, n_frames), dtype=float32]
    """
    import torch

    model = spec.model
    was = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for a in range(0, len(audio), batch_size):
                y = torch.as_tensor(np.asarray(audio[a:a + batch_size], dtype=np.float32))
                out.append(spec.forward(y).float().cpu().numpy())
    finally:
        model.train(was)
    return np.concatenate(out) if out else np.zeros((0, len(spec.classes or []), 0), np.float32)


def median_smooth(probs: np.ndarray, frames: int) -> np.ndarray:
    """Median filter along time (last axis) with an odd window of ``frames`` (1 = none)."""
    if frames <= 1:
        return probs
    from scipy.ndimage import median_filter

    size = [1] * (probs.ndim - 1) + [int(frames) | 1]
    return median_filter(probs, size=size, mode="nearest")


def decode(probs: np.ndarray, *, threshold: float = 0.5, median_frames: int = 1, classes=None,
           frame_seconds: float = FRAME_SECONDS, seconds: float | None = None) -> list[dict]:
    """Frame probabilities of one scene → event list.

    Parameters
    ----------
    probs : np.ndarray [shape=(n_classes, n_frames)]
    threshold : float
        Applied after median filtering of the probabilities.
    median_frames : int
    classes : list of str, optional
    frame_seconds : float
        Frame ``t`` covers ``[(t - 0.5) * frame_seconds, (t + 0.5) * frame_seconds]``.
    seconds : float, optional
        Clip events to the scene's length.

    Returns
    -------
    list of dict
        ``{"label", "onset", "offset"}`` sorted by onset.
    """
    classes = SCENE_CLASSES if classes is None else classes
    act = median_smooth(np.asarray(probs, np.float32), median_frames) >= threshold
    events = []
    for c, row in enumerate(act):
        d = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
        for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)):
            on, off = max(0.0, (a - 0.5) * frame_seconds), (b - 0.5) * frame_seconds
            if seconds is not None:
                off = min(off, seconds)
            events.append({"label": classes[c], "onset": float(on), "offset": float(off)})
    return sorted(events, key=lambda e: (e["onset"], e["label"]))


def _container(events: list[dict], filename: str):
    import dcase_util

    return dcase_util.containers.MetaDataContainer(
        [{"filename": filename, "event_label": e["label"], "onset": float(e["onset"]), "offset": float(e["offset"])}
         for e in events])


def sed_scores(references: list[list[dict]], estimates: list[list[dict]], *, seconds: float = SCENE_SECONDS,
               classes=None) -> dict:
    """sed_eval scores of estimated against reference event lists, one pair per scene.

    Returns
    -------
    dict
        ``segment_f1``, ``segment_precision``, ``segment_recall``, ``segment_er`` (1 s segments, micro
        averaged), ``event_f1``, ``event_er`` (200 ms collar on onsets, offsets within max(200 ms, 20 %)),
        ``per_class`` ``{class: {"segment_f1", "event_f1"}}``, ``n_scenes``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sed_eval

    classes = list(SCENE_CLASSES if classes is None else classes)
    seg = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=classes, time_resolution=1.0)
    evm = sed_eval.sound_event.EventBasedMetrics(event_label_list=classes, t_collar=0.2, percentage_of_length=0.2,
                                                 evaluate_onset=True, evaluate_offset=True)
    for i, (ref, est) in enumerate(zip(references, estimates)):
        r, e = _container(ref, f"scene{i}.wav"), _container(est, f"scene{i}.wav")
        seg.evaluate(reference_event_list=r, estimated_event_list=e, evaluated_length_seconds=seconds)
        evm.evaluate(reference_event_list=r, estimated_event_list=e)
    so, eo = seg.results_overall_metrics(), evm.results_overall_metrics()
    sc, ec = seg.results_class_wise_metrics(), evm.results_class_wise_metrics()

    def f(x):
        x = float(x)
        return 0.0 if math.isnan(x) else x

    return {"segment_f1": f(so["f_measure"]["f_measure"]), "segment_precision": f(so["f_measure"]["precision"]),
            "segment_recall": f(so["f_measure"]["recall"]), "segment_er": f(so["error_rate"]["error_rate"]),
            "event_f1": f(eo["f_measure"]["f_measure"]), "event_er": f(eo["error_rate"]["error_rate"]),
            "per_class": {c: {"segment_f1": f(sc[c]["f_measure"]["f_measure"]),
                              "event_f1": f(ec[c]["f_measure"]["f_measure"])} for c in classes},
            "n_scenes": len(references)}


def _postprocessing(spec) -> dict:
    pp = dict(getattr(spec.model, "postprocessing", None) or spec.info.get("postprocessing") or {})
    return {"threshold": float(pp.get("threshold", 0.5)), "median_frames": int(pp.get("median_frames", 1))}


def evaluate(model, split: str = "test", n: int | None = None, *, threshold: float | None = None,
             median_frames: int | None = None, scenes: list[dict] | None = None, probs: np.ndarray | None = None) -> dict:
    """Score a detector on scene split ``split`` (first ``n`` scenes; default all).

    Parameters
    ----------
    model : probe.ModelSpec or CRNN or RawCNN
    split : {"train", "val", "test"}
    n : int, optional
    threshold, median_frames : optional
        Decision rule; default the model's stored ``postprocessing`` (0.5 and the length chosen on val).
    scenes : list of dict, optional
        Pre-built scenes (skips building them).
    probs : np.ndarray [shape=(n_scenes, n_classes, n_frames)], optional
        Pre-computed probabilities for ``scenes``.

    Returns
    -------
    dict
        The :func:`sed_scores` fields plus ``split``, ``threshold``, ``median_frames``.
    """
    spec = as_spec(model)
    pp = _postprocessing(spec)
    threshold = pp["threshold"] if threshold is None else float(threshold)
    median_frames = pp["median_frames"] if median_frames is None else int(median_frames)
    if scenes is None:
        scenes = scene_set(split, n=n, sr=spec.sample_rate, stems=False)
    if probs is None:
        probs = predict(spec, np.stack([s["audio"] for s in scenes]))
    seconds = len(scenes[0]["audio"]) / scenes[0]["sr"]
    est = [decode(p, threshold=threshold, median_frames=median_frames, classes=spec.classes, seconds=seconds)
           for p in probs]
    ref = [[{k: e[k] for k in ("label", "onset", "offset")} for e in s["events"]] for s in scenes]
    out = sed_scores(ref, est, seconds=seconds, classes=spec.classes)
    out.update({"split": split, "threshold": threshold, "median_frames": median_frames})
    return out


THRESHOLD_CHOICES = (0.3, 0.4, 0.5, 0.6)


def choose_rule(spec, scenes: list[dict], *, thresholds=THRESHOLD_CHOICES, medians=MEDIAN_CHOICES
                ) -> tuple[float, int, dict]:
    """Threshold and median-filter length maximising segment F1 + event F1 on (validation) ``scenes``.

    Returns
    -------
    threshold, median_frames, table
        ``table["<threshold>/<median>"] = {"segment_f1", "segment_er", "event_f1"}``.
    """
    probs = predict(spec, np.stack([s["audio"] for s in scenes]))
    table, keys = {}, []
    for th in thresholds:
        for k in medians:
            r = evaluate(spec, scenes=scenes, probs=probs, threshold=th, median_frames=k, split="val")
            table[f"{th:g}/{k}"] = {"segment_f1": r["segment_f1"], "segment_er": r["segment_er"],
                                    "event_f1": r["event_f1"]}
            keys.append((th, k))
    best = max(keys, key=lambda q: (table[f"{q[0]:g}/{q[1]}"]["segment_f1"] + table[f"{q[0]:g}/{q[1]}"]["event_f1"],
                                    -abs(q[0] - 0.5), -q[1]))
    return float(best[0]), int(best[1]), table


def choose_median(spec, scenes: list[dict], *, choices=MEDIAN_CHOICES, threshold: float = 0.5) -> tuple[int, dict]:
    """Median-filter length maximising the mean of segment F1 and event F1 on (validation) ``scenes``."""
    probs = predict(spec, np.stack([s["audio"] for s in scenes]))
    table = {}
    for k in choices:
        r = evaluate(spec, scenes=scenes, probs=probs, threshold=threshold, median_frames=k, split="val")
        table[k] = {"segment_f1": r["segment_f1"], "segment_er": r["segment_er"], "event_f1": r["event_f1"]}
    best = max(choices, key=lambda k: (table[k]["segment_f1"] + table[k]["event_f1"], -k))
    return int(best), table


# ---- data ------------------------------------------------------------------------------
def scene_arrays(s: dict, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """``(audio float16 (N,), targets uint8 (classes, n_frames))`` of one scene."""
    return s["audio"].astype(np.float16), event_roll(s["events"], n_frames).astype(np.uint8)


class _Buffer:
    """Training scenes in memory; slot ``j`` is refreshed with new scenes as training goes on."""

    def __init__(self, n: int, refresh: int, sr: int, n_frames: int):
        self.n, self.refresh, self.sr, self.n_frames = int(n), int(refresh), sr, n_frames
        self.audio = np.zeros((self.n, int(SCENE_SECONDS * sr)), np.float16)
        self.targets = np.zeros((self.n, len(SCENE_CLASSES), n_frames), np.uint8)
        self.index = np.arange(self.n)

    def fill(self, step: int, *, progress: bool = True) -> None:
        """Load the contents the buffer has after ``step`` optimiser steps (deterministic)."""
        made = step * self.refresh  # fresh scenes n, n+1, ... went to slots (m % n)
        want = np.arange(self.n).copy()
        if made:
            m = np.arange(made)
            want[m % self.n] = self.n + m  # later assignments overwrite earlier ones
        it = range(self.n)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="train scenes", leave=False, mininterval=10.0)
        for j in it:
            self._put(j, int(want[j]))

    def _put(self, slot: int, index: int) -> None:
        s = scene("train", index, sr=self.sr, seconds=SCENE_SECONDS, stems=False)
        self.audio[slot], self.targets[slot] = scene_arrays(s, self.n_frames)
        self.index[slot] = index

    def advance(self, step: int) -> None:
        """Refresh the slots due at ``step`` (the step about to run, 0-based)."""
        for r in range(self.refresh):
            m = step * self.refresh + r
            self._put(m % self.n, self.n + m)


def _random_eq(y: np.ndarray, rng: np.random.Generator, sr: int, max_db: float) -> np.ndarray:
    """A new recording chain: 1-3 random peaks/notches (Gaussian in log-frequency, up to ``max_db`` dB)."""
    if max_db <= 0:
        return y
    spec = np.fft.rfft(y.astype(np.float32))
    octv = np.log2(np.maximum(np.fft.rfftfreq(len(y), 1.0 / sr), 20.0))
    gain_db = np.zeros_like(octv)
    for _ in range(int(rng.integers(1, 4))):
        c, w = rng.uniform(np.log2(100.0), np.log2(7000.0)), rng.uniform(0.3, 1.5)
        gain_db += rng.uniform(-max_db, max_db) * np.exp(-0.5 * ((octv - c) / w) ** 2)
    return np.fft.irfft(spec * (10 ** (gain_db / 20)).astype(np.float32), len(y)).astype(np.float32)


#: Batch-time augmentation defaults (train only; val and test scenes are never touched).
AUGMENT = {"gain_db": 6.0, "mix_snr_db": (-6.0, 0.0), "speed": 0.0, "eq_db": 0.0, "shift": False}


def _batch(buf: _Buffer, rng: np.random.Generator, batch_size: int, mix_prob: float, crop_frames: int,
           aug: dict | None = None):
    """Random training crops, some of them two scenes summed, with the augmentations in ``aug``.

    ``aug`` (see :data:`AUGMENT`): ``gain_db`` (overall level ±), ``mix_snr_db`` (level of the second
    scene of a mixed crop), ``speed`` (play the crop ``f`` times faster, ``f`` log-uniform in
    ``[1/(1+speed), 1+speed]``: pitch and tempo together, by linear-interpolation resampling; the frame
    targets are read at the source positions), ``eq_db`` (random peaks/notches), ``shift`` (crops start
    at any sample, not only on the 20 ms frame grid).
    """
    aug = {**AUGMENT, **(aug or {})}
    hop = int(round(FRAME_SECONDS * buf.sr))
    crop_frames = min(int(crop_frames), buf.n_frames)
    n = (crop_frames - 1) * hop
    N = buf.audio.shape[1]
    y = np.zeros((batch_size, n), np.float32)
    t = np.zeros((batch_size, len(SCENE_CLASSES), crop_frames), np.float32)

    def crop(j):
        s = float(aug["speed"])
        f = float(np.exp(rng.uniform(-np.log1p(s), np.log1p(s)))) if s > 0 else 1.0
        L = min(N - 1, int(math.ceil(n * f)) + 1)
        f = min(f, (L - 1) / n)
        if aug["shift"] or f != 1.0:
            s0 = int(rng.integers(N - L + 1))
        else:
            s0 = int(rng.integers(buf.n_frames - crop_frames + 1)) * hop
        seg = buf.audio[j, s0:s0 + L].astype(np.float32)
        if f == 1.0:
            a = seg[:n]
        else:
            a = np.interp(np.arange(n) * f, np.arange(L), seg).astype(np.float32)
        src_frames = np.clip(np.rint((s0 + np.arange(crop_frames) * hop * f) / hop).astype(int), 0, buf.n_frames - 1)
        return a, buf.targets[j][:, src_frames].astype(np.float32)

    lo, hi = aug["mix_snr_db"]
    for b in range(batch_size):
        y[b], t[b] = crop(int(rng.integers(buf.n)))
        if rng.random() < mix_prob:  # event mixing: two scenes at once, union of labels
            y2, t2 = crop(int(rng.integers(buf.n)))
            y[b] = 0.7 * (y[b] + y2 * np.float32(10 ** (rng.uniform(lo, hi) / 20)))
            t[b] = np.maximum(t[b], t2)
        if aug["eq_db"] > 0 and rng.random() < 0.8:
            y[b] = _random_eq(y[b], rng, buf.sr, float(aug["eq_db"]))
        g = float(aug["gain_db"])
        y[b] *= np.float32(10 ** (rng.uniform(-g, g) / 20))  # overall gain
    peak = np.abs(y).max(axis=1, keepdims=True)
    y = np.where(peak > 0.99, y * (0.99 / np.maximum(peak, 1e-9)), y)
    return y, t


def spec_augment(X, rng: np.random.Generator, *, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2,
                 time_width: int = 10):
    """SpecAugment (Park et al. 2019) on model inputs ``(batch, bands, frames)``: masks filled with the example's mean.

    Labels are kept: a masked stretch inside an event must be bridged from its context.
    """
    X = X.clone()
    b, F, T = X.shape
    for i in range(b):
        fill = X[i].mean()
        for _ in range(freq_masks):
            w = int(rng.integers(0, freq_width + 1))
            f0 = int(rng.integers(0, max(1, F - w)))
            X[i, f0:f0 + w, :] = fill
        for _ in range(time_masks):
            w = int(rng.integers(0, time_width + 1))
            t0 = int(rng.integers(0, max(1, T - w)))
            X[i, :, t0:t0 + w] = fill
    return X


# ---- training ----------------------------------------------------------------------------
def _features(spec, y):
    """``spec.features(y)``, with the log-mel power taken as ``re² + im²`` (no square root; same values)."""
    import torch

    if spec.input_kind != "logmel":
        return spec.features(y)
    S = spec.grid.stft(y)
    return spec.to_model_layout(torch.log(spec.grid.mel(S.real ** 2 + S.imag ** 2) + spec.eps))


def _lr_factor(frac: float, step: int, warmup: int) -> float:
    w = min(1.0, (step + 1) / max(1, warmup))
    return w * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def add_sed_options(p) -> None:
    """Recipe options specific to the detectors (the rest come from ``_common.make_parser``)."""
    p.add_argument("--n-train", type=int, default=400, help="training scenes held in memory (default %(default)s)")
    p.add_argument("--n-val", type=int, default=None, help="validation scenes (default 40)")
    p.add_argument("--refresh", type=int, default=1, help="buffer slots replaced by new training scenes per step")
    p.add_argument("--mix-prob", type=float, default=0.3, help="share of a batch that is two scenes summed")
    p.add_argument("--crop-seconds", type=float, default=4.0, help="training crop length (s)")
    p.add_argument("--eval-seconds", type=float, default=90.0, help="seconds of training between val evaluations")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--max-pos-weight", type=float, default=3.0,
                   help="cap of the positive-frame weight sqrt((1 - p) / p) of a class with frame prevalence p")
    p.add_argument("--warmup-steps", type=int, default=30, help="linear learning-rate warm-up (steps)")
    p.add_argument("--init-from", default=None,
                   help="start from the weights of this checkpoint (safetensors of the same architecture)")
    p.add_argument("--gain-db", type=float, default=AUGMENT["gain_db"], help="random overall gain, +-dB")
    p.add_argument("--mix-snr", type=float, nargs=2, default=list(AUGMENT["mix_snr_db"]),
                   help="level (dB) of the second scene in a mixed crop: uniform in [LO, HI]")
    p.add_argument("--speed", type=float, default=AUGMENT["speed"],
                   help="speed/pitch perturbation of crops: factor in [1/(1+s), 1+s] (0 = off)")
    p.add_argument("--eq-db", type=float, default=AUGMENT["eq_db"], help="random EQ peaks/notches up to +-dB (0 = off)")
    p.add_argument("--shift", action="store_true", help="crops start at any sample (not only on the frame grid)")
    p.add_argument("--spec-augment", action="store_true",
                   help="SpecAugment time/frequency masks on log-mel inputs (CRNN only)")
    p.add_argument("--choose-threshold", action="store_true",
                   help="choose the threshold (0.3-0.6) with the median filter on validation (default: 0.5)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="also keep an exponential moving average of the weights with this decay per step (e.g. 0.999; "
                        "0 = off); each validation scores both and the better on val is the candidate")
    p.add_argument("--train-check", type=int, default=40,
                   help="score the final model on this many scenes of training recordings (generalisation gap)")


def train_detector(mod, argv=None, *, minutes: float = 11.0, lr: float = 2e-3, batch_size: int = 16,
                   summary: str = "", architecture: list | None = None, notes: list | None = None,
                   defaults: dict | None = None) -> dict:
    """Train, select on val, score on test, save checkpoint + card. Returns the card.

    Parameters
    ----------
    mod : module
        :mod:`model_zoo.crnn_sed` or :mod:`model_zoo.rawcnn_sed`.
    argv : list of str, optional
        Command line (see ``--help``).
    """
    import torch
    from tqdm import tqdm

    from . import _common as C

    parser = C.make_parser(mod.NAME, minutes=minutes, batch_size=batch_size, lr=lr,
                           description=f"Train the zoo's {mod.NAME} sound-event detector on the scene data.")
    add_sed_options(parser)
    if defaults:
        parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    if args.smoke:
        import tempfile

        args.steps = 2 if args.steps is None else args.steps
        args.out_dir = args.out_dir or tempfile.mkdtemp(prefix=f"zoo_smoke_{mod.NAME}_")
        args.n_train, args.n_val, args.refresh, args.batch_size = 2, 2, 0, 2
        args.n_test = 2 if args.n_test is None else args.n_test
    paths = C.zoo_paths(mod.NAME, args.out_dir)
    torch.set_num_threads(int(args.threads))
    rng_seed = int(args.seed)
    C.seed_everything(rng_seed)

    if args.card_only:
        return rescore_card(mod, paths, n_test=args.n_test, train_check=0 if args.smoke else args.train_check)
    config = dict(mod.DEFAULT_CONFIG)
    model = mod.build(config)
    spec = mod.make_spec(model)
    sr = spec.sample_rate
    n_frames = int(SCENE_SECONDS * sr) // int(round(FRAME_SECONDS * sr)) + 1  # centred 20 ms frames
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    init = None
    if args.init_from:
        import hashlib

        sd0, meta0 = C.load_checkpoint(args.init_from)
        model.load_state_dict(sd0, strict=True)
        init = {"checkpoint": str(Path(args.init_from).name),
                "sha256": hashlib.sha256(Path(args.init_from).read_bytes()).hexdigest(),
                "postprocessing": (meta0.get("config") or {}).get("postprocessing")}
        print(f"[{mod.NAME}] initialised from {args.init_from} (sha256 {init['sha256'][:12]})", flush=True)
    aug = {"gain_db": args.gain_db, "mix_snr_db": tuple(args.mix_snr), "speed": args.speed, "eq_db": args.eq_db,
           "shift": bool(args.shift)}
    use_specaug = bool(args.spec_augment) and spec.input_kind == "logmel"
    state = C.TrainState(mod.NAME, model, opt, root=paths.train_root)
    best_path = state.dir / "best.safetensors"
    saved = state.restore() if args.resume else {}
    step = int(saved.get("step", 0))
    best = {"score": float(saved.get("best_score", -1.0)), "step": int(saved.get("best_step", -1)),
            "val": saved.get("best_val", {})}
    history = list(saved.get("history", []))
    if init is not None and history and history[0].get("step") == 0:  # resumed: the initial weights' val score
        init["val"] = {k: history[0][k] for k in ("segment_f1", "segment_er", "event_f1")}
    timer = C.Timer(args.minutes, already=float(saved.get("elapsed", 0.0)))
    print(f"[{mod.NAME}] {C.count_params(model):,} params; {'resuming at step ' + str(step) if step else 'fresh start'}; "
          f"budget {args.minutes} min, device {C.device_description()}", flush=True)

    t_data = time.perf_counter()
    buf = _Buffer(args.n_train, args.refresh, sr, n_frames)
    buf.fill(step, progress=not args.smoke)
    val_scenes = scene_set("val", n=args.n_val, sr=sr, stems=False)
    print(f"[{mod.NAME}] data ready in {time.perf_counter() - t_data:.1f} s: {buf.n} train scenes in the buffer "
          f"(+{args.refresh}/step), {len(val_scenes)} val scenes", flush=True)

    def validate():
        r = evaluate(spec, scenes=val_scenes, threshold=0.5, median_frames=1, split="val")
        return {k: r[k] for k in ("segment_f1", "segment_er", "event_f1")}

    # class weights for the rare (short) classes: positive frames count sqrt((1 - p) / p) times, capped
    prev = buf.targets.reshape(buf.n, len(SCENE_CLASSES), -1).mean(axis=(0, 2)).astype(np.float64)
    pos_weight = torch.as_tensor(np.clip(np.sqrt((1 - prev) / np.maximum(prev, 1e-3)), 1.0, args.max_pos_weight),
                                 dtype=torch.float32).view(1, -1, 1)
    print(f"[{mod.NAME}] frame prevalence {np.round(prev, 3).tolist()} -> positive weights "
          f"{np.round(pos_weight.flatten().numpy(), 2).tolist()}", flush=True)

    def bce(p, t):
        p = p.clamp(1e-6, 1 - 1e-6)
        return -(pos_weight * t * torch.log(p) + (1 - t) * torch.log1p(-p)).mean()

    ema = WeightAverage(model, float(args.ema)) if args.ema else None
    last_eval = timer.elapsed()
    max_steps = args.steps
    bar = tqdm(total=max_steps, initial=step, desc=mod.NAME, mininterval=10.0, disable=args.smoke)
    model.train()
    losses = []
    if init is not None and step == 0:  # the starting point is a candidate too: selection can only improve on it
        v = validate()
        model.train()
        history.append({"step": 0, "seconds": 0.0, "loss": None, **v})
        init["val"] = v
        print(f"[{mod.NAME}] step 0 (initial weights) val seg-F1 {v['segment_f1']:.3f} ER {v['segment_er']:.3f} "
              f"ev-F1 {v['event_f1']:.3f}", flush=True)
        best = {"score": v["segment_f1"], "step": 0, "val": v}
        C.save_checkpoint(model, best_path, name=mod.NAME, config=config)
        last_eval = timer.elapsed()
    while True:
        if (max_steps is not None and step >= max_steps) or timer.expired():
            break
        frac = max(step / max_steps if max_steps else 0.0, timer.elapsed() / timer.budget)
        for g in opt.param_groups:
            g["lr"] = args.lr * _lr_factor(frac, step, warmup=args.warmup_steps)
        buf.advance(step)
        rng = np.random.default_rng([rng_seed, step])
        y, t = _batch(buf, rng, args.batch_size, args.mix_prob, int(round(args.crop_seconds / FRAME_SECONDS)) + 1,
                      aug)
        X = _features(spec, torch.from_numpy(y))
        if use_specaug:
            X = spec_augment(X, rng)
        out = spec.select_output(model(X))
        loss = bce(out, torch.from_numpy(t))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if ema is not None:
            ema.update(model)
        step += 1
        losses.append(loss.item())
        bar.update(1)
        done = (max_steps is not None and step >= max_steps) or timer.expired()
        if done or timer.elapsed() - last_eval >= args.eval_seconds:
            v = validate()
            ve, ema_wins = None, False
            if ema is not None:  # the averaged weights are scored in place, then the live weights come back
                live = ema.swap_in(model)
                ve = validate()
                ema_wins = ve["segment_f1"] > max(best["score"], v["segment_f1"])
                if ema_wins:
                    C.save_checkpoint(model, best_path, name=mod.NAME, config=config)
                model.load_state_dict(live)
            model.train()
            last_eval = timer.elapsed()
            history.append({"step": step, "seconds": round(timer.elapsed(), 1), "loss": float(np.mean(losses[-50:])),
                            "lr": float(opt.param_groups[0]["lr"]), **v, **({"ema": ve} if ve else {})})
            print(f"[{mod.NAME}] step {step} {timer.elapsed() / 60:.1f} min loss {np.mean(losses[-50:]):.4f} "
                  f"val seg-F1 {v['segment_f1']:.3f} ER {v['segment_er']:.3f} ev-F1 {v['event_f1']:.3f}"
                  + (f" | EMA seg-F1 {ve['segment_f1']:.3f} ER {ve['segment_er']:.3f}" if ve else ""), flush=True)
            if ema_wins:
                best = {"score": ve["segment_f1"], "step": step, "val": ve, "weights": "ema"}
            elif v["segment_f1"] > best["score"]:
                best = {"score": v["segment_f1"], "step": step, "val": v, **({"weights": "live"} if ema else {})}
                C.save_checkpoint(model, best_path, name=mod.NAME, config=config)
            state.save(step=step, elapsed=timer.elapsed(), best_score=best["score"], best_step=best["step"],
                       best_val=best["val"], history=history)
    bar.close()
    train_seconds = timer.elapsed()

    # best weights, decision rule on val, one look at test
    if best_path.is_file():
        sd, _ = C.load_checkpoint(best_path)
        model.load_state_dict(sd)
    model.eval()
    t_eval = time.perf_counter()
    if args.choose_threshold:
        threshold, median, table = choose_rule(spec, val_scenes)
    else:
        threshold = 0.5
        median, table = choose_median(spec, val_scenes)
    config["postprocessing"] = {"threshold": threshold, "median_frames": median}
    model.postprocessing = dict(config["postprocessing"])
    model.config = config
    spec.info["postprocessing"] = dict(model.postprocessing)
    ckpt = C.save_checkpoint(model, paths.checkpoint, name=mod.NAME, config=config)
    card = {}
    if not args.no_eval:
        test, subset, k = _score_test(spec, args.n_test)
        train_check = None
        if args.train_check and not args.smoke:
            tr = evaluate(spec, "train", args.train_check)
            train_check = {k_: tr[k_] for k_ in ("segment_f1", "segment_er", "event_f1")}
        card = make_card(mod, model, ckpt, config=config, args=args, step=step, train_seconds=train_seconds,
                         eval_seconds=time.perf_counter() - t_eval, best=best, median_table=table, test=test,
                         subset=subset, subset_n=k, n_val=len(val_scenes), history=history, summary=summary,
                         pos_weight=pos_weight, init=init, aug=aug, use_specaug=use_specaug, train_check=train_check,
                         architecture=architecture or [], notes=notes or [],
                         earlier=earlier_runs_for(mod.NAME, init))
        _write_card(mod.NAME, card, paths.cards)
        print(f"[{mod.NAME}] test: seg-F1 {test['segment_f1']:.3f} ER {test['segment_er']:.3f} "
              f"ev-F1 {test['event_f1']:.3f} (median {median} frames)", flush=True)
    state.clear()
    return card


def _score_test(spec, n_test: int | None) -> tuple[dict, dict, int]:
    """Scores on the test split (the checkpoint's own decision rule) and on its first ``SUBSET_N`` scenes."""
    test_scenes = scene_set("test", n=n_test, sr=spec.sample_rate, stems=False)
    probs = predict(spec, np.stack([s["audio"] for s in test_scenes]))
    test = evaluate(spec, scenes=test_scenes, probs=probs, split="test")
    k = min(SUBSET_N, len(test_scenes))
    return test, evaluate(spec, scenes=test_scenes[:k], probs=probs[:k], split="test"), k


def _write_card(name: str, card: dict, cards_dir) -> None:
    """The card's JSON and markdown, then its learning curves (a figure that fails costs only the figure)."""
    from . import _common as C

    C.write_card(name, card, out_dir=cards_dir)
    try:
        add_learning_curves(name, cards_dir)
    except Exception as exc:
        print(f"[{name}] learning-curve figure not written: {exc}", flush=True)


def rescore_card(mod, paths, *, n_test: int | None = None, train_check: int = 40) -> dict:
    """``--card-only``: score the saved checkpoint on test again and rewrite the measured parts of its card.

    Nothing is trained. The checkpoint's own decision rule (its ``postprocessing``) is used. The card's metrics,
    floors, fixed-subset scores, checkpoint hash and the generated floor notes are replaced; everything else in the
    existing card (training facts, history, earlier runs, hand-written notes and blocks) is kept as it is.
    """
    import hashlib

    from . import _common as C

    card_path = Path(paths.cards) / f"{mod.NAME}.json"
    if not card_path.is_file():
        raise C.CheckpointError(f"--card-only needs an existing card, none at {card_path}")
    card = json.loads(card_path.read_text())
    state, meta = C.load_checkpoint(paths.checkpoint)
    model = mod.build(meta["config"])
    model.load_state_dict(state, strict=True)
    model.eval()
    spec = mod.make_spec(model)
    test, subset, k = _score_test(spec, n_test)
    floors = floor_report(mod.NAME, test)
    generated = ("FLOOR NOT MET:", "All acceptance floors are met")
    notes = [n for n in card.get("notes", []) if not str(n).startswith(generated)]
    notes += [f"FLOOR NOT MET: test {m} = {f['value']:.3f}, floor {f['floor']}." for m, f in floors.items()
              if not f["met"]]
    if floors and all(f["met"] for f in floors.values()):
        notes.append("All acceptance floors are met on the test split.")
    card.update(_round({
        "checkpoint_bytes": Path(paths.checkpoint).stat().st_size,
        "checkpoint_sha256": hashlib.sha256(Path(paths.checkpoint).read_bytes()).hexdigest(),
        "metrics": {"test": {m: test[m] for m in ("segment_f1", "segment_er", "segment_precision", "segment_recall",
                                                   "event_f1", "event_er")},
                    "test_per_class": test["per_class"]},
        "subset_metrics": {"n_scenes": k, "split": "test",
                           **{m: subset[m] for m in ("segment_f1", "segment_er", "event_f1", "event_er")}},
        "floors": floors,
        "notes": notes,
    }))
    if train_check:
        tr = evaluate(spec, "train", train_check)
        card["train_recordings_check"] = _round({"n_scenes": train_check,
                                                 **{m: tr[m] for m in ("segment_f1", "segment_er", "event_f1")}})
    _write_card(mod.NAME, card, paths.cards)
    print(f"[{mod.NAME}] card rewritten from the saved checkpoint: test seg-F1 {test['segment_f1']:.3f} "
          f"ER {test['segment_er']:.3f} ev-F1 {test['event_f1']:.3f}", flush=True)
    return card


def floor_report(name: str, metrics: dict) -> dict:
    """``{metric: {"floor", "value", "met"}}`` for the model's acceptance floors."""
    out = {}
    for k, (op, v) in FLOORS.get(name, {}).items():
        val = float(metrics[k])
        out[k] = {"floor": f"{op} {v}", "value": round(val, 4), "met": bool(val >= v if op == ">=" else val <= v)}
    return out


def _round(d, nd: int = 4):
    if isinstance(d, dict):
        return {k: _round(v, nd) for k, v in d.items()}
    if isinstance(d, float):
        return round(d, nd)
    return d


def scenes_description(man: dict) -> str:
    """One sentence on how the scenes are made, from the data manifest."""
    aug = man["augmentation"]
    return (f"{SCENE_SECONDS:g} s at 16 kHz; {aug['events_per_10s'][0]}-{aug['events_per_10s'][1]} events per scene at "
            f"{aug['snr_db'][0]:g} to {aug['snr_db'][1]:g} dB over one or two looped ambience recordings and a "
            f"coloured-noise floor; speed x{aug['speed'][0]:g}-{aug['speed'][1]:g}, spectral tilt "
            f"(f/1 kHz)^a with a in [{aug['spectral_tilt'][0]:g}, {aug['spectral_tilt'][1]:g}]; onset/offset where "
            f"the event's 20 ms energy is within {man['labels']['top_db']:g} dB of its peak; fmin/fmax hold "
            f"{100 * man['labels']['band_energy']:g} % of its energy")


def make_card(mod, model, ckpt: Path, *, config, args, step, train_seconds, eval_seconds, best, median_table, test,
              subset, subset_n, n_val, history, summary, architecture, notes, pos_weight, init=None, aug=None,
              use_specaug=False, train_check=None, earlier=None) -> dict:
    """The model card (JSON-able): what the checkpoint is, what it was trained on, how it scores.

    ``earlier``: the runs behind the initial weights (:func:`earlier_runs_for`), kept with their histories.
    """
    import hashlib

    from . import _common as C

    man = scene_manifest()
    floors = floor_report(mod.NAME, test)
    notes = list(notes)
    for k, f in floors.items():
        if not f["met"]:
            notes.append(f"FLOOR NOT MET: test {k} = {f['value']:.3f}, floor {f['floor']}.")
    if floors and all(f["met"] for f in floors.values()):
        notes.append("All acceptance floors are met on the test split.")
    if args.smoke:
        notes.append("SMOKE RUN: 2 steps on 2 scenes; the numbers mean nothing.")
    if train_check is not None:
        notes.append(f"Generalisation gap: on {args.train_check} scenes built from training recordings the same "
                     f"checkpoint scores segment F1 {train_check['segment_f1']:.3f} (ER {train_check['segment_er']:.3f}); "
                     f"on held-out recordings (test) {test['segment_f1']:.3f}. Validation (held-out recordings too) "
                     f"peaked at {best['score']:.3f} at step {best['step']}.")
    if init is not None:
        notes.append(f"Training continued from the checkpoint {init['checkpoint']} (sha256 {init['sha256'][:16]}...), "
                     f"whose validation segment F1 on the same {n_val} scenes was {init['val']['segment_f1']:.3f} "
                     f"(step 0 of the history); steps count from there.")
    headline = {k: test[k] for k in ("segment_f1", "segment_er", "segment_precision", "segment_recall", "event_f1",
                                     "event_er")}
    return _round({
        "summary": summary,
        "task": mod.TASK,
        "params": C.count_params(model),
        "checkpoint": str(Path(ckpt).name),
        "checkpoint_bytes": Path(ckpt).stat().st_size,
        "checkpoint_sha256": hashlib.sha256(Path(ckpt).read_bytes()).hexdigest(),
        "input_kind": as_spec(model).input_kind,
        "output_kind": "frame_probs",
        "classes": list(SCENE_CLASSES),
        "grid": {"sample_rate": 16000, "frame_seconds": FRAME_SECONDS, "n_fft": 1024, "hop_length": 320,
                 **({"n_mels": 64} if as_spec(model).input_kind == "logmel" else {})},
        "architecture": architecture,
        "config": config,
        "data": {
            "dataset": "scenes (model_zoo/data/scenes.py, version %d)" % man["version"],
            "classes": man["class_descriptions"],
            "scenes": scenes_description(man),
            "sizes": {"train_buffer": args.n_train, "train_scenes_made": args.n_train + step * args.refresh,
                      "val": n_val, "test": test["n_scenes"]},
            "source_files_per_split": man["counts"],
            "held_out": man["held_out"],
            "debian_packages": sorted({p["debian_package"] for p in man["packages"].values()}),
            "licences": {p["debian_package"]: f"{p['licence']} - {p['credit']}" for p in man["packages"].values()},
        },
        "training": {
            "steps": step, "seconds": round(train_seconds, 1), "minutes_budget": args.minutes,
            "eval_seconds": round(eval_seconds, 1), "device": C.device_description(), "batch_size": args.batch_size,
            "optimizer": "AdamW", "lr": f"{args.lr:g}", "weight_decay": f"{args.weight_decay:g}",
            "positive_weights": dict(zip(SCENE_CLASSES, pos_weight.flatten().tolist())),
            "schedule": f"{args.warmup_steps}-step warm-up, cosine decay to 5 % over the time budget",
            "initialised_from": init,
            "augmentation": {"scene_level": "per event: SNR, speed x0.9-1.1, spectral tilt, placement (data/scenes.py)",
                             "batch_level": {**(aug or {}), "mix_prob": args.mix_prob},
                             "spec_augment": ({"freq_masks": 2, "freq_width": 8, "time_masks": 2, "time_width": 10}
                                              if use_specaug else None)},
            "loss": f"frame-wise BCE, positive frames of class c weighted min({args.max_pos_weight:g}, sqrt((1 - p_c) / p_c))",
            "mix_prob": args.mix_prob, "refresh_per_step": args.refresh, "seed": args.seed,
            "crop_seconds": args.crop_seconds,
            "selection": "best validation segment F1 (threshold 0.5, no smoothing), checked every "
                         f"{args.eval_seconds:g} s"
                         + (f"; candidates are the live weights and their moving average (decay {args.ema:g} per "
                            "step)" if getattr(args, "ema", 0) else ""),
            "best_step": best["step"], "best_val": best["val"],
            **({"ema_decay": args.ema, "best_weights": best.get("weights", "live")} if getattr(args, "ema", 0) else {}),
            "decision_rule_on_val": {str(k): v for k, v in median_table.items()},
            "software": C.software_versions(),
        },
        "training_history": history,
        **({"earlier_runs": earlier} if earlier else {}),
        "postprocessing": config["postprocessing"],
        "metrics": {"test": headline, "test_per_class": test["per_class"]},
        **({"train_recordings_check": {"n_scenes": args.train_check, **train_check}} if train_check else {}),
        "subset_metrics": {"n_scenes": subset_n, "split": "test",
                           **{k: subset[k] for k in ("segment_f1", "segment_er", "event_f1", "event_er")}},
        "floors": floors,
        "evaluation": "sed_eval 0.2.1: segment-based on 1 s segments; event-based with a 200 ms onset collar and "
                      "an offset collar of max(200 ms, 20 % of the event length); threshold "
                      f"{config['postprocessing']['threshold']:g} after a median filter of "
                      f"{config['postprocessing']['median_frames']} frames, both chosen on the validation split",
        "notes": notes,
    })


# ---- learning curves ---------------------------------------------------------------------
def learning_curve_table(history: list[dict]) -> list[str]:
    """Markdown rows of a training history (one per validation)."""
    lines = ["| step | minutes | train loss | lr | val segment F1 | val segment ER | val event F1 |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for h in history:
        loss = "" if h.get("loss") is None else f"{h['loss']:.4f}"
        lr = "" if h.get("lr") is None else f"{h['lr']:.2g}"
        lines.append(f"| {h['step']} | {h['seconds'] / 60:.1f} | {loss} | {lr} | {h['segment_f1']:.3f} | "
                     f"{h['segment_er']:.3f} | {h['event_f1']:.3f} |")
    return lines


def earlier_runs_for(name: str, init: dict | None, cards_dir=None) -> list[dict]:
    """The runs behind the weights a training continued from, read from the card that describes those weights.

    A continued training starts from a shipped checkpoint; that checkpoint's card holds its own run's validation
    history (and, in ``earlier_runs``, the runs before it). They are carried into the new card so its learning
    curves show the whole path, not only the last leg. Empty when the training started from scratch or the card
    in ``cards_dir`` describes other weights (its ``checkpoint_sha256`` is not ``init["sha256"]``).

    Examples
    --------
    >>> earlier_runs_for("crnn_sed", None)
    []
    >>> earlier_runs_for("crnn_sed", {"sha256": "0" * 64})  # weights no card describes
    []
    """
    if not init or not init.get("sha256"):
        return []
    from . import _common as C

    path = Path(cards_dir or C.CARD_DIR) / f"{name}.json"
    if not path.is_file():
        return []
    card = json.loads(path.read_text())
    if card.get("checkpoint_sha256") != init["sha256"]:
        return []
    tr = card.get("training", {})
    run = {"checkpoint_sha256": card["checkpoint_sha256"],
           "initialised_from": (tr.get("initialised_from") or {}).get("sha256"),
           "steps": tr.get("steps"), "best_step": tr.get("best_step"), "lr": tr.get("lr"),
           "n_val": (card.get("data", {}).get("sizes") or {}).get("val"),
           "test_segment_f1": (card.get("metrics", {}).get("test") or {}).get("segment_f1"),
           "history": card.get("training_history") or []}
    return list(card.get("earlier_runs") or []) + [run]


def _run_offsets(earlier: list[dict]) -> list[int]:
    """Step offset of each run (earlier runs, then the current one): a run starts from its predecessor's best step."""
    offsets = [0]
    for run in earlier:
        best = run.get("best_step")
        if best is None or best < 0:
            best = run["history"][-1]["step"] if run.get("history") else 0
        offsets.append(offsets[-1] + int(best))
    return offsets


def learning_curve_figure(history: list[dict], *, earlier: list[dict] | None = None, title: str = ""):
    """Plotly figure: val segment F1 / ER / event F1 (left) and train loss (right) against optimiser steps.

    ``earlier`` (a card's ``earlier_runs``) are drawn first, each run shifted so that it starts at the step of its
    predecessor's selected (best-on-validation) weights, with a dotted line where each run begins.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    runs = list(earlier or []) + [{"history": history}]
    offsets = _run_offsets(runs[:-1])
    fig = make_subplots(rows=1, cols=2, subplot_titles=("validation (held-out recordings)", "training loss"))
    colours = {"segment_f1": "#1f77b4", "segment_er": "#d62728", "event_f1": "#2ca02c", "loss": "#7f7f7f"}
    for key, name in (("segment_f1", "segment F1"), ("segment_er", "segment ER"), ("event_f1", "event F1")):
        xs, ys = [], []
        for off, run in zip(offsets, runs):
            xs += [off + h["step"] for h in run["history"]] + [None]
            ys += [h[key] for h in run["history"]] + [None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, line=dict(color=colours[key]),
                                 marker=dict(size=5)), 1, 1)
    xs, ys = [], []
    for off, run in zip(offsets, runs):
        tr = [(off + h["step"], h["loss"]) for h in run["history"] if h.get("loss") is not None]
        xs += [a for a, _ in tr] + [None]
        ys += [b for _, b in tr] + [None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name="train loss (BCE)",
                             line=dict(color=colours["loss"]), marker=dict(size=5)), 1, 2)
    if len(runs) > 1:
        for k, off in enumerate(offsets[1:], start=2):
            for col in (1, 2):
                fig.add_vline(x=off, line=dict(dash="dot", color="#888", width=1), row=1, col=col)
            fig.add_annotation(x=off, y=1.0, yref="y domain", xref="x", text=f"run {k}", showarrow=False,
                               xanchor="left", yanchor="top", font=dict(size=11, color="#555"))
    fig.update_xaxes(title_text="optimiser step")
    if len(runs) > 1:
        title = (title + "<br>" if title else "") + (
            f"<span style='font-size:12px'>{len(runs)} runs; each continues from its predecessor's selected "
            "(best-on-validation) step</span>")
    fig.update_layout(title=title, width=1000, height=400 if len(runs) > 1 else 380, template="plotly_white", margin=dict(l=50, r=20, t=105 if len(runs) > 1 else 60, b=50))
    return fig


def add_learning_curves(name: str, cards_dir, *, png: bool = True) -> Path:
    """Append the learning curves (table, and a PNG next to the card) to ``cards_dir/NAME.md``.

    The card's ``earlier_runs`` (see :func:`earlier_runs_for`) are drawn before the last run and listed one row each.
    """
    cards_dir = Path(cards_dir)
    card = json.loads((cards_dir / f"{name}.json").read_text())
    hist = card.get("training_history") or []
    earlier = card.get("earlier_runs") or []
    md_path = cards_dir / f"{name}.md"
    md = md_path.read_text()
    marker = "\n## Learning curves\n"
    md = md.split(marker)[0].rstrip("\n") + "\n"
    section = [marker.strip("\n"), "", "Validation scores (threshold 0.5, no smoothing) and the mean training loss of "
               "the last 50 batches (augmented crops) at each evaluation.", ""]
    if png and hist:
        import os

        os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")
        fig = learning_curve_figure(hist, earlier=earlier, title=f"{name}: learning curves")
        out = cards_dir / f"{name}.curves.png"
        tmp = cards_dir / f".{name}.curves.tmp.png"
        fig.write_image(str(tmp), scale=1)
        os.replace(tmp, out)
        section += [f"![learning curves of {name}]({out.name})", ""]
    if earlier:
        section += ["Earlier runs (each continued by the next from its selected weights; their full histories are in "
                    "the card's `earlier_runs`):", "",
                    "| run | weights (sha256) | from | steps | selected step | lr | val scenes | best val segment F1 | "
                    "test segment F1 |", "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
        for k, run in enumerate(earlier, start=1):
            best = max((h["segment_f1"] for h in run["history"]), default=float("nan"))
            test = run.get("test_segment_f1")
            section.append(f"| {k} | {run['checkpoint_sha256'][:12]} | {(run.get('initialised_from') or 'scratch')[:12]} "
                           f"| {run.get('steps')} | {run.get('best_step')} | {run.get('lr') or ''} | "
                           f"{run.get('n_val') or ''} | {best:.3f} | {'' if test is None else f'{test:.3f}'} |")
        section += ["", f"Run {len(earlier) + 1} (these weights):", ""]
    section += learning_curve_table(hist)
    md_path.write_text(md + "\n" + "\n".join(section) + "\n")
    return md_path
