"""Train the partitioned autoencoder on noisy clips only, then measure denoising on held-out clips.

Usage::

    python -m model_zoo.recipes.partitioned_ae [--minutes 11] [--resume] [--smoke]

Training reads ONLY ``noisy`` and ``has_signal`` of :func:`model_zoo.data.noisy_set`; clean
signals are never used to train or to select the model. Model selection uses the same
unsupervised objective on the validation clips. The clean stems are used once, at the end,
to score the test split:

* clips with a signal: SNR and SI-SDR of the signal estimate against the clean signal,
  and their improvement over the noisy input (SNRi, SI-SDRi); the same for oracle IBM/IRM
  masks computed from the true clean/noise stems on the STFT grid (an upper reference);
* noise-only clips: how far below the input the signal estimate lies (``noise_only_attenuation_db``;
  ideal: +inf, nothing leaks into the signal partition).

Loss per batch of random crops (``g`` = 1 for clips with a signal, 0 for noise-only clips):

``L = -SNR(y, decoder(a))``                              waveform autoencoder (trains both banks)
``  + mean (log(g·v_sig + v_noise + δ) - log(w + δ))²``   NMF-like latent fit of the learned magnitude w,
                                                          signal partition zero-masked when g=0
``  + λ_noise · mean z_sig[g=0] + λ_all · mean z_sig``     signal partition pushed to zero on noise-only clips
``  + λ_sig · mean z_noise[g=1]``                          mirrored light prior: on clips flagged as holding a
                                                          signal, ambiguous energy leans to the signal partition

The noise bases get gradient only from noise-only clips (on clips with a signal they enter
the fit detached), so they model noise and nothing else.
"""

from __future__ import annotations

import copy
import json
import time

import numpy as np

NAME = "partitioned_ae"
SUBSET_ITEMS = 8
LOSS_WEIGHTS = {"latent": 1.0, "signal_l1_noise_only": 0.01, "signal_l1_all": 0.0, "noise_l1_signal_clips": 0.01,
                "delta": 1e-2}

#: disclosed in the card: how clean validation stems were (and were not) used while the recipe was written
DEVELOPMENT_NOTE = (
    "Development disclosure: while this recipe was written, short runs were checked on 20 validation clips WITH their "
    "clean stems (never on test). Those checks drove three design changes: softplus instead of ReLU codes (the "
    "L1-penalised ReLU signal code died), a ~0.4 s moving average on the noise code (the noise partition otherwise "
    "explained everything), and a 32 ms cosine/sine-initialised bank with pair magnitudes instead of a 4 ms random "
    "bank (whose latent was no usable spectrogram). Checkpoint selection within a run uses no clean signal.")

__all__ = ["main", "synthetic_noisy_set", "pae_losses", "evaluate_denoiser", "subset_metrics", "architecture"]


# ---- data ------------------------------------------------------------------------------------
def synthetic_noisy_set(n: int, *, seed: int, sr: int = 8000, seconds: float = 1.0) -> list[dict]:
    """Stand-in clips (same layout as :func:`model_zoo.data.noisy_set`): harmonic tone bursts in coloured noise,
    every other clip noise only."""
    rng = np.random.default_rng(seed)
    N = int(sr * seconds)
    t = np.arange(N) / sr
    out = []
    for i in range(n):
        noise = np.cumsum(rng.standard_normal(N)) * 0.002
        noise = (noise - noise.mean()).astype(np.float32) + 0.01 * rng.standard_normal(N).astype(np.float32)
        has = i % 2 == 1
        clean = np.zeros(N, np.float32)
        if has:
            f0 = rng.uniform(200, 600)
            env = (np.sin(2 * np.pi * rng.uniform(1, 3) * t) > 0).astype(np.float32)
            clean = (0.05 * env * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3))).astype(np.float32)
        out.append({"noisy": clean + noise, "clean": clean, "noise": noise, "has_signal": has,
                    "snr_db": None, "sr": sr, "meta": {"synthetic": True, "index": i}})
    return out


def _load(smoke: bool, n_test):
    if smoke:
        return (synthetic_noisy_set(6, seed=1), synthetic_noisy_set(2, seed=2), synthetic_noisy_set(4, seed=3),
                {"dataset": "synthetic tones in noise (smoke run)"})
    from model_zoo.data import noisy_set
    from model_zoo.recipes.cards import data_manifest, provenance

    train, val, test = noisy_set("train"), noisy_set("val"), noisy_set("test", n=n_test)
    prov = {"dataset": "noisy", "sizes": {"train": len(train), "val": len(val), "test": len(test)},
            "seconds_per_item": round(len(test[0]["noisy"]) / test[0]["sr"], 3), "sr": int(test[0]["sr"]),
            "fields_used_in_training": ["noisy", "has_signal"],
            "noise_only_fraction": {s: round(float(np.mean([c["has_signal"] is False or not c["has_signal"] for c in d])), 3)
                                    for s, d in (("train", train), ("val", val), ("test", test))}}
    prov.update(provenance(train, val, test))
    prov.update(data_manifest("noisy"))
    return train, val, test, prov


def _batch(items, rng, batch_size: int, seg: int):
    """Random crops of the noisy clips ``(b, 1, seg)`` and their has-signal flags ``(b,)``."""
    x = np.zeros((batch_size, 1, seg), np.float32)
    g = np.zeros(batch_size, np.float32)
    for b in range(batch_size):
        it = items[int(rng.integers(len(items)))]
        y = np.asarray(it["noisy"], np.float32)
        st = int(rng.integers(max(1, len(y) - seg + 1)))
        piece = y[st: st + seg]
        x[b, 0, : len(piece)] = piece * 10 ** (rng.uniform(-6, 6) / 20)
        g[b] = float(bool(it["has_signal"]))
    return x, g


# ---- losses ----------------------------------------------------------------------------------
def pae_losses(model, x, gate, weights: dict = LOSS_WEIGHTS) -> dict:
    """The partitioned-AE objective on a batch of noisy clips.

    Parameters
    ----------
    model : PartitionedAutoencoder
    x : torch.Tensor [shape=(b, 1, n)]  noisy clips
    gate : torch.Tensor [shape=(b,)]     1 for clips with a signal, 0 for noise-only clips

    Returns
    -------
    dict of scalar tensors: ``total`` = ``wave`` + ``partition``; ``partition`` = the weighted latent fit and
    L1 terms (``latent``, ``l1_noise_only``, ``l1_all``, ``noise_l1_signal_clips``)
    """
    import torch

    out = model.analyse(x, signal_gate=gate)
    rec, y = out["reconstruction"][:, 0], x[:, 0]
    snr = 10 * torch.log10(y.pow(2).sum(-1) / ((y - rec).pow(2).sum(-1) + 1e-10) + 1e-10)
    wave = -snr.mean()
    w = out["w"].detach()
    d = weights["delta"] * w.mean((1, 2), keepdim=True)  # floor relative to each clip's mean magnitude
    # the noise bases learn only from noise-only clips: on clips with a signal they enter the fit detached
    v_noise_fixed = torch.einsum("ka,bat->bkt", model.noise_bases.bases.detach(), out["z_noise"])
    v_noise = torch.where((gate > 0.5).view(-1, 1, 1), v_noise_fixed, out["v_noise"])
    model_w = out["v_signal"] + v_noise  # the signal part is already zero on noise-only clips (gated)
    latent = (torch.log(model_w + d) - torch.log(w + d)).pow(2).mean()
    zr = out["z_signal_raw"]
    noise_only = (gate < 0.5).to(zr.dtype)
    per_item = zr.mean((1, 2))
    l1_noise_only = (per_item * noise_only).sum() / noise_only.sum().clamp_min(1.0)
    l1_all = per_item.mean()
    has = 1.0 - noise_only
    noise_l1 = (out["z_noise"].mean((1, 2)) * has).sum() / has.sum().clamp_min(1.0)
    partition = weights["latent"] * latent + weights["signal_l1_noise_only"] * l1_noise_only \
        + weights["signal_l1_all"] * l1_all + weights.get("noise_l1_signal_clips", 0.0) * noise_l1
    return {"total": wave + partition, "partition": partition, "wave": wave, "latent": latent,
            "l1_noise_only": l1_noise_only, "l1_all": l1_all, "noise_l1_signal_clips": noise_l1}


def val_objective(model, items) -> float:
    """Mean partition objective (latent fit + L1 terms) on full validation clips; lower is better.

    No clean signal is used. The waveform-autoencoder term is left out: it keeps improving
    whatever the partition does and would otherwise decide the selection on its own.
    """
    import torch

    was = model.training
    model.eval()
    vals = []
    with torch.no_grad():
        for i in range(0, len(items), 10):
            chunk = items[i: i + 10]
            x = torch.as_tensor(np.stack([np.asarray(c["noisy"], np.float32) for c in chunk]))[:, None]
            g = torch.as_tensor([float(bool(c["has_signal"])) for c in chunk])
            vals.append(float(pae_losses(model, x, g)["partition"]) * len(chunk))
    model.train(was)
    return float(np.sum(vals) / len(items))


# ---- evaluation ------------------------------------------------------------------------------
def _snr(est, ref) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / (np.sum((ref - est).astype(np.float64) ** 2) + 1e-20)))


def _si_sdr(est, ref) -> float:
    from model_zoo.metrics import si_sdr

    return float(si_sdr(est[None], ref[None])[0])


def evaluate_denoiser(denoise_fn, items, *, grid=None, oracles=("ibm", "irm")) -> dict:
    """Score a denoiser on noisy clips with known stems.

    Parameters
    ----------
    denoise_fn : callable ``noisy (n,) -> signal estimate (n,)``
    items : list of dict  (``noisy``, ``clean``, ``noise``, ``has_signal``)
    grid : TFGrid, optional  grid of the oracle masks (default: the zoo's 8 kHz grid)
    oracles : sequence of {"ibm", "irm"}

    Returns
    -------
    dict
        ``model`` / ``oracle_*``: means over clips with a signal of ``snr_in``, ``snr_out``,
        ``snri``, ``si_sdr_in``, ``si_sdr``, ``si_sdri``; ``model["noise_only_attenuation_db"]``:
        mean of ``10 log10(|noisy|² / |estimate|²)`` over noise-only clips; counts; ``per_item``.
    """
    from model_zoo.metrics import oracle_masks
    from probe.grid import TFGrid

    grid = grid or TFGrid(8000, n_fft=256, hop_length=64)
    rows: dict = {"model": []}
    for k in oracles:
        rows[f"oracle_{k}"] = []
    atten, per_item = [], []
    for it in items:
        noisy = np.asarray(it["noisy"], np.float32)
        est = np.asarray(denoise_fn(noisy), np.float32)
        if not bool(it["has_signal"]):
            a = 10 * np.log10(np.sum(noisy.astype(np.float64) ** 2) / (np.sum(est.astype(np.float64) ** 2) + 1e-20))
            atten.append(float(min(a, 100.0)))
            per_item.append({"has_signal": False, "noise_only_attenuation_db": atten[-1]})
            continue
        clean, noise = np.asarray(it["clean"], np.float32), np.asarray(it["noise"], np.float32)
        snr_in, si_in = _snr(noisy, clean), _si_sdr(noisy, clean)
        ests = {"model": est}
        for k in oracles:
            _, o = oracle_masks(noisy, np.stack([clean, noise]), grid, k)
            ests[f"oracle_{k}"] = o[0]
        row = {"has_signal": True}
        for name, e in ests.items():
            snr_out, si_out = _snr(e, clean), _si_sdr(e, clean)
            r = {"snr_in": snr_in, "snr_out": snr_out, "snri": snr_out - snr_in, "si_sdr_in": si_in,
                 "si_sdr": si_out, "si_sdri": si_out - si_in}
            rows[name].append(r)
            row[name] = r
        per_item.append(row)
    out = {}
    for name, rs in rows.items():
        out[name] = {k: float(np.mean([r[k] for r in rs])) for k in (rs[0] if rs else {})}
        out[name]["n_signal_clips"] = len(rs)
    out["model"]["noise_only_attenuation_db"] = float(np.mean(atten)) if atten else float("nan")
    out["model"]["n_noise_only_clips"] = len(atten)
    out["per_item"] = per_item
    return out


def breakdown(per_item, items) -> dict:
    """Mean SNRi / SI-SDRi of the model per signal type and per noise-bed type; attenuation per bed on noise-only clips."""
    groups: dict = {}
    for row, it in zip(per_item, items):
        meta = it.get("meta", {}) or {}
        bed = (((meta.get("noise") or {}).get("bed")) or {}).get("type", "?")
        event = "with event" if (meta.get("noise") or {}).get("event") else "no event"
        if row.get("has_signal"):
            kind = ((meta.get("signal") or {}).get("type")) or "?"
            for g in (f"signal={kind}", f"bed={bed}", event):
                groups.setdefault(g, {"snri": [], "si_sdri": []})
                groups[g]["snri"].append(row["model"]["snri"])
                groups[g]["si_sdri"].append(row["model"]["si_sdri"])
        else:
            groups.setdefault(f"noise-only bed={bed}", {"attenuation_db": []})["attenuation_db"].append(
                row["noise_only_attenuation_db"])
    return {g: {k: round(float(np.mean(v)), 2) for k, v in d.items()} | {"n": len(next(iter(d.values())))}
            for g, d in sorted(groups.items())}


def subset_metrics(model, items) -> dict:
    """Model scores on the first :data:`SUBSET_ITEMS` test clips (the honesty test recomputes them)."""
    from model_zoo.partitioned_ae import denoise

    res = evaluate_denoiser(lambda y: denoise(model, y), items[:SUBSET_ITEMS], oracles=())
    keep = ("snri", "si_sdri", "snr_out", "si_sdr", "noise_only_attenuation_db", "n_signal_clips", "n_noise_only_clips")
    return {"n_items": min(SUBSET_ITEMS, len(items)), **{k: res["model"][k] for k in keep if k in res["model"]}}


def architecture(c: dict) -> list[str]:
    K, L, S, H = c["n_filters"], c["kernel_size"], c["stride"], c["hidden"]
    dil = "/".join(str(2 ** i) for i in range(c["code_blocks"]))
    return [
        "input divided by its RMS (outputs multiplied back)",
        f"encoder: Conv1d(1→{K}, kernel {L} = {1000 * L / c['sr']:g} ms, stride {S} = {1000 * S / c['sr']:g} ms, no bias) "
        "→ signed coefficients a; initialised as Hann-windowed cosine/sine pairs (an STFT), then learned",
        f"magnitude: w_j = sqrt(a_2j² + a_2j+1²) for the {K // 2} filter pairs ≥ 0, a learned magnitude spectrogram "
        "(the non-negative latent the partitions model)",
        f"code net: log(w + 1e-3) → 1x1 {K // 2}→{H} → {c['code_blocks']} residual blocks (conv k=3 dilation {dil}, PReLU, gLN) "
        f"→ 1x1 {H}→{c['signal_size']}+{c['noise_size']} → softplus: signal partition z_sig ({c['signal_size']}) and noise "
        f"partition z_noise ({c['noise_size']}); the noise code is then averaged over {c['noise_smooth_frames']} frames "
        f"({c['noise_smooth_frames'] * S / c['sr']:.2f} s), so the noise partition can only explain slowly varying sound",
        f"latent model: v_sig = D_sig z_sig, v_noise = D_noise z_noise with non-negative bases D ({K // 2}×{c['signal_size']}, "
        f"{K // 2}×{c['noise_size']}, softplus-parametrised)",
        "masks: m_p = v_p / (v_sig + v_noise + eps), one per filter pair; estimate_p = decoder(a ⊙ m_p)",
        f"decoder: ConvTranspose1d({K}→1, kernel {L}, stride {S}, no bias): the learned synthesis bank (initialised as "
        "the least-squares synthesis of the cosine/sine pairs)",
        "denoising output = the signal partition's estimate; zero='signal' zero-masks that partition exactly",
    ]


# ---- main ------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    """Command-line entry point (``model_zoo/train.py`` calls it)."""
    import torch
    from tqdm import tqdm

    from model_zoo import partitioned_ae
    from model_zoo.recipes.convtasnet_lite import CPUTimer
    from model_zoo.recipes._common import (TrainState, count_params, device_description, load_checkpoint,
                                           parse_args, save_checkpoint, seed_everything, software_versions,
                                           write_card, zoo_paths)

    args = parse_args(argv, name=NAME, minutes=11.0, batch_size=12, lr=1e-3, segment_seconds=1.0, dataset="noisy")
    rng = seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    paths = zoo_paths(NAME, args.out_dir)
    config = dict(partitioned_ae.DEFAULT_CONFIG)
    if args.smoke:
        config.update({"n_filters": 16, "kernel_size": 32, "stride": 8, "hidden": 8, "code_blocks": 1, "signal_size": 4,
                       "noise_size": 4, "noise_smooth_frames": 51})
    train, val, test, prov = _load(args.smoke, args.n_test)
    sr = int(train[0]["sr"])
    seg = min(int(args.segment_seconds * sr), len(train[0]["noisy"]))
    model = partitioned_ae.build(config)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    state = TrainState(NAME, model, opt, root=paths.train_root)
    best_path = state.dir / "best.safetensors"
    scal = state.restore() if args.resume else {}
    if args.resume and scal:
        rng.bit_generator.state = scal["rng"]
        print(f"[{NAME}] resumed at step {scal['step']} ({scal['elapsed']:.0f} s)")
    step, best, best_step = int(scal.get("step", 0)), float(scal.get("best", 1e9)), int(scal.get("best_step", 0))
    history = list(scal.get("history", []))
    best_state = load_checkpoint(best_path)[0] if (args.resume and best_path.is_file()) else None
    timer = CPUTimer(args.minutes, already=float(scal.get("elapsed", 0.0)))
    wall_before = float(scal.get("wall_seconds", 0.0))
    t_start = time.perf_counter()
    max_steps = args.steps if args.steps is not None else 10**9
    bar = tqdm(total=None if args.steps is None else max_steps, initial=step, desc=NAME, mininterval=5.0)
    last_eval, run = timer.elapsed(), []

    def checkpoint_now():
        nonlocal best, best_step, best_state, last_eval
        v = val_objective(model, val)
        history.append({"step": step, "cpu_seconds": round(timer.elapsed(), 1),
                        "wall_seconds": round(wall_before + time.perf_counter() - t_start, 1), "val_objective": round(v, 4),
                        **{k: round(float(np.mean([r[k] for r in run])), 4) for k in (run[0] if run else {})}})
        run.clear()
        if v < best:
            best, best_step = v, step
            best_state = copy.deepcopy(model.state_dict())
            save_checkpoint(best_state, best_path, name=NAME, config=config)
        state.save(step=step, best=best, best_step=best_step, elapsed=timer.elapsed(), history=history,
                   rng=rng.bit_generator.state, wall_seconds=wall_before + time.perf_counter() - t_start)
        bar.write(f"[{NAME}] step {step} {timer.elapsed():.0f}s val objective {v:.3f} (best {best:.3f} @ {best_step})")
        last_eval = timer.elapsed()

    model.train()
    while step < max_steps and not timer.expired():
        frac = timer.elapsed() / timer.budget if timer.budget else 0.0
        for grp in opt.param_groups:
            grp["lr"] = args.lr * (1.0 if frac < 0.6 else max(0.1, 1.0 - (frac - 0.6) / 0.4 * 0.9))
        x, g = _batch(train, rng, args.batch_size, seg)
        x, g = torch.from_numpy(x), torch.from_numpy(g)
        losses = pae_losses(model, x, g)
        opt.zero_grad()
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        run.append({k: float(v.detach()) for k, v in losses.items()})
        bar.update(1)
        if timer.elapsed() - last_eval > 75.0:
            checkpoint_now()
    checkpoint_now()
    bar.close()
    train_seconds = timer.elapsed()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    ckpt = save_checkpoint(model, paths.checkpoint, name=NAME, config=config,
                           extra={"val_objective": round(best, 4), "best_step": best_step})
    card = {
        "summary": (partitioned_ae.__doc__ or "").strip().splitlines()[0],
        "task": partitioned_ae.TASK, "params": count_params(model), "checkpoint": f"checkpoints/{ckpt.name}",
        "checkpoint_bytes": ckpt.stat().st_size, "input_kind": "waveform",
        "output_kind": "sources (2: [signal estimate, noise estimate])",
        "grid": {"sample_rate": 8000, "n_fft": 256, "hop_length": 64},
        "architecture": architecture(config), "config": config, "data": prov,
        "training": {"steps": step, "best_step": best_step, "train_cpu_seconds": round(train_seconds, 1),
                     "train_wall_seconds": round(wall_before + time.perf_counter() - t_start, 1),
                     "budget_minutes": args.minutes, "budget_clock": "process CPU time (one torch thread); on an idle "
                     "core this equals wall time, on a shared machine the wall time is longer",
                     "device": device_description(), "batch_size": args.batch_size,
                     "segment_seconds": round(seg / sr, 3), "lr": f"{args.lr:g}", "optimizer": "Adam, grad-norm clip 5",
                     "loss": "−SNR(noisy, decoder(a)) + latent log-fit (signal partition zero-masked on noise-only "
                             "clips) + L1 on the signal code (noise-only clips, and weakly everywhere)",
                     "loss_weights": LOSS_WEIGHTS,
                     "noise_bases_update": "only from noise-only clips", "augmentation": "random 1 s crops, ±6 dB gain",
                     "selection": "lowest validation partition objective (latent fit + L1 terms; unsupervised: "
                                  "no clean signal used)",
                     "best_val_objective": round(best, 4), "seed": args.seed, "history": history,
                     "software": software_versions()},
    }
    if not args.no_eval:
        from model_zoo.partitioned_ae import denoise

        res = evaluate_denoiser(lambda y: denoise(model, y), test)
        card["metrics"] = {"test": {k: v for k, v in res.items() if k != "per_item"}}
        card["test_items"] = len(test)
        card["test_breakdown"] = breakdown(res["per_item"], test)
        card["subset_metrics"] = subset_metrics(model, test)
        m = res["model"]
        card["notes"] = [
            "Trained without clean signals: only the noisy clips and their has-signal flags; the clean stems score "
            "the test split only.",
            DEVELOPMENT_NOTE,
            f"Test (clips with a signal): SNRi {m.get('snri', float('nan')):.2f} dB, SI-SDRi "
            f"{m.get('si_sdri', float('nan')):.2f} dB; oracle IRM SNRi "
            f"{res.get('oracle_irm', {}).get('snri', float('nan')):.2f} dB.",
            f"Noise-only test clips: the signal estimate lies {m['noise_only_attenuation_db']:.1f} dB below the input.",
        ]
        if m.get("snri", 0.0) <= 0.0:
            card["notes"].append("Denoising does not improve SNR on the test split: the partition did not separate "
                                 "signal from noise well enough (see history for the training objective).")
        print(json.dumps({"name": NAME, "test": {k: {kk: round(vv, 2) for kk, vv in v.items() if isinstance(vv, float)}
                                                for k, v in card["metrics"]["test"].items()}}))
    write_card(NAME, card, out_dir=paths.cards)
    return card  # the training state stays in _train/ (gitignored): `--resume --minutes M` extends the run


if __name__ == "__main__":
    main()
