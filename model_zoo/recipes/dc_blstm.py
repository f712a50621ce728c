"""Recipe: train the deep-clustering BLSTM (``model_zoo.dc_blstm``) on two-instrument mixtures.

Run ``python -m model_zoo.recipes.dc_blstm [--minutes 12] [--resume]``; ``--smoke`` runs two
steps on a tiny synthetic set and writes into a temporary folder (for tests).

Training: random 1 s segments of the train split with dynamic mixing (sources re-paired
across items with ±5 dB gains half the time), Adam with warm-up + cosine decay over the
time budget, gradient clipping, low-rank DC loss with silent bins (< −40 dB) weighted out.
Model selection on the VAL split only (k-means SI-SDRi on 12 val mixtures); the test
split is touched once, at the end, for the card.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from model_zoo import dc_blstm as M
from model_zoo.metrics import evaluate_separator, si_sdr
from model_zoo.recipes._common import (MixtureSampler, count_params, device_description, limit_threads,
                                       load_separation_set, parse_args, previous_training, restore_trained,
                                       save_checkpoint, seed_everything, software_versions, train_loop, write_card,
                                       zoo_paths)

__all__ = ["main", "fit_input_normalisation", "val_score", "publish"]

SUBSET_N = 8  # first test items re-evaluated by the honesty test
SEGMENT_SECONDS = 1.0


def fit_input_normalisation(model, items, *, n: int = 200) -> None:
    """Per-frequency mean/std of the log-magnitude of (up to ``n``) training mixtures."""
    mixes = torch.as_tensor(np.stack([it["mixture"] for it in items[:n]]))
    model.fit_normalisation(torch.log(M.GRID.stft(mixes).abs() + M.EPS))


def val_score(separate_fn, items) -> float:
    """Mean SI-SDRi over ``items`` (cheap: no SDR), the model-selection criterion."""
    out = []
    for it in items:
        est = separate_fn(it["mixture"])
        ref = np.asarray(it["sources"])
        mix = np.repeat(np.asarray(it["mixture"])[None], ref.shape[0], 0)
        out.append(float((si_sdr(est, ref) - si_sdr(mix, ref)).mean()))
    return float(np.mean(out))


def dc_step(model, mix, src):
    X = M.GRID.stft(mix)
    mag = X.abs()
    S = M.GRID.stft(src).abs()
    V = model(torch.log(mag + M.EPS))
    V = V["tf_embeddings"] if isinstance(V, dict) else V
    return M.dc_loss(V, M.dc_targets(S), M.silence_weights(mag))


def _round(d: dict, nd: int = 3) -> dict:
    return {k: (round(v, nd) if isinstance(v, float) else v) for k, v in d.items()}


def publish(*, name: str, model, config: dict, systems: dict, test_items: list, prov: dict, args, train_info: dict,
            extra_card: dict, primary: str, floor_fn=None, paths=None, extra_metrics: dict | None = None,
            log=print) -> dict:
    """Evaluate on the test split (with oracle masks), write checkpoint + card; return the card.

    ``systems`` maps row names to ``separate(mixture) -> (2, N)`` callables; ``primary``
    names the row the floor applies to; ``floor_fn(metrics) -> dict`` states the floors.
    """
    t0 = time.perf_counter()
    res = evaluate_separator(systems, test_items, M.GRID, progress=not args.smoke, desc=f"{name} test")
    log(f"[{name}] test evaluation on {res['n_items']} mixtures in {time.perf_counter() - t0:.0f} s")
    rows = {k: _round({m: res[k][m] for m in ("si_sdri", "sdri", "si_sdr", "sdr", "si_sdri_std")})
            for k in list(systems) + ["oracle_ibm", "oracle_irm"]}
    sub = test_items[:SUBSET_N]
    subset = {k: _round({m: float(np.mean([r[k][m] for r in res["per_item"][:len(sub)]])) for m in ("si_sdri", "sdri")})
              for k in systems}
    ckpt = save_checkpoint(model, paths.checkpoint, name=name, config=config,
                           extra={"dataset": prov.get("dataset"), "grid": M.GRID.to_dict()})
    card = {
        "task": "separation",
        "params": count_params(model),
        "checkpoint": f"checkpoints/{ckpt.name}",
        "checkpoint_bytes": ckpt.stat().st_size,
        "input_kind": extra_card.pop("input_kind", "logmag"),
        "output_kind": extra_card.pop("output_kind", "tf_embeddings"),
        "grid": M.GRID.to_dict(),
        **extra_card,
        "config": config,
        "data": {"name": prov.get("dataset"), "synthetic": prov.get("synthetic"),
                 "train": "train split (all items), random segments with dynamic mixing",
                 "val": "val split (model selection only)",
                 "test": f"test split, first {len(test_items)} mixtures (held-out presets/seeds)",
                 "sr": M.GRID.sample_rate, "mixture_seconds": 4.0,
                 "licences": prov.get("licences", "see model_zoo.data manifest")},
        "training": {"seed": args.seed, "steps": train_info["steps"], "train_seconds": train_info["train_seconds"],
                     "minutes_budget": args.minutes, "batch_size": args.batch_size,
                     "segment_seconds": args.segment_seconds, "optimizer": "Adam", "lr": args.lr,
                     "lr_schedule": "2% warm-up, cosine decay to 5% over the budget", "grad_clip": 5.0,
                     "selection": f"best val score (val SI-SDRi), step {train_info['best_step']}",
                     "best_val_si_sdri": round(train_info["best_val"], 3), "device": device_description(),
                     "software": software_versions(), "recipe": f"python -m model_zoo.recipes.{name}"},
        "metrics": {"test": {**rows, "mixture": _round(res["mixture"]), "n_items": res["n_items"]}},
        "subset_metrics": {"n_items": len(sub), "split": "test", "first_index": 0, "systems": subset},
        "val_history": train_info["history"],
    }
    if "training_block" in train_info:  # --card-only: keep the facts of the run that made the checkpoint
        card["training"] = {**train_info["training_block"], "card_rewritten": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                            time.gmtime())}
    if extra_metrics:
        card["metrics"].update(extra_metrics)
    card["zoo_params"] = zoo_param_counts()
    if floor_fn is not None:
        card["floors"] = floor_fn(rows)
    card.setdefault("notes", [])
    if prov.get("synthetic"):
        card["notes"].append("Trained and evaluated on the synthetic stand-in set, not the zoo data.")
    write_card(name, card, out_dir=paths.cards)
    log(f"[{name}] wrote {ckpt} and card; test rows: " + "; ".join(
        f"{k}: SI-SDRi {v['si_sdri']:.2f} SDRi {v['sdri']:.2f}" for k, v in rows.items()))
    return card


def zoo_param_counts() -> dict:
    """Parameters of the zoo's spectrogram-domain separators at their default configs (for the cards)."""
    from model_zoo import chimera, unfolded_nmf
    from model_zoo.baselines import DEFAULT_BASELINE

    out = {m.NAME: count_params(m.build()) for m in (M, chimera)}
    out[unfolded_nmf.NAME] = count_params(unfolded_nmf.build({"atoms_per_source": DEFAULT_BASELINE["n_components"]}))
    out["nmf_baseline (dictionary W)"] = 129 * 2 * DEFAULT_BASELINE["n_components"]
    return out


def dc_floor(rows: dict, key: str = "dc_kmeans", frac: float = 0.60) -> dict:
    ibm = rows["oracle_ibm"]["si_sdri"]
    got = rows[key]["si_sdri"]
    return {"rule": f"{key} test SI-SDRi >= {frac:.0%} of oracle IBM SI-SDRi", "oracle_ibm_si_sdri": ibm,
            "required": round(frac * ibm, 3), "achieved": got, "fraction_of_ibm": round(got / ibm, 3) if ibm else None,
            "met": bool(got >= frac * ibm)}


def attached_metrics(folders, name: str) -> dict:
    """Test metrics of the same recipe run elsewhere (e.g. ``--dataset speech --out-dir D``), for the card.

    Each folder's ``cards/NAME.json`` adds a block ``"<dataset>_test (separate run, not shipped)"``.
    """
    out = {}
    for folder in folders or []:
        path = Path(folder) / "cards" / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"--attach {folder}: no card at {path}")
        other = json.loads(path.read_text())
        tr = other.get("training", {})
        block = dict(other["metrics"]["test"])
        block["note"] = (f"separate model trained by this recipe with --dataset {other['data']['name']} "
                         f"({tr.get('steps')} steps, {tr.get('train_seconds')} s); weights not shipped")
        out[f"{other['data']['name']}_test (separate run, not shipped)"] = block
    return out


def main(argv=None) -> dict:
    args = parse_args(argv, name=M.NAME, minutes=12.0, batch_size=12, lr=1e-3, segment_seconds=SEGMENT_SECONDS,
                      extra=lambda p: p.add_argument("--attach", action="append", default=[],
                                                     help="out-dir of another run of this recipe whose test metrics "
                                                          "go into this card (e.g. a speech run)"))
    rng = seed_everything(args.seed)
    limit_threads(args.threads)
    paths = zoo_paths(M.NAME, args.out_dir)
    sec = 2.0 if args.smoke else 4.0
    train, prov = load_separation_set(args.dataset, "train", n=8 if args.smoke else None, synthetic=args.smoke, seconds=sec)
    val, _ = load_separation_set(args.dataset, "val", n=2 if args.smoke else 12, synthetic=args.smoke, seconds=sec)
    test, _ = load_separation_set(args.dataset, "test", n=2 if args.smoke else args.n_test, synthetic=args.smoke,
                                  seconds=sec)
    config = dict(M.DEFAULT_CONFIG)
    if args.smoke:
        config.update(hidden=16, layers=1)
    if args.card_only:
        model, config = restore_trained(M.NAME, M.build, paths)
        info = previous_training(M.NAME, paths.cards)
    else:
        model = M.build(config)
        fit_input_normalisation(model, train)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        sampler = MixtureSampler(train, int(args.segment_seconds * M.GRID.sample_rate), rng)
        info = train_loop(name=M.NAME, model=model, optimizer=opt, step_fn=dc_step, sampler=sampler, args=args,
                          val_fn=lambda m: val_score(lambda y: M.separate(m, y), val), train_root=paths.train_root,
                          eval_every_s=5.0 if args.smoke else 75.0)
    if args.no_eval:
        return {"train": info}
    card = publish(
        extra_metrics=attached_metrics(args.attach, M.NAME),
        name=M.NAME, model=model, config=config, systems={"dc_kmeans": lambda y: M.separate(model, y)},
        test_items=test, prov=prov, args=args, train_info=info, primary="dc_kmeans", floor_fn=dc_floor, paths=paths,
        extra_card={
            "summary": "Deep clustering (Hershey et al. 2016): BLSTM → unit-norm T-F embeddings; k-means (k=2) on the "
                       "embeddings of non-silent bins gives binary masks. Trained on low- vs high-register instrument "
                       "mixtures at 8 kHz.",
            "architecture": [
                "input: log(|STFT| + 1e-6), 8 kHz, n_fft 256, hop 64 (129 bins), per-frequency mean/std normalisation "
                "fitted on training mixtures (buffers in_mean/in_std)",
                f"blstm: {config['layers']} bidirectional LSTM layers, {config['hidden']} units per direction",
                f"embed: Linear(2*{config['hidden']} → 129*{config['emb_dim']}), tanh, unit norm over D="
                f"{config['emb_dim']}; output (batch, D, F, T)",
                "loss: low-rank deep-clustering loss ‖VᵀV‖² − 2‖VᵀY‖² + ‖YᵀY‖² over bins within 40 dB of the "
                "mixture's peak, normalised by the squared number of bins",
                "separation: scikit-learn KMeans (k=2, n_init=4, random_state=0) on non-silent bins, all bins "
                "assigned to the nearest centroid, binary masks, inverse STFT with the mixture phase",
            ],
            "notes": ["Metrics are permutation-invariant (best assignment of outputs to references); improvements "
                      "are over the unprocessed mixture. Oracle rows apply ideal masks on the same grid and mixtures."],
        })
    return card


if __name__ == "__main__":
    main()
