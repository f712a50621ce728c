"""Recipe: deep clustering (``model_zoo.dc_speech``) on two REAL speakers at 8 kHz.

Run ``python -m model_zoo.recipes.dc_speech [--minutes 35] [--init dc_blstm|none]``; ``--smoke``
runs two steps on a tiny synthetic set into a temporary folder (for tests).

Data: :mod:`model_zoo.data.speakers` (klettres-data folders of real speakers, the asterisk
prompt voice in train only); test and val speakers are never heard in training.
Training: dynamic mixing (:class:`~model_zoo.data.speakers.StreamSampler`: fresh segments of
two training speakers of different languages every step, ±5 dB relative gain), by default
with speaker augmentation (per source: speed factor 0.8–1.25 by resampling, random EQ,
random time shift) and flite's four synthetic voices as extra TRAINING speakers
(``--no-augment`` / ``--no-flite`` switch them off), 2 s segments, dropout between the BLSTM
layers and decoupled weight decay (AdamW), the dc_blstm loss with bins < −40 dB of the mixture's peak weighted out, Adam with
warm-up + cosine decay over the time budget, gradient clipping. ``--init NAME`` starts the
network from a shipped zoo checkpoint of the same architecture (``dc_blstm``, the instrument
model, or ``dc_speech`` itself; input normalisation refitted on the training mixtures). Model selection on the VAL speakers only; the test
split is touched once, at the end, for the card.

Card metrics beyond dc_blstm's: **k-means mask accuracy** — over the non-silent T-F bins
(within 40 dB of the mixture's loudest bin), the share whose k-means cluster agrees with the
ideal-binary-mask label (the louder source), under the better of the two cluster↔source
permutations; averaged over test mixtures.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from model_zoo import dc_blstm as M
from model_zoo import dc_speech as DS
from model_zoo.recipes._common import (count_params, limit_threads, load_checkpoint, load_separation_set, parse_args,
                                       previous_training, restore_trained, seed_everything, train_loop, write_card,
                                       zoo_paths, CHECKPOINT_DIR)
from model_zoo.recipes.dc_blstm import dc_floor, dc_step, fit_input_normalisation, publish, val_score

__all__ = ["main", "mask_accuracy", "mask_accuracy_items", "MASK_ACC_FLOOR", "run_summary", "earlier_runs_for",
           "learning_curve_figure", "add_learning_curves", "next_run_label"]

MASK_ACC_FLOOR = 0.85
N_VAL = 200
#: what was tried before the shipped run (the card's "tried" section); the shipped run's own facts are in "training"
TRIED = [
    "v1 (queue job 25_dc_speech, 32 min on one shared CPU core): init dc_blstm, plain dynamic mixing of the 23 "
    "real training speakers, 1 s segments, batch 12, Adam lr 1e-3, no dropout, 20 val mixtures: 3497 steps, best "
    "val SI-SDRi 4.02 dB (the last eval; val already 4.01 dB at step 357 and 1.2-3.8 dB in between while the train "
    "loss fell 0.23 -> 0.13: memorising the training speakers); test SI-SDRi 1.85 dB = 13 % of IBM 14.39 dB, "
    "k-means mask accuracy 0.72.",
    "v2 (queue job 30_dc_speech_v2): init from v1; speaker augmentation in dynamic mixing (training split only): "
    "per source a speed factor 0.8-1.25 (log-uniform, band-limited resampling: f0 and formants move together), "
    "random smooth EQ +-6 dB, random time shift up to 0.5 s; flite voices kal16/awb/rms/slt (60 training "
    "sentences each) as 4 extra training speakers; 2 s segments, batch 8; dropout 0.2 between BLSTM layers; AdamW "
    "weight decay 1e-2; model selection on 40 val mixtures.",
    "v2 outcome: 7163 steps in 5104 s; best val SI-SDRi 7.165 dB (40 val mixtures, best val score (val SI-SDRi), "
    "step 4644) vs v1 5.269 dB on the same 40; shipped. Test (60): SI-SDRi 2.506 dB = 17% of IBM 14.386 dB; "
    "k-means mask accuracy 0.736.",
    "v3 (2026-12-03, NOT shipped): init from v2 (sha256 65f929f65f9d); the v2 recipe plus four more REAL training "
    "speakers, the Asterisk prompt voices June (fr-CA), Carlo (it), IvrvoiceRU (ru) and Menardi (it), about 19 min of "
    "running speech each cut at pauses into phrases (StreamSampler prompts=True); 80 min on the otherwise idle 2 "
    "cores, torch threads=2: 15103 steps. Val SI-SDRi (40 mixtures, every ~2 min) swung between 4.7 and 7.2 dB; best "
    "7.152 dB at step 8130 against the shipped v2's 7.165 dB. Rule fixed before the test score was seen: ship only if "
    "the best val beats v2's on the same 40 val mixtures; it did not. The recipe's one test evaluation of its "
    "best-on-val weights (for the record): SI-SDRi 3.81 dB = 26 % of IBM 14.39 dB (v2 2.51 dB), k-means mask "
    "accuracy 0.757 (v2 0.736). Card and learning curves of that run: cards/attempts/dc_speech_v3.json and "
    ".curves.png.",
    "v4 (2026-12-03 session 29, NOT shipped): init from v2; the v3 recipe plus a moving average of the weights (EMA, "
    "decay 0.999 per step; validation and selection score the average) and model selection on 200 val mixtures instead "
    "of 40 (v2 scores 7.503 dB on the 200, measured before the run); lr 1e-3, threads=2. The averaged weights' val "
    "SI-SDRi fell from 7.17 dB (step 348) to 5.96-6.10 dB while the training loss fell 0.167 -> 0.149: at lr 1e-3 the "
    "network leaves v2 towards the training speakers. Stopped by hand at 1594 s of the 68-min budget (step 3955). Rule "
    "fixed before the run: ship only if the best val beats v2's 7.503 dB on the same 200; 7.173 did not. The recipe's "
    "one test evaluation of the best-on-val weights (step 348, mostly v2): SI-SDRi 2.69 dB, mask accuracy 0.735. "
    "Card and learning curves: cards/attempts/dc_speech_v4.json and .curves.png.",
    "v5 (session 29, NOT shipped): the v4 recipe at lr 1e-4 (cosine over 45 min) from v2. Val SI-SDRi of the averaged "
    "weights on the 200: 7.39 (step 321), 7.06, 6.79, 6.66 dB (step 1335) against v2's 7.503; stopped by hand at 531 s. "
    "Rule fixed before the run: ship only at >= 7.603 dB (v2 + 0.10). No card written and no test evaluation.",
    "v6 (session 29, NOT shipped): v2's own recipe (augmentation and flite voices, NO prompt voices) with the weight "
    "average and lr 1e-4, 30 min from v2 (4752 steps): to tell whether the prompt voices or further training itself "
    "pull the val score down. Val of the averaged weights on the 200 fell steadily, 7.37 (step 325), 7.21, 7.17, 7.07, "
    "7.02, 6.82, 6.67 ... 6.28 dB (step 4752), while the training loss fell 0.148 -> 0.136: further training on these "
    "training speakers, with or without the prompt voices, moves the network away from the val speakers; v2's "
    "selected step was a high point of a trajectory whose val score swung by +-1 dB between evaluations, and the "
    "average of the weights around any step scores lower. Rule fixed before the run: ship only at >= 7.603 dB; best "
    "7.367. The recipe's one test evaluation of the best-on-val weights (step 325): SI-SDRi 2.55 dB, mask accuracy "
    "0.738. Card and learning curves: cards/attempts/dc_speech_v6.json and .curves.png.",
]


def mask_accuracy(masks: np.ndarray, src_mag: np.ndarray, mix_mag: np.ndarray, *,
                  threshold_db: float = M.SILENCE_DB) -> float:
    """Share of non-silent bins whose binary ``masks`` (S, F, T) label matches the IBM label, best permutation.

    Parameters
    ----------
    masks : np.ndarray [shape=(2, F, T)]
        Binary masks (k-means clusters).
    src_mag : np.ndarray [shape=(2, F, T)]
        Magnitudes of the true sources; the IBM label of a bin is the louder source.
    mix_mag : np.ndarray [shape=(F, T)]
        Mixture magnitude; bins more than ``threshold_db`` below its maximum are left out.

    Examples
    --------
    >>> S = np.abs(np.random.default_rng(0).normal(size=(2, 5, 7)))
    >>> ibm = (S.argmax(0) == np.arange(2)[:, None, None]).astype(float)
    >>> mask_accuracy(ibm[::-1], S, S.sum(0))   # swapped clusters still count as right
    1.0
    """
    db = 20 * np.log10(mix_mag + 1e-10)
    active = db > db.max() + threshold_db
    lab = np.asarray(masks).argmax(0)[active]
    ref = np.asarray(src_mag).argmax(0)[active]
    if lab.size == 0:
        return float("nan")
    agree = float(np.mean(lab == ref))
    return max(agree, 1.0 - agree)


def mask_accuracy_items(model, items) -> list[float]:
    """:func:`mask_accuracy` of the model's k-means masks on each item."""
    out = []
    for it in items:
        V, X = M.embed(model, it["mixture"])
        mag = X.abs().numpy()
        masks = M.kmeans_masks(V, mag)
        S = M.GRID.stft(torch.as_tensor(np.asarray(it["sources"], np.float32))).abs().numpy()
        out.append(mask_accuracy(masks, S, mag))
    return out


# ---- learning curves -----------------------------------------------------------------------
def run_summary(card: dict, sha256: str, *, label: str) -> dict:
    """One training run of a dc_speech card, for the ``earlier_runs`` of the card of weights continued from it.

    Examples
    --------
    >>> card = {"val_history": [[10, 5.0, 0.2, 3.0], [20, 9.0, 0.19, 4.0]], "training": {"steps": 20, "lr": 1e-3,
    ...         "selection": "best val score (val SI-SDRi), step 20"}, "metrics": {"test": {"dc_kmeans":
    ...         {"si_sdri": 1.5}}}, "data": {"val": "first 20 val mixtures (val speakers; model selection only)"}}
    >>> r = run_summary(card, "ab" * 32, label="v1")
    >>> r["best_step"], r["n_val"], r["test_si_sdri"], r["history"][-1]
    (20, 20, 1.5, [20, 9.0, 0.19, 4.0])
    """
    import re

    tr = card.get("training", {})
    m = re.search(r"step (\d+)", str(tr.get("selection", "")))
    n_val = re.search(r"first (\d+) val", str(card.get("data", {}).get("val", "")))
    return {"label": label, "checkpoint_sha256": sha256, "steps": tr.get("steps"),
            "best_step": int(m.group(1)) if m else None, "lr": tr.get("lr"),
            "n_val": int(n_val.group(1)) if n_val else None,
            "test_si_sdri": (card.get("metrics", {}).get("test", {}).get("dc_kmeans") or {}).get("si_sdri"),
            "history": [list(h) for h in card.get("val_history") or []]}


def earlier_runs_for(init_sha: str | None, cards_dir=None, *, label: str | None = None) -> list[dict]:
    """The runs behind the weights a training continued from: the shipped card's ``earlier_runs`` plus its own run.

    Empty when the training did not start from the shipped dc_speech weights (``init_sha`` is not the sha256 of
    ``checkpoints/dc_speech.safetensors``) or no card describes them. The shipped run is labelled ``label``, else
    by its card's ``training.run_label``, else ``vN`` counting the runs before it.
    """
    import hashlib
    import json
    from pathlib import Path

    from model_zoo.recipes.cards import CARD_DIR

    path = Path(cards_dir or CARD_DIR) / f"{DS.NAME}.json"
    ckpt = CHECKPOINT_DIR / f"{DS.NAME}.safetensors"
    if not init_sha or not path.is_file() or not ckpt.is_file():
        return []
    if hashlib.sha256(ckpt.read_bytes()).hexdigest() != init_sha:
        return []
    card = json.loads(path.read_text())
    before = list(card.get("earlier_runs") or [])
    label = label or card.get("training", {}).get("run_label") or f"v{len(before) + 1}"
    return before + [run_summary(card, init_sha, label=label)]


def _run_offsets(runs: list[dict]) -> list[int]:
    """Step offset of each run: a run starts from its predecessor's selected (best-on-validation) step."""
    offsets = [0]
    for run in runs[:-1]:
        best = run.get("best_step")
        if best is None:
            best = run["history"][-1][0] if run.get("history") else 0
        offsets.append(offsets[-1] + int(best))
    return offsets


def learning_curve_figure(runs: list[dict], *, title: str = ""):
    """Plotly figure: val SI-SDRi (left) and mean train loss (right) of each run against optimiser steps.

    ``runs`` are dicts with ``label``, ``history`` (rows ``[step, seconds, train loss, val SI-SDRi]``), ``n_val``
    and ``best_step``; each run is drawn from the step of its predecessor's selected weights, its selected step
    marked with a star.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("val SI-SDRi (dB), held-out speakers", "training loss"))
    palette = ["#9467bd", "#1f77b4", "#2ca02c", "#d62728", "#ff7f0e"]
    for k, (off, run) in enumerate(zip(_run_offsets(runs), runs)):
        h = np.asarray(run["history"], float).reshape(-1, 4)
        colour = palette[k % len(palette)]
        name = f"{run['label']} ({run.get('n_val') or '?'} val mixtures)"
        fig.add_trace(go.Scatter(x=off + h[:, 0], y=h[:, 3], mode="lines+markers", name=name,
                                 line=dict(color=colour), marker=dict(size=4), legendgroup=run["label"]), 1, 1)
        fig.add_trace(go.Scatter(x=off + h[:, 0], y=h[:, 2], mode="lines", name=run["label"], showlegend=False,
                                 line=dict(color=colour), legendgroup=run["label"]), 1, 2)
        if run.get("best_step") is not None and len(h):
            i = int(np.argmin(np.abs(h[:, 0] - run["best_step"])))
            fig.add_trace(go.Scatter(x=[off + h[i, 0]], y=[h[i, 3]], mode="markers", showlegend=False,
                                     marker=dict(symbol="star", size=13, color=colour, line=dict(color="black", width=1)),
                                     legendgroup=run["label"]), 1, 1)
    fig.update_xaxes(title_text="optimiser step (each run from its predecessor's selected step)")
    fig.update_yaxes(title_text="dB", row=1, col=1)
    fig.update_layout(title=title, width=1100, height=420, template="plotly_white",
                      margin=dict(l=55, r=20, t=70, b=55), legend=dict(orientation="h", y=-0.25))
    return fig


def add_learning_curves(cards_dir, *, png: bool = True):
    """Append the learning curves (a PNG next to the card, a table of the earlier runs) to ``cards_dir/dc_speech.md``."""
    import json
    import os
    from pathlib import Path

    cards_dir = Path(cards_dir)
    card = json.loads((cards_dir / f"{DS.NAME}.json").read_text())
    tr = card.get("training", {})
    label = (tr.get("run_label") or f"v{len(card.get('earlier_runs') or []) + 1}") + " (these weights)"
    runs = list(card.get("earlier_runs") or []) + [run_summary(card, card.get("checkpoint_sha256", ""), label=label)]
    md_path = cards_dir / f"{DS.NAME}.md"
    marker = "\n## Learning curves\n"
    md = md_path.read_text().split(marker)[0].rstrip("\n") + "\n"
    section = [marker.strip("\n"), "", "Validation SI-SDRi (k-means masks, held-out val speakers) and the mean training "
               "loss at each evaluation; a run continued from a shipped checkpoint starts at its predecessor's selected "
               "step (stars: the selected weights).", ""]
    if png and runs[-1]["history"]:
        os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")
        fig = learning_curve_figure(runs, title=f"{DS.NAME}: learning curves of {len(runs)} runs")
        out, tmp = cards_dir / f"{DS.NAME}.curves.png", cards_dir / f".{DS.NAME}.curves.tmp.png"
        fig.write_image(str(tmp), scale=1)
        os.replace(tmp, out)
        section += [f"![learning curves of {DS.NAME}]({out.name})", ""]
    section += ["| run | weights (sha256) | steps | selected step | lr | val mixtures | best val SI-SDRi | test SI-SDRi |",
                "|---|---|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        best = max((h[3] for h in run["history"]), default=float("nan"))
        test = run.get("test_si_sdri")
        section.append(f"| {run['label']} | {(run.get('checkpoint_sha256') or '')[:12]} | {run.get('steps')} | "
                       f"{run.get('best_step')} | {run.get('lr') or ''} | {run.get('n_val') or ''} | {best:.2f} | "
                       f"{'' if test is None else f'{test:.2f}'} |")
    md_path.write_text(md + "\n".join(section) + "\n")
    return md_path


def next_run_label(tried=None) -> str:
    """Label of the next training run: one past the highest ``vN`` that the tried list names.

    Shipped and unshipped runs share one count, so a run shipped after attempts is not named after the
    number of shipped runs before it.

    Examples
    --------
    >>> next_run_label(["v1 (...)", "v2 (...)", "v2 outcome: ...", "v6 (NOT shipped)"])
    'v7'
    >>> next_run_label([])
    'v1'
    """
    import re

    found = [int(m.group(1)) for t in (TRIED if tried is None else tried) for m in [re.match(r"v(\d+)\b", t)] if m]
    return f"v{max(found, default=0) + 1}"


def _init_from(name: str, model) -> str:
    if name == "none":
        return "random initialisation"
    import hashlib

    path = CHECKPOINT_DIR / f"{name}.safetensors"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    state, meta = load_checkpoint(path)
    model.load_state_dict(state, strict=True)
    what = "instrument mixtures" if name == "dc_blstm" else "real two-speaker speech"
    return (f"initialised from the shipped {name} checkpoint (sha256 {sha}; {what}, same grid and architecture); "
            f"input normalisation refitted on the training mixtures")


def _extra_args(p) -> None:
    import argparse

    p.add_argument("--init", default="dc_blstm",
                   help="start from this shipped zoo checkpoint (same architecture) or 'none' (default %(default)s)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="speaker augmentation in dynamic mixing: speed 0.8-1.25, random EQ, time shift (train only)")
    p.add_argument("--flite", action=argparse.BooleanOptionalAction, default=True,
                   help="flite's four voices as extra TRAINING speakers")
    p.add_argument("--prompts", action=argparse.BooleanOptionalAction, default=True,
                   help="the four recorded Asterisk prompt voices (real speakers) as extra TRAINING speakers")
    p.add_argument("--dropout", type=float, default=0.2, help="dropout between BLSTM layers (default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW decoupled weight decay (default %(default)s)")
    p.add_argument("--n-val", type=int, default=N_VAL, help="val mixtures for model selection (default %(default)s)")
    p.add_argument("--eval-every", type=float, default=120.0, help="seconds of training between validations")
    p.add_argument("--run-label", default=None,
                   help="this run's name in the card and its learning curves (default: next_run_label(), one past "
                        "the highest vN in the recipe's tried list)")
    p.add_argument("--average-decay", type=float, default=0.999,
                   help="exponential moving average of the weights, decay per step; validation and model selection "
                        "use the averaged weights; 0 turns it off (default %(default)s)")


def main(argv=None) -> dict:
    args = parse_args(argv, name=DS.NAME, minutes=35.0, batch_size=8, lr=1e-3, segment_seconds=2.0,
                      extra=_extra_args)
    args.dataset = "speakers"
    rng = seed_everything(args.seed)
    limit_threads(args.threads)
    paths = zoo_paths(DS.NAME, args.out_dir)
    sec = 2.0 if args.smoke else 4.0
    train, prov = load_separation_set("speakers", "train", n=8 if args.smoke else 200, synthetic=args.smoke, seconds=sec)
    val, _ = load_separation_set("speakers", "val", n=2 if args.smoke else args.n_val, synthetic=args.smoke,
                                 seconds=sec)
    test, _ = load_separation_set("speakers", "test", n=2 if args.smoke else args.n_test, synthetic=args.smoke,
                                  seconds=sec)
    config = dict(DS.DEFAULT_CONFIG)
    config["dropout"] = float(args.dropout)
    earlier: list[dict] = []
    init = "random initialisation"
    if args.smoke:
        config.update(hidden=16, layers=1)
    if args.card_only:
        model, config = restore_trained(DS.NAME, DS.build, paths)
        info = previous_training(DS.NAME, paths.cards)
        init = info["training_block"].get("init", init)
    else:
        model = DS.build(config)
        if not args.smoke:
            if args.init == DS.NAME:  # read before anything is written: a run without --out-dir replaces both
                import hashlib

                init_sha = hashlib.sha256((CHECKPOINT_DIR / f"{DS.NAME}.safetensors").read_bytes()).hexdigest()
                earlier = earlier_runs_for(init_sha)
            init = _init_from(args.init, model)
        fit_input_normalisation(model, train)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        seg = int(args.segment_seconds * M.GRID.sample_rate)
        if args.smoke:
            from model_zoo.recipes._common import MixtureSampler

            sampler = MixtureSampler(train, seg, rng)
        else:
            from model_zoo.data.speakers import StreamSampler

            sampler = StreamSampler(seg, rng, split="train", augment=args.augment, flite=args.flite,
                                    prompts=args.prompts)
        info = train_loop(name=DS.NAME, model=model, optimizer=opt, step_fn=dc_step, sampler=sampler, args=args,
                          val_fn=lambda m: val_score(lambda y: M.separate(m, y), val), train_root=paths.train_root,
                          eval_every_s=5.0 if args.smoke else args.eval_every,
                          average_decay=args.average_decay or None)
    if args.no_eval:
        return {"train": info}
    t0 = time.perf_counter()
    acc = mask_accuracy_items(model, test)
    acc_mean = float(np.nanmean(acc))
    print(f"[{DS.NAME}] k-means mask accuracy {acc_mean:.3f} on {len(test)} test mixtures "
          f"({time.perf_counter() - t0:.0f} s)")
    sub_acc = float(np.nanmean(acc[:8]))

    def floors(rows):
        f = dc_floor(rows)
        return {"si_sdri": f, "mask_accuracy": {"rule": f"k-means mask accuracy >= {MASK_ACC_FLOOR}",
                                                "required": MASK_ACC_FLOOR, "achieved": round(acc_mean, 4),
                                                "met": bool(acc_mean >= MASK_ACC_FLOOR)},
                "met": bool(f["met"] and acc_mean >= MASK_ACC_FLOOR)}

    card = publish(
        name=DS.NAME, model=model, config=config, systems={"dc_kmeans": lambda y: M.separate(model, y)},
        test_items=test, prov=prov, args=args, train_info=info, primary="dc_kmeans", floor_fn=floors, paths=paths,
        extra_metrics={"mask_accuracy": {"dc_kmeans": round(acc_mean, 4), "std": round(float(np.nanstd(acc)), 4),
                                         "n_items": len(acc),
                                         "definition": "share of non-silent T-F bins (within 40 dB of the mixture's "
                                                       "loudest) whose k-means cluster agrees with the IBM label "
                                                       "(louder source), under the better cluster-source permutation; "
                                                       "mean over test mixtures"}},
        extra_card={
            "summary": "Deep clustering (Hershey et al. 2016) on two REAL speakers at 8 kHz: dc_blstm's BLSTM → "
                       "unit-norm T-F embeddings; k-means (k=2) on the embeddings of non-silent bins gives binary "
                       "masks. Test speakers are never heard in training.",
            "architecture": [
                "identical to dc_blstm: input log(|STFT| + 1e-6), 8 kHz, n_fft 256, hop 64 (129 bins), per-frequency "
                "mean/std normalisation fitted on training mixtures (buffers in_mean/in_std)",
                f"blstm: {config['layers']} bidirectional LSTM layers, {config['hidden']} units per direction",
                f"embed: Linear(2*{config['hidden']} → 129*{config['emb_dim']}), tanh, unit norm over D="
                f"{config['emb_dim']}; output (batch, D, F, T)",
                "loss: low-rank deep-clustering loss over bins within 40 dB of the mixture's peak",
                "separation: scikit-learn KMeans (k=2, n_init=4, random_state=0) on non-silent bins, binary masks, "
                "inverse STFT with the mixture phase",
            ],
            "notes": ["Metrics are permutation-invariant; improvements are over the unprocessed mixture. Oracle rows "
                      "apply ideal masks on the same grid and test mixtures.",
                      "The speech is letters and syllables strung into streams with short gaps (not running "
                      "sentences): more single-speaker stretches than conversational overlap."],
        })
    if args.smoke:
        return card
    try:
        from model_zoo.data.speakers import provenance

        spk_prov = provenance()
    except Exception as exc:  # pragma: no cover - smoke/synthetic
        spk_prov = {"error": str(exc)}
    card["data"].update({
        "train": f"dynamic mixing: fresh {args.segment_seconds:g} s segments of two training speakers of different "
                 "languages every step (model_zoo.data.speakers.StreamSampler"
                 + (", speaker augmentation" if getattr(args, "augment", False) else "")
                 + (", flite voices as extra training speakers" if getattr(args, "flite", False) else "")
                 + (", the four Asterisk prompt voices as extra real training speakers"
                    if getattr(args, "prompts", False) else "")
                 + "); the first 200 built train mixtures fit the input normalisation",
        "val": f"first {len(val)} val mixtures (val speakers; model selection only)",
        "test": f"first {len(test)} test mixtures; test speakers (languages {', '.join(spk_prov.get('languages', {}).get('test', []))}) "
                "never heard in training or validation",
        "speakers": spk_prov.get("speakers"), "languages": spk_prov.get("languages"),
        "packages": spk_prov.get("packages"),
        "extra_training_speakers": spk_prov.get("extra_training_speakers"),
        "licences": ["klettres-data (GPL-2+): letters/syllables of real speakers",
                     "asterisk-core-sounds-en-wav (CC-BY-SA-3.0, Allison Smith): train only",
                     ] + (["flite + libflite1 (CMU permissive): synthetic voices kal16/awb/rms/slt, extra training "
                           "speakers only"] if getattr(args, "flite", False) else [])
                    + (["asterisk-core-sounds-fr-wav (CC-BY-SA-3.0, June Wallack), asterisk-core-sounds-it-wav "
                        "(CC-BY-3.0, Carlo Flora), asterisk-core-sounds-ru-wav (CC-BY-3.0, ivrvoice.ru), "
                        "asterisk-prompt-it-menardi-wav (CC-BY-SA-3.0, Paola Dal Zot and Marco Menardi, "
                        "http://www.voip.ammdomus.it): extra real training speakers only"]
                       if getattr(args, "prompts", False) else []),
        "built_from": "Debian packages at build time (python -m model_zoo.data); no recordings are committed",
    })
    if "training_block" not in info:
        card["training"]["init"] = init
        card["training"]["data_sampling"] = (
            "StreamSampler dynamic mixing, ±5 dB relative gain, −10…+6 dB overall gain"
            + ("; speaker augmentation per source: speed factor 0.8–1.25 log-uniform (band-limited resampling), "
               "random smooth EQ ±6 dB at 6 frequencies, random time shift up to 0.5 s" if args.augment else "")
            + ("; extra training speakers: flite kal16, awb, rms, slt (60 training sentences each)"
               if args.flite else "")
            + ("; extra real training speakers: the Asterisk prompt voices June (fr-CA), Carlo (it), IvrvoiceRU (ru), "
               "Menardi (it), running speech cut at pauses into phrases (about 19 min each)" if args.prompts else ""))
        card["training"].update(optimizer="AdamW", weight_decay=args.weight_decay, dropout=args.dropout,
                                n_val=len(val), run_label=args.run_label or next_run_label())
        if args.average_decay:
            card["training"]["weight_average"] = (
                f"exponential moving average of the weights, decay {args.average_decay:g} per step "
                "(model_zoo.recipes._common.WeightAverage); validation and model selection score the averaged weights, "
                "which are the shipped ones")
    card["tried"] = TRIED
    card["subset_metrics"]["mask_accuracy"] = round(sub_acc, 4)
    test_rows = card["metrics"]["test"]
    card["oracle"] = {"note": "ideal masks on the same test mixtures and grid (the ceiling of a binary-mask separator)",
                      "ibm": test_rows["oracle_ibm"], "irm": test_rows["oracle_irm"], "n_items": test_rows["n_items"]}
    card["params"] = count_params(model)
    import hashlib
    from pathlib import Path

    card["checkpoint_sha256"] = hashlib.sha256(Path(paths.checkpoint).read_bytes()).hexdigest()
    if earlier:
        card["earlier_runs"] = earlier
    write_card(DS.NAME, card, out_dir=paths.cards)
    try:
        add_learning_curves(paths.cards)
    except Exception as exc:  # a figure that fails costs only the figure
        print(f"[{DS.NAME}] learning curves not drawn: {exc}")
    return card


if __name__ == "__main__":
    main()
