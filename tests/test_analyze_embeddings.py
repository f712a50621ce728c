"""Embedding maps and clusters: answers known by construction (planted clusters, disjoint-band sources)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.adapter import ModelSpec
from probe.audio import AudioExample
from probe.errors import AnalysisError
from probe.grid import TFGrid
from probe.analyze.embeddings import (EmbeddingClusters, EmbeddingMap, clip_embeddings,
                                      cluster_embeddings, clusterability, colourings, embedding_map,
                                      embeddings_from_layer, embeddings_from_model, embeddings_from_record,
                                      mask_accuracy, oracle_agreement, select_points, separate_clusters,
                                      trustworthiness)

SR = 8000
GRID = TFGrid(SR, n_fft=256, hop_length=64)


def planted(n_per=150, k=4, D=20, spread=0.15, seed=0):
    """k Gaussian blobs on the unit sphere in D dimensions."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, D))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(k), n_per)
    X = centres[truth] + spread * rng.standard_normal((len(truth), D)) / np.sqrt(D)
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), truth


def two_source_example(seconds=2.0):
    """Harmonic stack below 1 kHz + a gated three-partial stack above 1.4 kHz: disjoint bands."""
    t = np.arange(int(seconds * SR)) / SR
    low = sum(0.3 / h * np.sin(2 * np.pi * 200 * h * t) for h in range(1, 5)) * (1 + 0.5 * np.sin(2 * np.pi * 1.5 * t))
    high = sum(0.15 * np.sin(2 * np.pi * f * t + 1) for f in (1500, 2500, 3500)) * ((t % 1) < 0.6)
    S = np.stack([low, high]).astype(np.float32)
    events = [{"label": "beep", "onset": 0.0, "offset": 0.6, "fmin": 1200.0, "fmax": 4000.0},
              {"label": "beep", "onset": 1.0, "offset": 1.6, "fmin": 1200.0, "fmax": 4000.0}]
    return AudioExample(y=S.sum(0), sr=SR, name="two-bands", sources=S, source_names=["low", "high"], events=events)


def oracle_embeddings(ex, D=20, noise=0.1, seed=0):
    """Hand-made per-bin embeddings that encode the dominant source (what a perfect DC net learns)."""
    rng = np.random.default_rng(seed)
    dom = np.abs(GRID.stft(torch.as_tensor(ex.sources)).numpy()).argmax(0)
    E = np.eye(D)[dom].transpose(2, 0, 1) + noise * rng.standard_normal((D,) + dom.shape)
    return (E / np.linalg.norm(E, axis=0, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def ex():
    return two_source_example()


@pytest.fixture(scope="module")
def clip(ex):
    return clip_embeddings(oracle_embeddings(ex), ex, GRID)


def snr_db(ref, est):
    return 10 * np.log10((ref ** 2).sum() / ((ref - est) ** 2).sum())


# ---- clustering ------------------------------------------------------------------------
def test_planted_clusters_recovered_by_kmeans_and_gmm():
    from sklearn.metrics import adjusted_rand_score

    X, truth = planted()
    for method in ("kmeans", "gmm"):
        km = EmbeddingClusters(4, method=method, random_state=0).fit(X)
        assert adjusted_rand_score(truth, km.labels_) >= 0.95, method
        assert km.centers_.shape == (4, 20)
        np.testing.assert_array_equal(km.predict(X), km.labels_)
    assert adjusted_rand_score(truth, cluster_embeddings(X, 4)) >= 0.95


def test_two_sources_masks_match_ideal_binary_mask_and_audio_matches_sources(clip, ex, tmp_path):
    pts = select_points(clip, budget=3000, seed=0)
    km = EmbeddingClusters(2).fit(pts)
    agree = oracle_agreement(km, pts)
    assert agree["mask_accuracy"] > 0.995
    assert agree["ari"] > 0.95 and agree["nmi"] > 0.9
    masks = km.masks(clip)
    assert masks.shape == (2,) + clip.stft.shape
    np.testing.assert_array_equal(masks.sum(0), 1.0)  # every bin, silent ones too, in exactly one cluster
    audio = km.separate(clip)
    assert audio.shape == (2, len(ex.y))
    # match clusters to sources by energy share, then each cluster must sound like its source
    _, mapping = mask_accuracy(clip.to_stft_grid(km.predict_clip(clip)), clip.dominant_stft, np.abs(clip.stft) ** 2)
    for j, s in mapping.items():
        assert snr_db(ex.sources[s], audio[j]) > 10.0, (j, s)
    # the cluster holding the high source lives above 1 kHz
    high = [j for j, s in mapping.items() if s == 1][0]
    assert np.median(pts.freq[km.labels_ == high]) > 1200 and np.median(pts.freq[km.labels_ != high]) < 1000
    # "listen to a cluster": wavs on disk equal the separated audio
    import soundfile as sf

    paths = km.write_audio(clip, tmp_path / "wav")
    assert [p.split("/")[-1] for p in paths] == ["cluster_1.wav", "cluster_2.wav"]  # numbered from 1
    y0, sr = sf.read(paths[0], dtype="float32")
    assert sr == SR and np.allclose(y0, audio[0], atol=1e-6)


def test_separate_clusters_function_twin(clip, ex):
    audio, masks, km = separate_clusters(clip, 2)
    assert audio.shape == (2, len(ex.y)) and masks.shape[0] == 2
    best = max(snr_db(ex.sources[0], audio[0]) + snr_db(ex.sources[1], audio[1]),
               snr_db(ex.sources[0], audio[1]) + snr_db(ex.sources[1], audio[0]))
    assert best > 20.0


def test_mask_accuracy_is_permutation_invariant_and_energy_weighted():
    lab = np.array([1, 1, 0, 0, 0])
    ora = np.array([0, 0, 1, 1, 0])
    acc, mapping = mask_accuracy(lab, ora)
    assert mapping == {0: 1, 1: 0} and acc == pytest.approx(0.8)
    # the one wrong cell is nearly silent: weighted accuracy ~ 1
    acc_w, _ = mask_accuracy(lab, ora, weights=[1, 1, 1, 1, 1e-6])
    assert acc_w == pytest.approx(1.0, abs=1e-5)
    # three clusters, two sources: the extra cluster is unmatched and counts as wrong
    acc3, m3 = mask_accuracy(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 0, 1, 1, 1, 1]))
    assert acc3 == pytest.approx(4 / 6) and len(m3) == 2


def test_clusterability_orders_separable_above_unimodal():
    two, _ = planted(n_per=300, k=2, spread=0.3)
    rng = np.random.default_rng(1)
    one = rng.standard_normal((600, 20))
    one = (one / np.linalg.norm(one, axis=1, keepdims=True)).astype(np.float32)
    a, b = clusterability(two), clusterability(one)
    assert a["silhouette"] > 0.5 > b["silhouette"]
    assert a["gmm_ll_gain"] > b["gmm_ll_gain"]
    assert a["bic_gain"] > 0 > b["bic_gain"]
    assert a["kmeans_ratio"] < 0.5 < b["kmeans_ratio"]
    # only the loudest bins count
    energy = np.r_[np.full(600, 0.0), np.full(600, -30.0)]
    mixed = np.r_[two, one]
    assert clusterability(mixed, energy, n_loudest=600)["silhouette"] == pytest.approx(a["silhouette"])


# ---- point selection -------------------------------------------------------------------
def three_level_clip():
    """Tones at 0, -30 and -60 dB relative, in separate bands; embeddings = one-hot of the band."""
    t = np.arange(SR) / SR
    y = (np.sin(2 * np.pi * 500 * t) + 10 ** (-30 / 20) * np.sin(2 * np.pi * 1500 * t)
         + 10 ** (-60 / 20) * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    E = np.ones((3, GRID.n_freqs, GRID.n_frames(len(y))), np.float32)
    return clip_embeddings(E, y, GRID)


def test_silent_bins_dropped_at_threshold():
    c = three_level_clip()
    pts = select_points(c, threshold_db=40, budget=None)
    assert pts.rel_db.min() >= -40 and pts.rel_db.max() == 0
    near = lambda f0: np.abs(pts.freq - f0) < 100  # noqa: E731
    assert near(500).any() and near(1500).any() and not near(3000).any()
    loose = select_points(c, threshold_db=70, budget=None)
    assert (np.abs(loose.freq - 3000) < 100).any()
    assert len(select_points(c, threshold_db=None, budget=None)) == c.power.size
    with pytest.raises(AnalysisError, match="threshold_db"):
        select_points(c, threshold_db=-5)


def test_budget_is_respected_seeded_and_stratified(clip):
    full = select_points(clip, budget=None)
    pts = select_points(clip, budget=1000, seed=3)
    assert len(pts) == 1000 and len(full) > 5000
    again = select_points(clip, budget=1000, seed=3)
    np.testing.assert_array_equal(pts.X, again.X)
    assert not np.array_equal(select_points(clip, budget=1000, seed=4).frame, pts.frame)
    # every 5 dB band of the 40 dB range is represented, the loud ones over-sampled...
    bands = np.clip((-pts.rel_db // 5).astype(int), 0, 7)
    assert set(bands) == set(range(8))
    assert (pts.rel_db > -10).mean() > (full.rel_db > -10).mean()
    # ...and the weights undo the tilt: they sum to the number of non-silent cells
    assert pts.weight.sum() == pytest.approx(len(full), rel=1e-6)
    # no duplicates, every point carries its origin
    assert len(set(zip(pts.row, pts.frame))) == 1000
    np.testing.assert_allclose(pts.time, GRID.frames_to_seconds(pts.frame))
    np.testing.assert_allclose(pts.freq, GRID.bin_frequencies()[pts.row])
    np.testing.assert_array_equal(pts.source, clip.dominant[pts.row, pts.frame])
    assert select_points(clip, budget=10 ** 7).X.shape == full.X.shape


def test_pooled_clips_keep_clip_index_and_share_budget(ex):
    a = clip_embeddings(oracle_embeddings(ex, seed=0), ex, GRID, name="a")
    b = clip_embeddings(oracle_embeddings(ex, seed=1)[:, :, :100], ex.y, GRID, times=GRID.frame_times(100), name="b")
    pts = select_points([a, b], budget=800)
    assert np.bincount(pts.clip).tolist() == [400, 400]
    assert pts.time[pts.clip == 1].max() < GRID.frames_to_seconds(100)
    assert colourings(pts)["clip"]["names"] == ["a", "b"]


# ---- projection ------------------------------------------------------------------------
def test_pca_on_plane_is_trustworthy_and_cached(tmp_path):
    rng = np.random.default_rng(0)
    plane = (rng.standard_normal((400, 2)) @ rng.standard_normal((2, 12))).astype(np.float32)
    m = EmbeddingMap("pca", cache_size=2)
    m.fit(plane)
    assert m.embedding_.shape == (400, 2) and m.trustworthiness_ > 0.999 and m.from_cache_ is None
    assert m.metric_ == "euclidean"
    assert m.fit(plane).from_cache_ == "memory"
    m.fit(plane + 1)
    m.fit(plane + 2)  # LRU of 2: the first map is evicted
    assert m.fit(plane).from_cache_ is None and len(m._lru) == 2
    d = EmbeddingMap("pca", cache_dir=tmp_path).fit(plane)
    fresh = EmbeddingMap("pca", cache_dir=tmp_path).fit(plane)
    assert fresh.from_cache_ == "disk" and np.array_equal(fresh.embedding_, d.embedding_)
    # different parameters, different key
    assert EmbeddingMap("pca", trust_neighbors=5, cache_dir=tmp_path).fit(plane).from_cache_ is None
    Z, tw = embedding_map(plane, "pca")
    assert tw > 0.999 and Z.shape == (400, 2)


def test_blocked_trustworthiness_equals_sklearn():
    from sklearn.manifold import trustworthiness as sk

    X, _ = planted(n_per=200, k=3)
    X = X.astype(np.float64)  # same precision on both sides: then equal to rounding
    rng = np.random.default_rng(0)
    for noise in (0.05, 1.0):  # a good map (few far neighbours) and a bad one (many)
        Z = X[:, :2] + noise * rng.standard_normal((len(X), 2))
        for metric in ("euclidean", "cosine"):
            ours = trustworthiness(X, Z, metric=metric, exact_limit=0)
            assert ours == pytest.approx(sk(X, Z, n_neighbors=10, metric=metric), abs=1e-9), (noise, metric)


@pytest.mark.slow
def test_umap_separates_planted_clusters_and_is_trustworthy():
    from sklearn.metrics import adjusted_rand_score

    from probe.analyze.embeddings import enable_jit_cache

    enable_jit_cache()  # compiled umap kernels from earlier runs load from disk (the first run compiles: ~10 s)
    X, truth = planted(n_per=150, k=4, spread=0.3)
    m = EmbeddingMap("umap", n_epochs=100).fit(X)
    assert m.metric_ == "cosine"
    assert m.trustworthiness_ > 0.85
    # the 2-D map itself shows the clusters: k-means on the map finds them
    assert adjusted_rand_score(truth, cluster_embeddings(m.embedding_, 4)) > 0.95


# ---- inputs: models and captured records ----------------------------------------------
class BandNet(torch.nn.Module):
    """tf_embeddings that point one way below 1 kHz and another above (D=3), like an ideal DC net here."""

    def forward(self, x):  # (B, F, T) log-magnitude
        B, F, T = x.shape
        hz = torch.linspace(0, SR / 2, F)[None, :, None].expand(B, F, T)
        v = torch.stack([(hz < 1000).float(), (hz >= 1000).float(), 0.01 * torch.tanh(x)], 1)
        return {"tf_embeddings": torch.nn.functional.normalize(v, dim=1), "masks": v[:, :2]}


def test_embeddings_from_model_spec_end_to_end(ex):
    spec = ModelSpec(BandNet(), input_kind="logmag", grid=GRID, output_kind="masks", name="band")
    c = embeddings_from_model(spec, ex)
    assert c.kind == "tf" and c.embeddings.shape == (3, GRID.n_freqs, GRID.n_frames(len(ex.y)))
    assert c.model == "band" and c.layer == "tf_embeddings" and c.source_names == ["low", "high"]
    pts = select_points(c, budget=2000)
    km = EmbeddingClusters(2).fit(pts)
    assert oracle_agreement(km, pts)["mask_accuracy"] > 0.99
    assert embeddings_from_layer(spec, ex, None).embeddings.shape == c.embeddings.shape


class FrameNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = torch.nn.GRU(GRID.n_freqs, 6, batch_first=True)
        self.head = torch.nn.Linear(6, 2)

    def forward(self, x):  # (B, F, T)
        h, _ = self.rnn(x.transpose(1, 2))
        return torch.sigmoid(self.head(h)).transpose(1, 2)


def test_frame_embeddings_from_captured_layer(ex):
    spec = ModelSpec(FrameNet().eval(), input_kind="logmag", grid=GRID, output_kind="frame_probs", classes=["a", "b"])
    c = embeddings_from_layer(spec, ex, "rnn")
    T = GRID.n_frames(len(ex.y))
    assert c.kind == "frame" and c.embeddings.shape == (6, 1, T) and c.layer == "rnn"
    np.testing.assert_allclose(c.times, GRID.frame_times(T), atol=1e-9)
    pts = select_points(c, threshold_db=None, budget=None)
    assert len(pts) == T and np.isnan(pts.freq).all()
    # frame power sums the bins; oracle per frame = the source with more energy in that frame
    P = np.abs(c.stft) ** 2
    np.testing.assert_allclose(c.power[0], P.sum(0), rtol=1e-5)
    cols = colourings(pts)
    assert "freq" not in cols and cols["class"]["names"] == ["beep", "(none)"]
    beep = cols["class"]["values"] == 0
    assert np.all((pts.time[beep] % 1) < 0.6)
    # time masks resynthesise: two frame clusters still sum back to the mixture
    km = EmbeddingClusters(2).fit(pts)
    audio = km.separate(c)
    np.testing.assert_allclose(audio.sum(0), ex.y, atol=1e-4)


def test_record_with_mel_axis_gives_tf_points(ex):
    grid = TFGrid(SR, n_fft=256, hop_length=64, n_mels=16)

    class Rec:  # a captured conv output on a log-mel model: (batch, channel, mel, time)
        name = "conv"
        axes = ["batch", "channel", "mel", "time"]
        seconds_per_step = grid.seconds_per_frame
        tensor = torch.randn(1, 5, 16, grid.n_frames(len(ex.y)))

    spec = ModelSpec(torch.nn.Identity(), input_kind="logmel", grid=grid)
    c = embeddings_from_record(Rec(), ex, spec)
    assert c.kind == "tf" and c.embeddings.shape == (5, 16, grid.n_frames(len(ex.y)))
    np.testing.assert_allclose(c.freqs, grid.mel_frequencies())
    assert c.f_map.shape == (grid.n_freqs,) and c.f_map[0] == 0 and c.f_map[-1] == 15
    # a pooled (coarser) time axis still maps every STFT frame to a step
    Rec.tensor = torch.randn(1, 5, 16, 20)
    Rec.seconds_per_step = grid.seconds_per_frame * 12
    coarse = embeddings_from_record(Rec(), ex, spec)
    assert coarse.t_map.max() == 19 and np.all(np.diff(coarse.t_map) >= 0)
    assert coarse.power.shape == (16, 20) and np.all(coarse.power > 0)


def test_errors_name_the_problem(clip, ex):
    with pytest.raises(AnalysisError, match=r"E.shape=\(3, 4, 5, 6\)"):
        clip_embeddings(np.zeros((3, 4, 5, 6)), ex, GRID)
    with pytest.raises(AnalysisError, match="not fitted"):
        EmbeddingClusters(2).predict(np.zeros((3, 2)))
    with pytest.raises(AnalysisError, match="unknown projection 'tsne'"):
        EmbeddingMap("tsne").fit(np.random.default_rng(0).standard_normal((20, 3)))

    class NoTime:
        name, axes, seconds_per_step, tensor = "pool", ["batch", "channel"], None, torch.zeros(1, 4)

    with pytest.raises(AnalysisError, match="no time axis"):
        embeddings_from_record(NoTime(), ex, GRID)
    from probe.figures.embeddings import embedding_scatter

    pts = select_points(clip, budget=100)
    with pytest.raises(AnalysisError, match="cannot colour by 'cluster'"):
        embedding_scatter(pts, pts.X[:, :2], color="cluster")


# ---- figures ---------------------------------------------------------------------------
def test_figures_carry_origin_on_hover_and_axes_in_units(clip):
    from probe.figures.embeddings import cluster_mask_figure, embedding_scatter, scores_vs_separation

    pts = select_points(clip, budget=500)
    km = EmbeddingClusters(2).fit(pts)
    Z = EmbeddingMap("pca").fit(pts).embedding_
    fig = embedding_scatter(pts, Z, color="source", clusters=km)
    assert {t.type for t in fig.data} == {"scattergl"} and len(fig.data) == 2
    assert sum(len(t.x) for t in fig.data) == 500
    tmpl = fig.data[0].hovertemplate
    for part in (" s", "Hz", "dB", "source", "cluster"):
        assert part in tmpl
    row = fig.data[0].customdata[0]
    assert row[3] in ("low", "high") and str(row[4]).startswith("cluster")
    cont = embedding_scatter(pts, Z, color="freq")
    assert len(cont.data) == 1 and cont.data[0].marker.showscale
    mf = cluster_mask_figure(clip, km.masks(clip), cluster=1)
    hm = mf.data[0]
    # cells placed by a start and a step (drawn as one image): the top row at Nyquist, one frame per column
    top = hm.y0 + hm.dy * (np.shape(hm.z)[0] - 1)
    assert hm.type == "heatmap" and top == pytest.approx(SR / 2) and hm.x0 + hm.dx == pytest.approx(GRID.seconds_per_frame)
    assert mf.layout.xaxis.title.text == "time (s)" and mf.layout.yaxis.title.text == "frequency (Hz)"
    rows = [{"silhouette": s, "kmeans_ratio": 1 - s, "si_sdri": 10 * s} for s in np.linspace(0, 1, 6)]
    sf = scores_vs_separation(rows, scores=("silhouette", "kmeans_ratio"))
    assert "ρ = 1.00" in sf.layout.annotations[0].text and "ρ = -1.00" in sf.layout.annotations[1].text
