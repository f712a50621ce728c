"""Train Conv-TasNet-lite on two-source mixtures with a permutation-invariant SI-SDR loss.

Usage::

    python -m model_zoo.recipes.convtasnet_lite [--minutes 12] [--dataset speech] [--resume] [--smoke]

The training loop here (:func:`train_separator`) is shared with the NMF autoencoder's recipe:
random crops of the training mixtures with dynamic remixing (sources of two different
training mixtures are summed at random gains, so every step sees a new mixture), Adam,
gradient clipping, a learning rate that decays over the last part of the time budget,
model selection on the validation split's SI-SDRi, evaluation on the full test split with
oracle IBM/IRM on the same mixtures, then a safetensors checkpoint and a model card.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from model_zoo.recipes.cards import data_manifest, provenance

NAME = "convtasnet_lite"
SUBSET_ITEMS = 8

__all__ = ["main", "train_separator", "synthetic_separation_set", "load_separation_data", "subset_metrics",
           "find_floor_card"]


# ---- data --------------------------------------------------------------------------------
def synthetic_separation_set(n: int, *, seed: int, sr: int = 8000, seconds: float = 1.0) -> list[dict]:
    """Stand-in mixtures: a low harmonic tone + a high harmonic tone with random envelopes.

    Same item layout as :func:`model_zoo.data.separation_set`; used by ``--smoke`` and when
    the real data builders are missing.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    items = []
    for i in range(n):
        srcs = []
        for lo, hi in ((60.0, 200.0), (400.0, 1000.0)):
            f0 = rng.uniform(lo, hi)
            s = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6) if f0 * k < sr / 2)
            env = np.clip(np.sin(2 * np.pi * rng.uniform(0.5, 3) * t + rng.uniform(0, 6)), 0, None)
            srcs.append((0.1 * s * env).astype(np.float32))
        srcs = np.stack(srcs)
        items.append({"mixture": srcs.sum(0), "sources": srcs, "sr": sr, "source_names": ["low", "high"],
                      "meta": {"synthetic": True, "index": i}})
    return items


def load_separation_data(dataset: str, *, smoke: bool, n_test: int | None = None):
    """``(train, val, test, provenance)``: the real separation set, or a tiny synthetic one for smoke runs."""
    if smoke:
        return (synthetic_separation_set(6, seed=1), synthetic_separation_set(2, seed=2),
                synthetic_separation_set(2, seed=3), {"dataset": "synthetic tones (smoke run)", "licences": {}})
    from model_zoo.data import separation_set

    train = separation_set(dataset, "train")
    val = separation_set(dataset, "val")
    test = separation_set(dataset, "test", n=n_test)
    prov = {"dataset": dataset, "sizes": {"train": len(train), "val": len(val), "test": len(test)},
            "seconds_per_item": round(len(test[0]["mixture"]) / test[0]["sr"], 3), "sr": int(test[0]["sr"])}
    prov.update(provenance(train, val, test))
    prov.update(data_manifest(dataset))
    return train, val, test, prov


def breakdown(values, items, *, key: str = "si_sdri") -> dict:
    """Percentiles of a per-item score and its mean per instrument program (or per voice for speech).

    Parameters
    ----------
    values : sequence of float  one score per test item
    items : list of dict        the test items (their ``meta`` names the programs / voices)
    """
    v = np.asarray(values, dtype=np.float64)
    out = {f"{key}_percentiles": {f"p{q}": round(float(np.percentile(v, q)), 2) for q in (10, 25, 50, 75, 90)}}
    groups: dict = {}
    for val, it in zip(v, items):
        meta = it.get("meta", {}) or {}
        names = meta.get("preset_names") or it.get("source_names") or []
        for name in names:
            groups.setdefault(str(name), []).append(val)
    if groups:
        label = "by_program" if "preset_names" in (items[0].get("meta", {}) or {}) else "by_source_name"
        out[f"{key}_{label}"] = {k: round(float(np.mean(g)), 2) for k, g in
                                 sorted(groups.items(), key=lambda kv: np.mean(kv[1]))}
    return out


def _batch(items: list[dict], rng: np.random.Generator, batch_size: int, seg: int, remix_prob: float = 0.5):
    """Random crops ``(mixture (b, 1, seg), sources (b, S, seg))``; with ``remix_prob`` each source of an
    example comes from a different training item (dynamic mixing) at a random gain of ±3 dB."""
    S = items[0]["sources"].shape[0]
    srcs = np.zeros((batch_size, S, seg), np.float32)
    for b in range(batch_size):
        remix = rng.random() < remix_prob
        base = int(rng.integers(len(items)))
        for s in range(S):
            item = items[int(rng.integers(len(items)))] if remix else items[base]
            x = item["sources"][s]
            n = x.shape[-1]
            if n > seg:
                st = int(rng.integers(n - seg + 1))
                x = x[st: st + seg]
            srcs[b, s, : len(x)] = x
            if remix:
                srcs[b, s] *= 10 ** (rng.uniform(-3, 3) / 20)
    # drop silent crops' influence: a source with no energy gives an undefined SI-SDR; nudge with tiny noise
    quiet = (np.abs(srcs).max(-1) < 1e-5)
    if quiet.any():
        srcs[quiet] += 1e-4 * rng.standard_normal((int(quiet.sum()), seg)).astype(np.float32)
    return srcs.sum(1, keepdims=True), srcs


def val_si_sdri(model, items: list[dict]) -> float:
    """Mean PIT SI-SDR improvement (dB, torch implementation) on full validation mixtures."""
    import torch

    from model_zoo.convtasnet_lite import pit_si_sdr_loss, si_sdr

    was = model.training
    model.eval()
    vals = []
    with torch.no_grad():
        for it in items:
            mix = torch.as_tensor(np.asarray(it["mixture"], np.float32))[None, None]
            ref = torch.as_tensor(np.asarray(it["sources"], np.float32))[None]
            est = model(mix)
            _, best = pit_si_sdr_loss(est, ref)
            base = si_sdr(mix.expand_as(ref), ref).mean(-1)
            vals.append(float((best - base).item()))
    model.train(was)
    return float(np.mean(vals))


def subset_metrics(separate_fn: Callable, items: list[dict], grid) -> dict:
    """Mean separation scores of the model on the first :data:`SUBSET_ITEMS` items (the honesty test re-checks them)."""
    from model_zoo.metrics import evaluate_separator

    res = evaluate_separator(separate_fn, items[:SUBSET_ITEMS], grid, oracles=())
    return {"n_items": res["n_items"], **{k: res["model"][k] for k in ("si_sdr", "si_sdri", "sdr", "sdri")}}


def find_floor_card(name: str = "dc_blstm", task_words=("deep clustering", "dpcl"), exclude=()) -> dict | None:
    """The deep-clustering model's card: ``cards/<name>.json``, else a card whose name/summary names the method."""
    from model_zoo.recipes._common import CARD_DIR

    exact = Path(CARD_DIR) / f"{name}.json"
    candidates = [exact] if exact.is_file() else sorted(Path(CARD_DIR).glob("*.json"))
    for p in candidates:
        if p.stem in exclude:
            continue
        try:
            card = json.loads(p.read_text())
        except Exception:
            continue
        hay = (p.stem + " " + str(card.get("summary", ""))).lower()
        if p == exact or (any(w in hay for w in task_words) and "chimera" not in hay):
            card["_path"] = str(p)
            return card
    return None


def _metric_row(card: dict, key: str = "si_sdri"):
    """The model's own test score in someone else's card: the first test row that is not an oracle or the mixture."""
    test = (card.get("metrics", {}) or {}).get("test", {})
    if isinstance(test, dict):
        for name, row in test.items():
            if isinstance(row, dict) and not name.startswith("oracle") and name != "mixture" \
                    and isinstance(row.get(key), (int, float)):
                return float(row[key])
    return None


def _card_dataset(card: dict):
    cfg, data = card.get("config", {}) or {}, card.get("data", {}) or {}
    return cfg.get("dataset") or (data.get("dataset") or data.get("name") if isinstance(data, dict) else None)


def _oracle_ibm(card: dict):
    row = ((card.get("metrics", {}) or {}).get("test", {}) or {}).get("oracle_ibm", {})
    return row.get("si_sdri") if isinstance(row, dict) else None


# ---- training loop --------------------------------------------------------------------------
class CPUTimer:
    """Training budget in CPU seconds of this process (same interface as ``_common.Timer``).

    On an idle core CPU time equals wall time, so ``--minutes 11`` is 11 minutes there; on a
    machine shared with other jobs the run takes longer in wall time but gets the same amount
    of compute, so the checkpoint does not depend on how busy the machine was.
    """

    def __init__(self, minutes: float | None, *, already: float = 0.0):
        self.budget = None if minutes is None else float(minutes) * 60.0
        self.t0 = time.process_time() - float(already)

    def elapsed(self) -> float:
        return time.process_time() - self.t0

    def left(self) -> float:
        return float("inf") if self.budget is None else self.budget - self.elapsed()

    def expired(self) -> bool:
        return self.left() <= 0


def train_separator(module, argv=None, *, minutes: float = 12.0, batch_size: int = 8, lr: float = 1e-3,
                    segment_seconds: float = 1.0, eval_every_s: float = 75.0, smoke_config: dict | None = None,
                    architecture: Callable | None = None, extra_systems=None,
                    card_extra: Callable | None = None) -> dict:
    """Train, select on validation, evaluate on test and publish one zoo separator.

    Parameters
    ----------
    module : module
        A zoo model module (``NAME``, ``DEFAULT_CONFIG``, ``build``, ``make_spec``, ``separate``).
    argv : list of str, optional
        Command line (see :func:`model_zoo.recipes._common.make_parser`).
    smoke_config : dict, optional
        Config overrides that make ``--smoke`` runs tiny.
    architecture : callable ``(config) -> list of str``, optional
        Readable description of the layers for the card.
    extra_systems : callable ``(test_items, smoke) -> (dict of metric rows, dict of notes)``, optional
        Baselines scored on the same test items (the NMF baseline for ``nmf_ae``).
    card_extra : callable ``(card) -> None``, optional
        Last edits to the card (floors, notes) before it is written.

    Returns
    -------
    dict
        The card.
    """
    import torch
    from tqdm import tqdm

    from model_zoo.convtasnet_lite import pit_si_sdr_loss
    from model_zoo.metrics import evaluate_separator
    from model_zoo.recipes._common import (TrainState, count_params, device_description, parse_args,
                                           save_checkpoint, seed_everything, software_versions, write_card, zoo_paths)

    name = module.NAME
    args = parse_args(argv, name=name, minutes=minutes, batch_size=batch_size, lr=lr, segment_seconds=segment_seconds,
                      dataset=module.DEFAULT_CONFIG["dataset"])
    rng = seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    paths = zoo_paths(name, args.out_dir)
    config = {**module.DEFAULT_CONFIG, "dataset": args.dataset}
    if args.smoke:
        config.update(smoke_config or {})
    train, val, test, prov = load_separation_data(args.dataset, smoke=args.smoke, n_test=args.n_test)
    sr = int(train[0]["sr"])
    seg = min(int(args.segment_seconds * sr), len(train[0]["mixture"]))
    model = module.build(config)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    state = TrainState(name, model, opt, root=paths.train_root)
    best_path = state.dir / "best.safetensors"
    scal = state.restore() if args.resume else {}
    if args.resume and scal:
        rng.bit_generator.state = scal["rng"]
        print(f"[{name}] resumed at step {scal['step']} ({scal['elapsed']:.0f} s, best val {scal['best']:.2f} dB)")
    step, best, best_step = int(scal.get("step", 0)), float(scal.get("best", -1e9)), int(scal.get("best_step", 0))
    history = list(scal.get("history", []))
    timer = CPUTimer(args.minutes, already=float(scal.get("elapsed", 0.0)))
    wall_before = float(scal.get("wall_seconds", 0.0))
    best_state = None
    if args.resume and best_path.is_file():
        from model_zoo.recipes._common import load_checkpoint

        best_state = load_checkpoint(best_path)[0]
    model.train()
    t_start = time.perf_counter()
    last_eval = timer.elapsed()
    max_steps = args.steps if args.steps is not None else 10**9
    bar = tqdm(total=None if args.steps is None else max_steps, initial=step, desc=name, mininterval=5.0)
    run_loss = []

    def evaluate_and_save(final: bool = False):
        nonlocal best, best_step, best_state, last_eval
        v = val_si_sdri(model, val)
        history.append({"step": step, "cpu_seconds": round(timer.elapsed(), 1),
                        "wall_seconds": round(wall_before + time.perf_counter() - t_start, 1), "val_si_sdri": round(v, 3),
                        "train_loss": round(float(np.mean(run_loss)) if run_loss else float("nan"), 3)})
        run_loss.clear()
        if v > best:
            best, best_step = v, step
            best_state = copy.deepcopy(model.state_dict())
            save_checkpoint(best_state, best_path, name=name, config=config)
        state.save(step=step, best=best, best_step=best_step, elapsed=timer.elapsed(), history=history,
                   rng=rng.bit_generator.state, wall_seconds=wall_before + time.perf_counter() - t_start)
        bar.write(f"[{name}] step {step} {timer.elapsed():.0f}s val SI-SDRi {v:.2f} dB (best {best:.2f} @ {best_step})")
        last_eval = timer.elapsed()

    while step < max_steps and not timer.expired():
        frac = timer.elapsed() / timer.budget if timer.budget else 0.0
        for g in opt.param_groups:  # constant, then linear decay to 10 % over the last 40 % of the budget
            g["lr"] = args.lr * (1.0 if frac < 0.6 else max(0.1, 1.0 - (frac - 0.6) / 0.4 * 0.9))
        mix, src = _batch(train, rng, args.batch_size, seg)
        est = model(torch.from_numpy(mix))
        loss, _ = pit_si_sdr_loss(est, torch.from_numpy(src))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        run_loss.append(float(loss.item()))
        bar.update(1)
        if timer.elapsed() - last_eval > eval_every_s:
            evaluate_and_save()
    evaluate_and_save(final=True)
    bar.close()
    train_seconds = timer.elapsed()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    ckpt = save_checkpoint(model, paths.checkpoint, name=name, config=config,
                           extra={"val_si_sdri": round(best, 3), "best_step": best_step})
    card = {
        "summary": (module.__doc__ or "").strip().splitlines()[0],
        "task": module.TASK, "params": count_params(model), "checkpoint": f"checkpoints/{ckpt.name}",
        "checkpoint_bytes": ckpt.stat().st_size, "input_kind": "waveform", "output_kind": "sources",
        "grid": {"sample_rate": 8000, "n_fft": 256, "hop_length": 64},
        "architecture": architecture(config) if architecture is not None else [],
        "config": config, "data": prov,
        "training": {"steps": step, "best_step": best_step, "train_cpu_seconds": round(train_seconds, 1),
                     "train_wall_seconds": round(wall_before + time.perf_counter() - t_start, 1),
                     "budget_minutes": args.minutes, "budget_clock": "process CPU time (one torch thread); on an idle "
                     "core this equals wall time, on a shared machine the wall time is longer",
                     "device": device_description(), "batch_size": args.batch_size,
                     "segment_seconds": round(seg / sr, 3), "lr": f"{args.lr:g}", "optimizer": "Adam, grad-norm clip 5",
                     "loss": "negative SI-SDR, permutation invariant (PIT)", "augmentation": "random crops; dynamic "
                     "remixing of sources from two training mixtures (p=0.5, ±3 dB)", "seed": args.seed,
                     "selection": "best validation SI-SDRi (full validation mixtures)", "best_val_si_sdri": round(best, 3),
                     "history": history, "software": software_versions()},
    }
    if args.no_eval:
        card["notes"] = ["evaluation skipped (--no-eval)"]
        write_card(name, card, out_dir=paths.cards)
        return card
    spec = module.make_spec(model)
    sep = lambda y: module.separate(model, y)  # noqa: E731
    res = evaluate_separator(sep, test, spec.grid, oracles=("ibm", "irm"), progress=not args.smoke, desc=f"{name} test")
    rows = {"model": res["model"], "oracle_ibm": res["oracle_ibm"], "oracle_irm": res["oracle_irm"],
            "mixture": res["mixture"]}
    notes = []
    if extra_systems is not None:
        more, more_notes = extra_systems(test, args.smoke, args.dataset)
        rows.update(more)
        notes += more_notes
    card["metrics"] = {"test": rows}
    card["test_items"] = res["n_items"]
    card["test_breakdown"] = breakdown([r["model"]["si_sdri"] for r in res["per_item"]], test)
    card["subset_metrics"] = subset_metrics(sep, test, spec.grid)
    card["notes"] = notes
    if card_extra is not None:
        card_extra(card)
    write_card(name, card, out_dir=paths.cards)
    print(json.dumps({"name": name, "test": {k: round(v.get("si_sdri", float("nan")), 2) for k, v in rows.items()
                                             if isinstance(v, dict) and "si_sdri" in v}}, indent=None))
    return card  # the training state stays in _train/ (gitignored): `--resume --minutes M` extends the run


def _floor(card: dict) -> None:
    """Compare with the deep-clustering model's card when it exists (same data set and test split)."""
    dc = find_floor_card(exclude=(NAME,))
    ours = card["metrics"]["test"]["model"]["si_sdri"]
    if dc is None:
        card["floors"] = {"deep_clustering": "no deep-clustering card in model_zoo/cards when this card was written; "
                                             "compare once it exists"}
        return
    theirs, same = _metric_row(dc), _card_dataset(dc)
    # the oracle IBM score on the same mixtures is a fingerprint of the test set: equal → same mixtures
    ibm_ours, ibm_theirs = _oracle_ibm(card), _oracle_ibm(dc)
    same_items = None if ibm_theirs is None or ibm_ours is None else abs(ibm_ours - ibm_theirs) < 0.01
    card["floors"] = {"deep_clustering": {"card": Path(dc["_path"]).name, "their_test_si_sdri": theirs,
                                          "their_dataset": same, "ours_test_si_sdri": round(ours, 3),
                                          "same_test_mixtures": same_items,
                                          "met": None if theirs is None else bool(ours >= theirs)}}
    notes = card.setdefault("notes", [])
    notes[:] = [n for n in notes if not n.startswith(("Floor MISSED", "The deep-clustering card"))]
    if theirs is not None and ours < theirs:
        notes.append(f"Floor MISSED: SI-SDRi {ours:.2f} dB is below the deep-clustering model's {theirs:.2f} dB on the "
                     "same test mixtures.")
    if same is not None and same != card["config"]["dataset"]:
        notes.append(f"The deep-clustering card reports data set {same!r}, this model {card['config']['dataset']!r}: "
                     "the floor comparison is not like for like.")
    if same_items is False:
        notes.append("The deep-clustering card's oracle IBM score differs from ours: the two were scored on "
                     "different builds of the test mixtures.")


def architecture(c: dict) -> list[str]:
    """Card lines describing Conv-TasNet-lite with config ``c``."""
    N, L, S, B, H = c["n_filters"], c["kernel_size"], c["stride"], c["bottleneck"], c["hidden"]
    dil = "/".join(str(2 ** x) for x in range(c["blocks"]))
    rf = 1 + c["repeats"] * sum((c["tcn_kernel"] - 1) * 2 ** x for x in range(c["blocks"]))
    return [
        f"encoder: Conv1d(1→{N}, kernel {L} = {1000 * L / c['sr']:g} ms, stride {S}, no bias) + ReLU: a FREE learned "
        "analysis bank (no STFT anywhere)",
        f"masker: gLN → 1x1 bottleneck {N}→{B} → TCN of {c['repeats']} repeats × {c['blocks']} blocks (1x1 {B}→{H}, "
        f"PReLU, gLN, depthwise k={c['tcn_kernel']} dilation {dil}, PReLU, gLN, 1x1 {H}→{B}, residual) → PReLU → "
        f"1x1 {B}→{c['n_sources']}·{N} → sigmoid masks",
        f"decoder: ConvTranspose1d({N}→1, kernel {L}, stride {S}, no bias) applied to each masked latent: the learned "
        "synthesis bank",
        f"receptive field of the masker: {rf} latent frames = {rf * S / c['sr'] * 1000:.0f} ms",
    ]


def main(argv=None) -> dict:
    """Command-line entry point (``model_zoo/train.py`` calls it)."""
    from model_zoo import convtasnet_lite

    def extra(card):
        if "metrics" in card:
            _floor(card)

    return train_separator(convtasnet_lite, argv, architecture=architecture, card_extra=extra,
                           smoke_config={"n_filters": 16, "hidden": 16, "bottleneck": 8, "blocks": 2, "repeats": 1})


if __name__ == "__main__":
    main()
