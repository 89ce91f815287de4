"""Training-data attribution: quality (LDS) and scale, ours next to captum, traker and dattri.

1. **LDS** (linear datamodeling score): 1,000 digits for training and 200 targets, an MLP
   64->128->10 trained with SGD (5 checkpoints), 256 models trained on random halves (a
   batched plain-torch loop: all 256 models step together; the Lightning helper
   ``train_subset_models`` is timed on a few subsets for comparison), a seed-noise ceiling from
   a second set of 256 models with other seeds. Rows: ours (TracIn all parameters / last layer
   / cosine, TRAK-style at its defaults and its time relative to TracIn, ablations), the
   references (traker 0.3.2 with its CPU projector, dattri 0.3.0 TRAK and TracIn, installed
   ``--no-deps``; a reference that fails is a row with its error), and controls (random,
   input cosine).
2. **Scale**: N digit-like images (8x8 digits shifted by up to 1 pixel, with noise), a 151k
   parameter CNN, 3 checkpoints; self-influence of all N plus the top 10 proponents of 100
   queries; each method in its own subprocess (wall time of the work, peak RSS ``VmHWM``),
   1 CPU thread; plus ``top_k`` for 100 new queries over the stored features. Methods: ours
   (all parameters, last layer, sketch-512, dense Gaussian-512, TRAK-style-512, stored
   features + queries, featurisation alone), captum ``TracInCP`` (sample-wise) and
   ``TracInCPFastRandProj`` (last layer, 512), traker's CPU projector (featurisation alone, and
   the whole TRAK at 512). Workers read the digits from a file the parent writes, so their
   peak RSS is the method's own plus torch (about 220 MB), not the ``lightning_xai.data``
   package's imports (Lightning, transformers, sklearn, scipy, pandas: about 245 MB more).

Run: ``nice python benchmarks/data_attribution.py`` (``--quick`` for a smoke run,
``--part lds|scale``, ``--sizes 5000 20000``, ``--device cuda`` for a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_xai.influence import (
    TRAK,
    Checkpoint,
    TracIn,
    correct_class_margins,
    linear_datamodeling_score,
    random_subsets,
)

warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """The digits; a scale worker reads the parent's copy (``XAI_BENCH_DIGITS``) instead of
    importing ``lightning_xai.data``, whose package imports Lightning, transformers, sklearn,
    scipy and pandas: about 245 MB of peak RSS that no method needs (the floor seen before)."""
    cached = os.environ.get("XAI_BENCH_DIGITS")
    if cached:
        return torch.load(cached)
    from lightning_xai.data.digits import load_digits_tensors as load

    return load()


def ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


# ---------------------------------------------------------------------------------- LDS setup
EPOCHS, EVERY, LR, BATCH = 20, 4, 0.05, 32


def lds_data() -> tuple[torch.Tensor, ...]:
    x, y = load_digits_tensors()
    x = x.reshape(len(x), -1)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    train, target = perm[:1000], perm[1000:1200]
    return x[train], y[train], x[target], y[target]


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def train_full(x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> tuple[nn.Module, list]:
    torch.manual_seed(seed)
    net = mlp()
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
    ckpts = []
    for epoch in range(EPOCHS):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
        if (epoch + 1) % EVERY == 0:
            ckpts.append(Checkpoint.from_module(net, LR, epoch=epoch, step=epoch))
    return net, ckpts


def train_subsets(
    x: torch.Tensor,
    y: torch.Tensor,
    xt: torch.Tensor,
    yt: torch.Tensor,
    masks: torch.Tensor,
    seed: int,
) -> torch.Tensor:
    """All subset models at once (stacked weights, one batched step per minibatch)."""
    g = torch.Generator().manual_seed(seed)
    s = len(masks)
    bound1, bound2 = 1 / 64**0.5, 1 / 128**0.5
    w1 = ((torch.rand(s, 64, 128, generator=g) * 2 - 1) * bound1).requires_grad_()
    b1 = ((torch.rand(s, 1, 128, generator=g) * 2 - 1) * bound1).requires_grad_()
    w2 = ((torch.rand(s, 128, 10, generator=g) * 2 - 1) * bound2).requires_grad_()
    b2 = ((torch.rand(s, 1, 10, generator=g) * 2 - 1) * bound2).requires_grad_()
    params = [w1, b1, w2, b2]
    opt = torch.optim.SGD(params, lr=LR, momentum=0.9)
    index = torch.stack([torch.nonzero(m).flatten() for m in masks])  # (S, n)
    n = index.shape[1]

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return torch.relu(inputs @ w1 + b1) @ w2 + b2

    for _ in range(EPOCHS):
        order = torch.argsort(torch.rand(s, n, generator=g), dim=1)
        perm = index.gather(1, order)
        for i in range(0, n, BATCH):
            idx = perm[:, i : i + BATCH]
            out = forward(x[idx])
            loss = F.cross_entropy(out.reshape(-1, 10), y[idx].reshape(-1), reduction="sum")
            opt.zero_grad()
            (loss / idx.shape[1]).backward()
            opt.step()
    with torch.no_grad():
        out = forward(xt.expand(s, *xt.shape))
        return torch.stack([correct_class_margins(o, yt) for o in out])


def lds_part(quick: bool) -> dict[str, Any]:
    torch.set_num_threads(1)
    x, y, xt, yt = lds_data()
    num = 32 if quick else 256
    masks = random_subsets(len(x), num, 0.5, seed=1)
    start = time.perf_counter()
    margins = train_subsets(x, y, xt, yt, masks, seed=10)
    subset_time = time.perf_counter() - start
    margins2 = train_subsets(x, y, xt, yt, masks, seed=20)
    ceiling = linear_datamodeling_score(
        torch.zeros(1, 1), torch.ones(3, 1, dtype=torch.bool), torch.randn(3, 1)
    )
    del ceiling
    from lightning_xai.influence.lds import _ranks

    ra, rb = _ranks(margins), _ranks(margins2)
    ra, rb = ra - ra.mean(0), rb - rb.mean(0)
    noise = float(((ra * rb).sum(0) / (ra.norm(dim=0) * rb.norm(dim=0))).mean())
    net, ckpts = train_full(x, y)
    rows: list[dict[str, Any]] = []

    def score(name: str, fn: Any) -> None:
        start = time.perf_counter()
        try:
            scores = fn()
            elapsed = time.perf_counter() - start
            lds = linear_datamodeling_score(scores, masks, margins).score
            rows.append({"method": name, "lds": round(lds, 3), "time_s": round(elapsed, 2)})
        except Exception as err:  # noqa: BLE001 - a reference failing is a row, not a crash
            rows.append(
                {"method": name, "lds": None, "error": f"{type(err).__name__}: {err}"[:160]}
            )
        print(rows[-1], flush=True)

    train, target = (x, y), (xt, yt)
    opts = dict(show_progress=False)
    score(
        "ours TracIn, all parameters",
        lambda: TracIn(net, ckpts, ce, **opts).influence(target, train).scores,
    )
    score(
        "ours TracIn, last layer",
        lambda: TracIn(net, ckpts, ce, parameters="last", **opts).influence(target, train).scores,
    )
    score(
        "ours TracIn, cosine",
        lambda: TracIn(net, ckpts, ce, normalize=True, **opts).influence(target, train).scores,
    )
    score(
        "ours TRAK-style, defaults (auto: exact gradients here, damping = mean sq. norm)",
        lambda: TRAK(net, ckpts, ce, **opts).influence(target, train).scores,
    )
    trak = TRAK(net, ckpts, ce, **opts)
    trak.fit(train)
    rows[-1]["damping"] = [f"{d:.3g}" for d in trak.damping_]
    rows[-1]["projection_dim"] = trak.projection_dim
    start = time.perf_counter()
    TracIn(net, ckpts, ce, **opts).influence(target, train)
    rows[-1]["time_vs_tracin"] = round(rows[-1]["time_s"] / (time.perf_counter() - start), 2)
    score(
        "ours TRAK-style, final checkpoint only",
        lambda: TRAK(net, ckpts[-1:], ce, **opts).influence(target, train).scores,
    )
    for dim in (512, 2048):
        score(
            f"ours TRAK-style, projection {dim}",
            lambda dim=dim: (
                TRAK(net, ckpts, ce, projection_dim=dim, **opts).influence(target, train).scores
            ),
        )
    score(
        "ours TRAK-style, damping='gcv'",
        lambda: TRAK(net, ckpts, ce, damping="gcv", **opts).influence(target, train).scores,
    )
    score(
        "ours TRAK-style, output='loss'",
        lambda: TRAK(net, ckpts, ce, output="loss", **opts).influence(target, train).scores,
    )
    score(
        "ours TRAK-style, damping=0",
        lambda: TRAK(net, ckpts, ce, damping=0.0, **opts).influence(target, train).scores,
    )
    for factor in (0.1, 0.3, 3.0, 10.0):
        lam = [factor * d for d in trak.damping_]
        score(
            f"(sweep) TRAK-style, damping x{factor:g} of the default",
            lambda lam=lam: _sweep(net, ckpts, lam, train, target),
        )
    g = torch.Generator().manual_seed(0)
    score("control: random", lambda: torch.randn(len(xt), len(x), generator=g))
    score("control: input cosine", lambda: F.normalize(xt, dim=1) @ F.normalize(x, dim=1).T)
    references(rows, net, ckpts, x, y, xt, yt, masks, margins, score)
    return {
        "subset_models": num,
        "subset_training_s": round(subset_time, 1),
        "seed_noise_ceiling": round(noise, 3),
        "rows": rows,
    }


def _sweep(net: nn.Module, ckpts: list, lam: list[float], train: Any, target: Any) -> torch.Tensor:
    total = None
    for c, d in zip(ckpts, lam):
        s = TRAK(net, [c], ce, damping=d, show_progress=False).influence(target, train).scores
        total = s if total is None else total + s
    return total


def references(rows, net, ckpts, x, y, xt, yt, masks, margins, score) -> None:  # noqa: ANN001
    """traker and dattri rows when they import (installed --no-deps in the benchmark extras).

    Same model, checkpoints, training set and targets as ours; each tool at its defaults
    (undamped) and, where it takes one, with our default damping rule for comparison.
    """
    del rows, masks, margins
    import copy

    states = [dict(c.params) for c in ckpts]

    def traker_scores(proj_dim: int, lambda_reg: float = 0.0) -> torch.Tensor:
        from trak import TRAKer
        from trak.projectors import BasicProjector, ProjectionType

        model = copy.deepcopy(net)
        size = sum(p.numel() for p in model.parameters())
        with tempfile.TemporaryDirectory() as save_dir:
            projector = BasicProjector(size, proj_dim, 0, ProjectionType.rademacher, "cpu")
            traker = TRAKer(
                model=model,
                task="image_classification",
                train_set_size=len(x),
                save_dir=save_dir,
                device="cpu",
                projector=projector,
                proj_dim=proj_dim,
                use_half_precision=False,
                lambda_reg=lambda_reg,
            )
            for i, state in enumerate(states):
                traker.load_checkpoint(state, model_id=i)
                for j in range(0, len(x), 100):
                    traker.featurize(
                        (x[j : j + 100], y[j : j + 100]), num_samples=len(x[j : j + 100])
                    )
            traker.finalize_features()
            for i, state in enumerate(states):
                traker.start_scoring_checkpoint("lds", state, model_id=i, num_targets=len(xt))
                traker.score((xt, yt), num_samples=len(xt))
            out = traker.finalize_scores("lds")
            return torch.as_tensor(out).float().T.contiguous()

    def dattri_scores(kind: str, proj_dim: int = 512, regularization: float = 0.0) -> torch.Tensor:
        from dattri.task import AttributionTask
        from torch.utils.data import DataLoader, TensorDataset

        model = copy.deepcopy(net)

        def loss_func(params, data):  # noqa: ANN001, ANN202
            image, label = data
            out = torch.func.functional_call(model, params, image.unsqueeze(0))
            return F.cross_entropy(out, label.unsqueeze(0))

        task = AttributionTask(loss_func=loss_func, model=model, checkpoints=states)
        train_loader = DataLoader(TensorDataset(x, y), batch_size=100, shuffle=False)
        test_loader = DataLoader(TensorDataset(xt, yt), batch_size=100, shuffle=False)
        if kind == "trak":
            from dattri.algorithm.trak import TRAKAttributor

            def prob(params, data):  # noqa: ANN001, ANN202
                image, label = data
                out = torch.func.functional_call(model, params, image.unsqueeze(0))
                return torch.exp(-F.cross_entropy(out, label.unsqueeze(0)))

            attributor = TRAKAttributor(
                task=task,
                correct_probability_func=prob,
                projector_kwargs={"proj_dim": proj_dim, "device": "cpu"},
                device="cpu",
                regularization=regularization,
            )
            attributor.cache(train_loader)
            out = attributor.attribute(test_loader)
        else:
            from dattri.algorithm.tracin import TracInAttributor

            attributor = TracInAttributor(
                task=task, weight_list=torch.full((len(states),), LR), normalized_grad=False
            )
            out = attributor.attribute(train_loader, test_loader)
        return torch.as_tensor(out).float().T.contiguous()

    score("traker 0.3.2 TRAK, CPU projector 512, defaults (lambda 0)", lambda: traker_scores(512))
    score("traker 0.3.2 TRAK, CPU projector 2048, lambda 0", lambda: traker_scores(2048))
    score("dattri 0.3.0 TRAK, 512, defaults (regularization 0)", lambda: dattri_scores("trak"))
    score("dattri 0.3.0 TracIn", lambda: dattri_scores("tracin"))


# ---------------------------------------------------------------------------------- scale
def cnn() -> nn.Module:
    """151k parameters: two 3x3 convolutions, a 4096->32 and a 32->10 layer."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4096, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def shifted_digits(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` digit-like images: digits shifted by up to one pixel, with Gaussian noise."""
    x, y = load_digits_tensors()
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, len(x), (n,), generator=g)
    out = x[pick].clone()
    shifts = torch.randint(-1, 2, (n, 2), generator=g)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            rows = (shifts[:, 0] == dx) & (shifts[:, 1] == dy)
            out[rows] = torch.roll(out[rows], shifts=(dx, dy), dims=(2, 3))
    return (out + 0.1 * torch.randn(out.shape, generator=g)).float(), y[pick]


def scale_checkpoints(directory: str) -> None:
    from lightning_xai.influence import CheckpointStore

    torch.manual_seed(0)
    x, y = shifted_digits(2000, seed=1)
    net = cnn()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    store = CheckpointStore(directory)
    for epoch in range(3):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            F.cross_entropy(net(x[i : i + 64]), y[i : i + 64]).backward()
            opt.step()
        store.save(Checkpoint.from_module(net, 0.05, epoch=epoch, step=epoch))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scale_worker(method: str, n: int, store_dir: str, device: str) -> dict[str, Any]:
    """One method in this process: self-influence of all N plus the top 10 of 100 queries."""
    torch.set_num_threads(1)
    x, y = shifted_digits(n)
    qx, qy = shifted_digits(100, seed=7)
    net = cnn().to(device)
    train, queries = (x.to(device), y.to(device)), (qx.to(device), qy.to(device))
    opts: dict[str, Any] = dict(show_progress=False, device=device)
    extra: dict[str, Any] = {}
    start = time.perf_counter()
    if method in ("ours_all", "ours_last", "ours_proj512", "ours_proj512_gaussian"):
        kw = {
            "ours_all": {},
            "ours_last": {"parameters": "last"},
            "ours_proj512": {"projection_dim": 512},
            "ours_proj512_gaussian": {"projection_dim": 512, "projection": "gaussian"},
        }[method]
        tracin = TracIn(net, store_dir, ce, **kw, **opts)
        tracin.self_influence(train)
        tracin.top_k(queries, train, k=10)
    elif method == "ours_features_query":
        tracin = TracIn(net, store_dir, ce, projection_dim=512, **opts)
        feats = tracin.features(train, store=Path(store_dir) / "features")
        tracin.self_influence(feats)
        extra["featurise_s"] = round(time.perf_counter() - start, 2)
        q2 = shifted_digits(100, seed=8)
        t0 = time.perf_counter()
        tracin.top_k((q2[0].to(device), q2[1].to(device)), feats, k=10)
        extra["top_k_100_new_queries_s"] = round(time.perf_counter() - t0, 3)
        reread = TracIn(net, store_dir, ce, projection_dim=512, **opts)
        t0 = time.perf_counter()
        again = reread.features(train, store=Path(store_dir) / "features")
        reread.top_k((q2[0].to(device), q2[1].to(device)), again, k=10)
        extra["stored_reload_plus_top_k_s"] = round(time.perf_counter() - t0, 3)
    elif method == "ours_trak":
        trak = TRAK(net, store_dir, ce, projection_dim=512, **opts)
        trak.self_influence(train)
        trak.top_k(queries, train, k=10)
    elif method in ("captum_tracincp", "captum_fastrandproj_512"):
        from captum.influence import TracInCP, TracInCPFastRandProj
        from torch.utils.data import TensorDataset

        from lightning_xai.influence.checkpoints import CheckpointStore

        paths = []
        for c, ckpt in enumerate(CheckpointStore(store_dir)):
            path = Path(store_dir) / f"captum_{os.getpid()}_{c}.pt"
            torch.save({"state": {**ckpt.params, **ckpt.buffers}, "lr": ckpt.lr}, path)
            paths.append(str(path))

        def load(model: nn.Module, path: str) -> float:
            saved = torch.load(path)
            model.load_state_dict(saved["state"])
            return float(saved["lr"])

        dataset = TensorDataset(*train)
        if method == "captum_tracincp":
            captum = TracInCP(
                net,
                dataset,
                paths,
                checkpoints_load_func=load,
                loss_fn=nn.CrossEntropyLoss(reduction="sum"),
                batch_size=256,
                sample_wise_grads_per_batch=True,
            )
        else:
            from captum.influence._utils.nearest_neighbors import NearestNeighbors

            class ExactDotProduct(NearestNeighbors):
                """Largest dot products by brute force (captum's default needs ``annoy``)."""

                def setup(self, data: torch.Tensor) -> None:
                    self.data = data.reshape(len(data), -1)

                def get_nearest_neighbors(
                    self, query: torch.Tensor, k: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
                    top = (query.reshape(len(query), -1) @ self.data.T).topk(k, dim=1)
                    return top.indices, top.values

            captum = TracInCPFastRandProj(
                net,
                net[7],
                dataset,
                paths,
                checkpoints_load_func=load,
                loss_fn=nn.CrossEntropyLoss(reduction="sum"),
                batch_size=256,
                nearest_neighbors=ExactDotProduct(),
                projection_dim=512,
            )
        if method == "captum_tracincp":
            captum.self_influence(show_progress=False)
            captum.influence(queries, k=10, proponents=True, show_progress=False)
        else:  # with a projection FastRandProj's self_influence raises NotImplementedError
            extra["note"] = "top-k only: captum has no self-influence with a projection"
            captum.influence(queries, k=10, proponents=True)
        for path in paths:
            os.remove(path)
    elif method == "traker_cpu_512":
        from trak import TRAKer
        from trak.projectors import BasicProjector, ProjectionType

        from lightning_xai.influence.checkpoints import CheckpointStore

        states = [dict(c.params) for c in CheckpointStore(store_dir)]
        size = sum(p.numel() for p in net.parameters())
        with tempfile.TemporaryDirectory() as save_dir:
            traker = TRAKer(
                model=net,
                task="image_classification",
                train_set_size=n,
                save_dir=save_dir,
                device=device,
                projector=BasicProjector(size, 512, 0, ProjectionType.rademacher, device),
                proj_dim=512,
                use_half_precision=False,
            )
            for i, state in enumerate(states):
                traker.load_checkpoint(state, model_id=i)
                for j in range(0, n, 256):
                    part = (train[0][j : j + 256], train[1][j : j + 256])
                    traker.featurize(part, num_samples=len(part[0]))
            traker.finalize_features()
            for i, state in enumerate(states):
                traker.start_scoring_checkpoint("q", state, model_id=i, num_targets=100)
                traker.score(queries, num_samples=100)
            scores = torch.as_tensor(traker.finalize_scores("q")).T
            scores.topk(10, dim=1)
    elif method == "featurise_sketch":
        TracIn(net, store_dir, ce, projection_dim=512, **opts).features(train)
    elif method == "featurise_traker_cpu_projector":
        from trak.projectors import BasicProjector, ProjectionType

        from lightning_xai.influence import per_sample_grads
        from lightning_xai.influence.checkpoints import CheckpointStore

        store = CheckpointStore(store_dir)
        size = sum(p.numel() for p in net.parameters())
        proj = BasicProjector(size, 512, 0, ProjectionType.rademacher, torch.device(device))
        for c, ckpt in enumerate(store):
            values = {k: v.to(device) for k, v in {**ckpt.params, **ckpt.buffers}.items()}
            for i in range(0, n, 256):
                g = per_sample_grads(
                    net, (train[0][i : i + 256], train[1][i : i + 256]), ce, values=values
                )
                proj.project(g, model_id=c)
    else:
        raise ValueError(method)
    elapsed = time.perf_counter() - start
    return {
        "method": method,
        "n": n,
        "time_s": round(elapsed, 2),
        "peak_rss_mb": round(_peak_mb()),
        **extra,
    }


SCALE_METHODS = [
    "ours_all",
    "ours_last",
    "ours_proj512",
    "ours_proj512_gaussian",
    "ours_trak",
    "ours_features_query",
    "featurise_sketch",
    "featurise_traker_cpu_projector",
    "captum_tracincp",
    "captum_fastrandproj_512",
    "traker_cpu_512",
]


def scale_part(sizes: list[int], device: str, methods: list[str]) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as store_dir:
        scale_checkpoints(store_dir)
        digits = str(Path(store_dir) / "digits.pt")
        torch.save(load_digits_tensors(), digits)
        for n in sizes:
            for method in methods:
                if method == "ours_proj512_gaussian" and n > 5000:
                    rows.append(
                        {
                            "method": method,
                            "n": n,
                            "skipped": "slow on 2 CPU cores: linear in N, see N=5000",
                        }
                    )
                    continue
                env = {
                    **os.environ,
                    "OMP_NUM_THREADS": "1",
                    "MALLOC_MMAP_THRESHOLD_": "65536",
                    "XAI_BENCH_DIGITS": digits,
                }
                cmd = [sys.executable, __file__, "--worker", method, str(n), store_dir, device]
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
                if done.returncode != 0:
                    rows.append({"method": method, "n": n, "error": done.stderr.strip()[-300:]})
                else:
                    rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(rows[-1], flush=True)
    return rows


# ---------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--part", choices=["lds", "scale", "all"], default="all")
    parser.add_argument("--out", default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--methods", nargs="+", default=SCALE_METHODS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, n, store_dir, device = args.worker
        print(json.dumps(scale_worker(method, int(n), store_dir, device)))
        return
    results: dict[str, Any] = {}
    if args.part in ("lds", "all"):
        results["lds"] = lds_part(args.quick)
    if args.part in ("scale", "all"):
        sizes = [500] if args.quick else args.sizes
        results["scale"] = scale_part(sizes, args.device, args.methods)
    print(json.dumps(results, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
