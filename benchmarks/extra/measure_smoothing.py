"""Does spatial smoothing of per-pixel cluster labels reduce the mat-cover error?

Self-contained (needs sediment_xr, opencv, scikit-image, numpy; ``pip install -e .[bench]``):
    python benchmarks/extra/measure_smoothing.py [--quick]
Writes smoothing_results.json (in the working folder) and prints one line per
(scene, k, method). Results: benchmarks/accuracy.md, "Spatial smoothing".

Pipeline under test (the best pixel method before the package's flat field, which since
takes the 10th percentile of each frame and a robust quadratic): flat field from block 25th
percentiles (16 px blocks, median over frames, robust quadratic fit in log luma), per-frame
channel gains = half-sample mode of log(frame/ref) on 8x-downsampled frames, BGR features,
KMeans (sediment_xr.cluster.fit_kmeans) on a 200 000-pixel sample of all frames, nearest-centre
labels. Clusters -> mat by majority vote against the true masks (recomputed after smoothing,
i.e. each method gets its oracle mapping). Errors on frames whose event is "ok".
"""

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

cv2.setNumThreads(1)
threadpool_limits(1)

from skimage.segmentation import slic  # noqa: E402

from sediment_xr._kernels import count_labels, label_frames  # noqa: E402
from sediment_xr.cluster import fit_kmeans  # noqa: E402
from sediment_xr.illumination import half_sample_mode  # noqa: E402
from sediment_xr.testing import realistic_series  # noqa: E402

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


# ------------------------------------------------------------------ preprocessing
def small(img, f=8):
    h, w = img.shape[:2]
    return cv2.resize(img, (max(w // f, 1), max(h // f, 1)), interpolation=cv2.INTER_AREA)


def quad_field(luma_small, shape):
    h, w = luma_small.shape
    yy, xx = np.mgrid[0:h, 0:w]
    X = np.stack(
        [
            np.ones(h * w),
            xx.ravel() / w,
            yy.ravel() / h,
            (xx.ravel() / w) ** 2,
            (yy.ravel() / h) ** 2,
            xx.ravel() * yy.ravel() / (w * h),
        ],
        1,
    )
    z = np.log(np.maximum(luma_small.ravel(), 1.0))
    keep = np.ones(len(z), bool)
    for _ in range(5):
        coef, *_ = np.linalg.lstsq(X[keep], z[keep], rcond=None)
        r = z - X @ coef
        mad = np.median(np.abs(r[keep] - np.median(r[keep]))) + 1e-9
        keep = np.abs(r) < 2.0 * 1.4826 * mad
    H, W = shape
    yy, xx = np.mgrid[0:H, 0:W]
    Xf = np.stack(
        [
            np.ones(H * W),
            (xx.ravel() + 0.5) / W,
            (yy.ravel() + 0.5) / H,
            ((xx.ravel() + 0.5) / W) ** 2,
            ((yy.ravel() + 0.5) / H) ** 2,
            (xx.ravel() + 0.5) * (yy.ravel() + 0.5) / (W * H),
        ],
        1,
    )
    f = np.exp(Xf @ coef).reshape(H, W)
    return (f / f.mean()).astype(np.float32)


def block_pct(luma, b, q=25):
    h, w = luma.shape
    H, W = h // b, w // b
    x = luma[: H * b, : W * b].reshape(H, b, W, b).transpose(0, 2, 1, 3).reshape(H, W, b * b)
    return np.percentile(x, q, axis=-1)


def field_pct(frames, positions, b=16, q=25):
    grids = np.stack([block_pct(frames[i].astype(np.float32) @ LUMA, b, q) for i in positions])
    return quad_field(np.median(grids, 0), frames.shape[1:3])


def make_ref2(frames, positions, fac=8):
    field = field_pct(frames, positions, 16, 25)
    smalls = np.stack(
        [small(frames[i].astype(np.float32) / field[..., None], fac) for i in positions]
    )
    return {"ref": np.median(smalls, 0), "field": field, "fac": fac}


hsm = half_sample_mode


def flatgain_hsm(frames, r):
    out = np.empty_like(frames)
    for i, f in enumerate(frames):
        x = f.astype(np.float32) / r["field"][..., None]
        s = small(x, r["fac"])
        lr = np.log(np.maximum(s.reshape(-1, 3), 1) / np.maximum(r["ref"].reshape(-1, 3), 1))
        g = np.exp([hsm(lr[:, c]) for c in range(3)])
        out[i] = np.clip(np.rint(x / g), 0, 255).astype(np.uint8)[..., ::-1]  # RGB -> BGR
    return out


def fit(feats, k, seed=0, sample=200000):
    rng = np.random.default_rng(seed)
    per = sample // len(feats)
    samp = np.concatenate(
        [f.reshape(-1, 3)[rng.choice(f.shape[0] * f.shape[1], per, replace=False)] for f in feats]
    )
    return fit_kmeans(samp, n_clusters=k, random_state=seed)


# ------------------------------------------------------------------ smoothers
# Each takes (labels uint8 (H, W), k, feats uint8 BGR (H, W, 3), aux) -> uint8 labels (H, W).
def modal(w):
    """Majority label in a w x w window (BORDER_REFLECT); ties go to the pixel's own label,
    then to the darker cluster. Per-label unnormalised box sums of one-hot uint8 planes and a
    running argmax."""

    def f(L, k, F, aux):
        best = np.zeros(L.shape, np.uint8)
        out = L.copy()
        for j in range(k):
            plane = (L == j).view(np.uint8)
            c = cv2.boxFilter(plane, -1, (w, w), normalize=False, borderType=cv2.BORDER_REFLECT)
            score = cv2.add(cv2.add(c, c), plane)  # 2*count + own  (<= 2*49+1 < 256)
            m = score > best
            np.copyto(best, score, where=m)
            np.copyto(out, np.uint8(j), where=m)
        return out

    return f


def median(w):
    def f(L, k, F, aux):
        return cv2.medianBlur(L, w)

    return f


def gauss_onehot(sigma):
    def f(L, k, F, aux):
        best = np.full(L.shape, -1.0, np.float32)
        out = L.copy()
        for j in range(k):
            p = cv2.GaussianBlur(
                (L == j).astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT
            )
            p += (L == j) * np.float32(1e-4)  # ties -> own label
            m = p > best
            np.copyto(best, p, where=m)
            np.copyto(out, np.uint8(j), where=m)
        return out

    return f


def superpixels(F, px, compactness=10.0):
    n = max(F.shape[0] * F.shape[1] // px, 1)
    return slic(
        np.ascontiguousarray(F[..., ::-1]),
        n_segments=n,
        compactness=compactness,
        start_label=0,
        channel_axis=-1,
    )  # RGB -> slic converts to Lab


def sp_majority(L, k, seg):
    nseg = int(seg.max()) + 1
    h = np.bincount((seg.ravel().astype(np.int64) * k + L.ravel()), minlength=nseg * k)
    maj = h.reshape(nseg, k).argmax(1).astype(np.uint8)
    return maj[seg]


def slic_major(px):
    def f(L, k, F, aux):
        key = ("slic", px)
        seg = aux.get(key) if aux is not None else None
        if seg is None:
            seg = superpixels(F, px)
        return sp_majority(L, k, seg)

    return f


def bin_median(w):
    """Binary mat map (clusters named mat from the unsmoothed labels) then a w x w median
    (= binary majority). Output labels 0/1."""

    def f(L, k, F, aux):
        return cv2.medianBlur(aux["lut"][L], w)

    return f


SMOOTHERS = {
    "none": None,
    "modal3": modal(3),
    "modal5": modal(5),
    "median3": median(3),
    "median5": median(5),
    "median7": median(7),
    "gauss1": gauss_onehot(1.0),
    "gauss2": gauss_onehot(2.0),
    "slic100": slic_major(100),
    "slic400": slic_major(400),
    "binmed3": bin_median(3),
    "binmed5": bin_median(5),
}


# ------------------------------------------------------------------ evaluation
def mapping(labels, masks, k):
    vis = masks >= 0
    share = np.array(
        [
            ((labels == j) & (masks == 1)).sum() / max(((labels == j) & vis).sum(), 1)
            for j in range(k)
        ]
    )
    return np.flatnonzero(share > 0.5)


def score(labels, k, masks, truth, good):
    mat = mapping(labels, masks, k)
    counts = count_labels(labels.reshape(len(labels), -1), k)
    cov = 100 * counts[:, mat].sum(1) / counts.sum(1)
    t = np.arange(len(truth))
    err = cov[good] - truth[good]
    slope = np.polyfit(t[good], cov[good], 1)[0] / np.polyfit(t[good], truth[good], 1)[0]
    pred = np.isin(labels[good], mat)
    vis = masks[good] >= 0
    pix_err = 100 * ((pred != (masks[good] == 1)) & vis).sum() / vis.sum()
    return dict(
        mae=float(np.abs(err).mean()),
        bias=float(err.mean()),
        slope=float(slope),
        pix_err=float(pix_err),
        mat=[int(x) for x in mat],
    )


def run_scene(seed, kw, size, ks, n=36, log=print):
    ds = realistic_series(n, size=size, seed=seed, **kw)
    rows = ds.attrs["crop_rows"]
    frames = ds.frames.values[:, -rows:]
    masks = ds.mask.values
    truth = ds.true_cover.values
    good = ds.event.values == "ok"
    feats = flatgain_hsm(frames, make_ref2(frames, np.arange(len(frames))))
    segs = {px: [superpixels(f, px) for f in feats] for px in (100, 400)}
    px_actual = {px: float(np.mean([s.size / (s.max() + 1) for s in segs[px]])) for px in segs}
    out = []
    for k in ks:
        model = fit(feats, k)
        labels = label_frames(feats, model.centers_array).view(np.uint8)
        base_mat = mapping(labels, masks, k)
        lut = np.zeros(256, np.uint8)
        lut[base_mat] = 1
        for name, fn in SMOOTHERS.items():
            if fn is None:
                sm, kk = labels, k
            else:
                kk = 2 if name.startswith("bin") else k
                sm = np.stack(
                    [
                        fn(L, k, F, {"lut": lut, ("slic", 100): s1, ("slic", 400): s4})
                        for L, F, s1, s4 in zip(labels, feats, segs[100], segs[400], strict=True)
                    ]
                )
            r = score(sm, kk, masks, truth, good)
            r.update(
                seed=seed,
                scene="steady" if not kw else "ageing+events",
                size=size,
                k=k,
                method=name,
                n_good=int(good.sum()),
            )
            log(
                f"size{size} seed{seed} {r['scene']:13s} k{k} {name:8s} mae {r['mae']:.2f} "
                f"bias {r['bias']:+.2f} slope {r['slope']:.3f} pixerr {r['pix_err']:.2f} "
                f"mat={r['mat']}"
            )
            out.append(r)
    return out, px_actual


def cost(ks=(8, 6), n_frames=8, reps=5):
    """Per-frame wall-clock of each smoothing step alone at 1024 x 400, single thread."""
    ds = realistic_series(n_frames, size=1024, seed=0)
    rows = ds.attrs["crop_rows"]
    frames = ds.frames.values[:, -rows:]
    t0 = time.perf_counter()
    feats = flatgain_hsm(frames, make_ref2(frames, np.arange(len(frames))))
    t_pre = (time.perf_counter() - t0) / len(frames) * 1e3  # includes the (one-off) reference
    res = {"preprocess_flatgain_hsm": t_pre}
    for k in ks:
        model = fit(feats, k)
        t0 = time.perf_counter()
        labels = label_frames(feats, model.centers_array).view(np.uint8)
        res[f"label_frames_k{k}"] = (time.perf_counter() - t0) / len(frames) * 1e3
        lut = np.zeros(256, np.uint8)
        lut[mapping(labels, ds.mask.values, k)] = 1
        for name, fn in SMOOTHERS.items():
            if fn is None:
                continue
            best = np.inf
            for _ in range(reps):
                t0 = time.perf_counter()
                for L, F in zip(labels, feats, strict=True):
                    fn(L, k, F, {"lut": lut})  # slic: segmentation computed inside (counted)
                best = min(best, (time.perf_counter() - t0) / len(frames) * 1e3)
            res[f"{name}_k{k}"] = best
    return res


def machine():
    model = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "ximgproc": hasattr(cv2, "ximgproc"),
    }


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    T0 = time.time()
    scenes = [dict(), dict(lamp_ageing=0.3, events=0.12)]
    results, pxs = [], {}
    seeds = (0,) if quick else (0, 1, 2)
    for seed in seeds:
        for kw in scenes:
            r, px = run_scene(seed, kw, 512, (8, 6))
            results += r
            pxs[f"512_s{seed}_{bool(kw)}"] = px
    print(f"[{time.time() - T0:.0f}s] 512 done", flush=True)
    for seed in seeds:  # confirmation at native size
        for kw in scenes:
            r, px = run_scene(seed, kw, 1024, (8, 6))
            results += r
            pxs[f"1024_s{seed}_{bool(kw)}"] = px
    print(f"[{time.time() - T0:.0f}s] 1024 done", flush=True)
    c = cost()
    for key, v in c.items():
        print(f"cost {key:28s} {v:9.2f} ms/frame")
    json.dump(
        {
            "results": results,
            "cost_ms": c,
            "slic_px_per_superpixel": pxs,
            "machine": machine(),
            "runtime_s": time.time() - T0,
        },
        open("smoothing_results.json" if not quick else "smoothing_quick.json", "w"),
        indent=1,
    )
    print(f"total {time.time() - T0:.0f}s")
