"""Explanation-quality metrics: agreement with Quantus 0.6.0, speed, and known results.

In one run, on a DigitsCNN trained on the bundled 8x8 digits (256 test digits) and on a small
RGB CNN trained on generated 3x32x32 images (64 test images):

(a) values: for every metric whose definition can be matched (Sparseness, Complexity,
    PointingGame, RelevanceMassAccuracy, RelevanceRankAccuracy, PixelFlipping,
    RegionPerturbation, MPRT with the same randomised weights), the largest per-sample
    difference between ours and Quantus on the same model, inputs, targets and attributions;
(b) time per metric, ours vs Quantus, interleaved repeats, medians (faithfulness correlation
    too: same number of runs and subset size, random subsets not comparable one to one);
(c) known results on digits: the random control scores worst on every faithfulness metric;
    on the input's support, guided backprop's explanations change less under cascading
    randomisation than saliency's (Adebayo et al. 2018); and how zero-baseline integrated
    gradients inflate the all-feature Spearman through shared ties;
(d) Quantus pitfalls seen in the same run: an empty localisation mask counts as a hit;
    attributions mutated in place.

Quantus is imported with stub modules for ``pandas``, ``cv2`` and ``skimage`` (used only by
code paths not run here; ``skimage.util.view_as_blocks``, needed by RegionPerturbation, gets a
numpy equivalent) and ``np.trapz = np.trapezoid`` (numpy 2 removed ``np.trapz``).

Run: ``python benchmarks/quality.py`` after ``pip install --no-deps quantus==0.6.0`` (about
5 minutes on one CPU thread; ``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from captum import attr as ca
from torch import Tensor, nn

from lightning_xai.data import DigitsDataModule
from lightning_xai.metrics import functional as M
from lightning_xai.nn import DigitsCNN

warnings.filterwarnings("ignore")
torch.set_num_threads(1)


# --------------------------------------------------------------------------- Quantus import
def _view_as_blocks(arr: np.ndarray, block_shape: tuple[int, ...]) -> np.ndarray:
    """numpy stand-in for ``skimage.util.view_as_blocks`` (non-overlapping blocks)."""
    shape = tuple(s // b for s, b in zip(arr.shape, block_shape)) + tuple(block_shape)
    strides = tuple(s * b for s, b in zip(arr.strides, block_shape)) + arr.strides
    return np.lib.stride_tricks.as_strided(arr, shape=shape, strides=strides)


def import_quantus() -> Any:
    np.trapz = np.trapezoid  # type: ignore[attr-defined]

    def stub(name: str, **attrs: Any) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules.setdefault(name, module)
        return sys.modules[name]

    for name in ("pandas", "cv2"):
        try:
            __import__(name)
        except ImportError:
            stub(name)
    try:
        import skimage  # noqa: F401
    except ImportError:
        sk = stub("skimage")
        sk.util = stub("skimage.util", view_as_blocks=_view_as_blocks)  # type: ignore[attr-defined]
        sk.segmentation = stub("skimage.segmentation", slic=None, felzenszwalb=None)  # type: ignore[attr-defined]
        sk.metrics = stub("skimage.metrics", structural_similarity=None)  # type: ignore[attr-defined]
    import quantus

    return quantus


# --------------------------------------------------------------------------- models, data
def seed(value: int = 0) -> None:
    torch.manual_seed(value)
    np.random.seed(value)


def train(net: nn.Module, x: Tensor, y: Tensor, epochs: int, lr: float = 3e-3) -> nn.Module:
    seed()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def digits(n_test: int, epochs: int) -> tuple[nn.Module, Tensor, Tensor]:
    dm = DigitsDataModule(seed=0)
    dm.setup("fit")
    assert dm.train_dataset is not None and dm.test_dataset is not None
    seed()
    net = train(DigitsCNN(10), dm.train_dataset.x, dm.train_dataset.y, epochs)
    return net, dm.test_dataset.x[:n_test], dm.test_dataset.y[:n_test]


class RGBCNN(nn.Module):
    """3x32x32 -> 4 classes; one ReLU module per use (for guided backprop)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 64, 32), nn.ReLU(), nn.Linear(32, 4)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def rgb_squares(n: int, seed_value: int) -> tuple[Tensor, Tensor, Tensor]:
    """Noise images with one bright 8x8 square; the class is its quadrant. Also the masks."""
    g = torch.Generator().manual_seed(seed_value)
    x = torch.rand(n, 3, 32, 32, generator=g) * 0.4
    y = torch.randint(0, 4, (n,), generator=g)
    mask = torch.zeros(n, 1, 32, 32, dtype=torch.bool)
    offsets = torch.randint(0, 9, (n, 2), generator=g)
    colour = torch.rand(n, 3, generator=g) * 0.5 + 0.5
    for i in range(n):
        r = 16 * int(y[i] // 2) + int(offsets[i, 0])
        c = 16 * int(y[i] % 2) + int(offsets[i, 1])
        x[i, :, r : r + 8, c : c + 8] = colour[i][:, None, None]
        mask[i, :, r : r + 8, c : c + 8] = True
    return x, y, mask


def rgb(n_test: int, epochs: int) -> tuple[nn.Module, Tensor, Tensor, Tensor]:
    x, y, _ = rgb_squares(1024, 1)
    seed()
    net = train(RGBCNN(), x, y, epochs)
    xt, yt, mt = rgb_squares(n_test, 2)
    return net, xt, yt, mt


# --------------------------------------------------------------------------- attributions
def attributions(net: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    zeros = torch.zeros_like(x)
    out = {
        "saliency": ca.Saliency(net).attribute(x, target=y),
        "input_x_gradient": ca.InputXGradient(net).attribute(x, target=y),
        "integrated_gradients": ca.IntegratedGradients(net).attribute(
            x, zeros, target=y, n_steps=32
        ),
        "guided_backprop": ca.GuidedBackprop(net).attribute(x, target=y),
        "random": torch.randn(x.shape, generator=torch.Generator().manual_seed(0)),
    }
    return {k: v.detach() for k, v in out.items()}


def explainer(method: str) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
    def explain(model: nn.Module, x: Tensor, t: Tensor) -> Tensor:
        if method == "saliency":
            return ca.Saliency(model).attribute(x, target=t).detach()
        if method == "guided_backprop":
            return ca.GuidedBackprop(model).attribute(x, target=t).detach()
        zeros = torch.zeros_like(x)
        return ca.IntegratedGradients(model).attribute(x, zeros, target=t, n_steps=32).detach()

    return explain


def quantus_explainer(method: str) -> Callable[..., np.ndarray]:
    ours = explainer(method)

    def explain(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> np.ndarray:
        x = torch.as_tensor(inputs, dtype=torch.float32)
        return ours(model, x, torch.as_tensor(targets).long()).numpy()

    return explain


# --------------------------------------------------------------------------- helpers
def median_times(
    cases: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, Any], dict[str, float]]:
    """Interleaved repeats; the last result and the median wall time of every case."""
    times: dict[str, list[float]] = {k: [] for k in cases}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return results, {k: statistics.median(v) for k, v in times.items()}


def max_diff(ours: Any, theirs: Any) -> float:
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(theirs, dtype=np.float64)
    if a.shape != b.shape:
        raise RuntimeError(f"shape mismatch {a.shape} vs {b.shape}")
    return float(np.nanmax(np.abs(a - b))) if a.size else float("nan")


def row(name: str, diff: float | None, t_ours: float, t_q: float) -> None:
    d = "   (n/a)" if diff is None else f"{diff:9.2e}"
    print(
        f"  {name:<34} max|diff| {d}   ours {t_ours * 1e3:8.1f} ms   quantus {t_q * 1e3:9.1f} ms   x{t_q / t_ours:6.1f}"
    )


# --------------------------------------------------------------------------- (a) + (b)
def compare(
    quantus: Any,
    label: str,
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    attr: dict[str, Tensor],
    mask: Tensor,
    *,
    step: int,
    patch: int,
    subset: int,
    runs: int,
    repeats: int,
    mprt: bool,
) -> None:
    print(f"\n== {label}: {len(x)} inputs {tuple(x.shape[1:])}, step {step}, patch {patch}")
    xn, yn = x.numpy(), y.numpy()
    # ours gets the same values as channels-last tensors (faster convolutions on the CPU;
    # Quantus converts numpy arrays to contiguous tensors at every step)
    xf = x.contiguous(memory_format=torch.channels_last) if x.shape[1] > 1 else x
    a = attr["input_x_gradient"]
    an = a.numpy()
    # localisation: one relevance per pixel (Quantus needs 1-channel masks and maps)
    sal = attr["saliency"].abs().sum(1, keepdim=True)
    sn, mn = sal.numpy(), mask.numpy().astype(np.float64)
    qkw: dict[str, Any] = {"model": net, "x_batch": xn, "y_batch": yn, "device": "cpu"}
    qkw["batch_size"] = len(x)
    q = quantus
    nw = {"disable_warnings": True}

    # model-free metrics
    simple = [
        (
            "Sparseness",
            lambda: M.sparseness(a),
            q.Sparseness(abs=True, normalise=False, **nw),
            {"a_batch": an},
        ),
        (
            "Complexity",
            lambda: M.complexity(a),
            q.Complexity(abs=True, normalise=False, **nw),
            {"a_batch": an},
        ),
        (
            "PointingGame",
            lambda: M.pointing_game(sal, mask),
            q.PointingGame(abs=True, normalise=False, **nw),
            {"a_batch": sn, "s_batch": mn},
        ),
        (
            "RelevanceMassAccuracy",
            lambda: M.relevance_mass_accuracy(sal, mask),
            q.RelevanceMassAccuracy(abs=True, normalise=False, **nw),
            {"a_batch": sn, "s_batch": mn},
        ),
        (
            "RelevanceRankAccuracy",
            lambda: M.relevance_rank_accuracy(sal, mask),
            q.RelevanceRankAccuracy(abs=True, normalise=False, **nw),
            {"a_batch": sn, "s_batch": mn},
        ),
    ]
    for name, ours_fn, metric, extra in simple:
        cases = {
            "ours": ours_fn,
            "quantus": lambda metric=metric, extra=extra: metric(
                **qkw, **{k: v.copy() for k, v in extra.items()}
            ),
        }
        res, t = median_times(cases, repeats)
        row(name, max_diff(res["ours"].numpy(), res["quantus"]), t["ours"], t["quantus"])

    # faithfulness: deletion curves by feature and by patch, faithfulness correlation
    n_regions = (x.shape[-1] // patch) * (x.shape[-2] // patch)
    pf = q.PixelFlipping(
        features_in_step=step, perturb_baseline=0.0, abs=False, normalise=False, **nw
    )
    rp = q.RegionPerturbation(
        patch_size=patch,
        regions_evaluation=n_regions,
        perturb_baseline=0.0,
        abs=False,
        normalise=False,
        **nw,
    )
    fc = q.FaithfulnessCorrelation(
        nr_runs=runs, subset_size=subset, perturb_baseline=0.0, abs=False, normalise=False, **nw
    )
    cases = {
        "pf_ours": lambda: M.pixel_flipping(net, xf, a, y, features_per_step=step),
        "pf_q": lambda: pf(**qkw, a_batch=an.copy(), softmax=True, channel_first=True),
        "ins_ours": lambda: M.pixel_flipping(
            net, xf, a, y, features_per_step=step, mode="insertion"
        ),
        "rp_ours": lambda: M.region_perturbation(net, xf, a, y, patch_size=patch),
        "rp_q": lambda: rp(**qkw, a_batch=an.copy(), softmax=True, channel_first=True),
        "fc_ours": lambda: M.faithfulness_correlation(
            net, xf, a, y, n_runs=runs, subset_size=subset
        ),
        "fc_q": lambda: fc(**qkw, a_batch=an.copy(), softmax=True, channel_first=True),
    }
    res, t = median_times(cases, repeats)
    ours_pf, q_pf = res["pf_ours"], np.asarray(res["pf_q"])
    row(
        "PixelFlipping (curve)",
        max_diff(ours_pf.curve[:, 1:].numpy(), q_pf),
        t["pf_ours"],
        t["pf_q"],
    )
    row(
        "PixelFlipping (AUC, np.trapz of it)",
        max_diff(
            np.trapezoid(ours_pf.curve[:, 1:].double().numpy(), axis=1), np.trapezoid(q_pf, axis=1)
        ),
        t["pf_ours"],
        t["pf_q"],
    )
    row("  insertion curve (no Quantus twin)", None, t["ins_ours"], t["pf_q"])
    ours_rp = res["rp_ours"].curve
    row(
        "RegionPerturbation (curve)",
        max_diff((ours_rp[:, :1] - ours_rp[:, 1:]).numpy(), np.asarray(res["rp_q"])),
        t["rp_ours"],
        t["rp_q"],
    )
    fc_o, fc_q = res["fc_ours"].numpy(), np.asarray(res["fc_q"], dtype=np.float64)
    row("FaithfulnessCorrelation", None, t["fc_ours"], t["fc_q"])
    print(
        f"    (random subsets differ; mean ours {fc_o.mean():+.3f}, quantus {np.nanmean(fc_q):+.3f})"
    )

    if mprt:
        explain = explainer("saliency")
        metric = q.MPRT(
            layer_order="top_down",
            seed=42,
            similarity_func=q.similarity_func.correlation_spearman,
            abs=True,
            normalise=False,
            **nw,
        )
        cases = {
            "ours": lambda: M.parameter_randomisation(
                net, x, y, explain, seed=43, attributions=attr["saliency"]
            ),
            "quantus": lambda: metric(
                **qkw,
                a_batch=attr["saliency"].numpy().copy(),
                explain_func=quantus_explainer("saliency"),
                softmax=False,
            ),
        }
        res, t = median_times(cases, repeats)
        ours_m, q_m = res["ours"], res["quantus"]
        q_layers = [k for k in q_m if k != "original"]
        if q_layers != ours_m.layers:
            print(f"    layer order differs: ours {ours_m.layers}, quantus {q_layers}")
        diff = max_diff(ours_m.spearman.numpy(), np.stack([q_m[k] for k in q_layers]))
        row("MPRT (Spearman, per layer)", diff, t["ours"], t["quantus"])


# --------------------------------------------------------------------------- (c)
def known_results(net: nn.Module, x: Tensor, y: Tensor, attr: dict[str, Tensor]) -> None:
    print("\n== known results on digits (means over samples)")
    print(
        f"  {'method':<22} {'deletion AUC v':>15} {'insertion AUC ^':>16} {'region AUC v':>13} {'faith. corr ^':>14}"
    )
    table = {}
    for name, a in attr.items():
        table[name] = (
            float(M.pixel_flipping(net, x, a, y).auc.mean()),
            float(M.pixel_flipping(net, x, a, y, mode="insertion").auc.mean()),
            float(M.region_perturbation(net, x, a, y, patch_size=2).auc.mean()),
            float(M.faithfulness_correlation(net, x, a, y, subset_size=16).mean()),
        )
        print(
            f"  {name:<22} {table[name][0]:15.4f} {table[name][1]:16.4f} {table[name][2]:13.4f} {table[name][3]:14.4f}"
        )
    rnd = table.pop("random")
    worst = [
        all(rnd[0] > v[0] for v in table.values()),
        all(rnd[1] < v[1] for v in table.values()),
        all(rnd[2] > v[2] for v in table.values()),
        all(rnd[3] < v[3] for v in table.values()),
    ]
    print(f"  random control worst on deletion/insertion/region/correlation: {worst}")

    print("\n  cascading randomisation (top-down), Spearman of |a| (lower: more model-dependent)")
    results = {}
    for method in ("saliency", "guided_backprop", "integrated_gradients"):
        results[method] = M.parameter_randomisation(net, x, y, explainer(method), seed=43)
    layers = results["saliency"].layers
    print(f"  {'method':<22} {'similarity':<17} " + " ".join(f"{name:>13}" for name in layers))
    for method, r in results.items():
        for sim in ("spearman", "spearman_support", "ssim"):
            values = getattr(r, sim).mean(1).tolist()
            print(f"  {method:<22} {sim:<17} " + " ".join(f"{v:13.3f}" for v in values))
    gbp = results["guided_backprop"].spearman_support.mean(1)
    sal = results["saliency"].spearman_support.mean(1)
    print(f"  guided backprop > saliency on the support at every layer: {bool((gbp > sal).all())}")
    ig = results["integrated_gradients"]
    print(
        "  integrated gradients, fully randomised model: Spearman over all features "
        f"{float(ig.spearman[-1].mean()):.2f} vs over the support {float(ig.spearman_support[-1].mean()):.2f}"
    )


# --------------------------------------------------------------------------- (d)
def pitfalls(quantus: Any, net: nn.Module, x: Tensor, y: Tensor, sal: Tensor) -> None:
    print("\n== Quantus pitfalls in this run")
    a = sal[:4].numpy().copy()
    empty = np.zeros_like(a)
    pg = quantus.PointingGame(disable_warnings=True)(
        model=net,
        x_batch=x[:4].numpy(),
        y_batch=y[:4].numpy(),
        a_batch=a,
        s_batch=empty,
        device="cpu",
    )
    print(
        f"  PointingGame with empty masks: quantus {list(map(float, pg))}; ours raises, or scores 0 with empty_mask='zero'"
    )
    a = sal[:4].numpy().copy()
    before = a.copy()
    quantus.Sparseness(disable_warnings=True)(
        model=net, x_batch=x[:4].numpy(), y_batch=y[:4].numpy(), a_batch=a, device="cpu"
    )
    print(
        f"  Sparseness left the caller's attribution array unchanged: {np.array_equal(a, before)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    quick = args.quick
    repeats = 1 if quick else args.repeats
    quantus = import_quantus()
    print(
        f"quantus {quantus.__version__}, torch {torch.__version__}, numpy {np.__version__}, 1 thread"
    )

    net, x, y = digits(32 if quick else 256, 3 if quick else 10)
    print(f"digits CNN test accuracy {float((net(x).argmax(1) == y).float().mean()):.3f}")
    attr = attributions(net, x, y)
    mask = x > 0.25  # the stroke: a mask known for every digit, (n, 1, 8, 8)
    compare(
        quantus,
        "digits",
        net,
        x,
        y,
        attr,
        mask,
        step=1,
        patch=2,
        subset=16,
        runs=100 if not quick else 20,
        repeats=repeats,
        mprt=True,
    )
    rnet, rx, ry, rmask = rgb(16 if quick else 64, 2 if quick else 4)
    print(f"\nRGB CNN test accuracy {float((rnet(rx).argmax(1) == ry).float().mean()):.3f}")
    rattr = attributions(rnet, rx, ry)
    compare(
        quantus,
        "rgb 3x32x32",
        rnet,
        rx,
        ry,
        rattr,
        rmask,
        step=32,
        patch=4,
        subset=224,
        runs=100 if not quick else 20,
        repeats=repeats,
        mprt=True,
    )
    known_results(net, x, y, attr)
    pitfalls(quantus, net, x, y, attr["saliency"])


if __name__ == "__main__":
    main()
