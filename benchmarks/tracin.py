"""TracIn: lightning-xai vs captum 0.9, on the same checkpoints, in one run.

For a 9.6k-parameter MLP and the DigitsCNN (38k parameters), both trained with SGD on 1000
digits with 10% flipped labels until they memorise them (5 checkpoints each):

1. speed (best of 3; captum's default: once) and agreement of self-influence (1000 training
   examples) and influence (100 test x 1000 training examples) with captum's ``TracInCP``
   (default per-example loop, and
   ``sample_wise_grads_per_batch=True``) on all parameters, and ``TracInCPFast`` on the last
   layer's weight (ours restricted to the same weight). "max rel diff" is
   ``max |ours - captum| / max |captum|``;
2. mislabel recall when checking the top 10% / 20% of the training set, ranked by TracIn
   self-influence, by the final model's loss, and at random;
3. peak memory of self-influence against the dataset size N and the chunk size, each in a fresh
   process (growth of the peak RSS, ``VmHWM`` reset before the call; Linux; glibc hands large
   freed blocks back at once with ``MALLOC_MMAP_THRESHOLD_=65536``, so that allocator
   fragmentation does not pose as growth).

Run: ``python benchmarks/tracin.py`` (about 5-10 minutes on 1 CPU thread; ``--quick`` for a
smoke run). Captum's default on the CNN is time-bound: it runs on 2 subsets of the training set
and is extrapolated linearly to 1000 (reported as such).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _timing import timed  # noqa: E402  (sibling module of this script)
from torch import nn
from torch.utils.data import TensorDataset

from lightning_xai.data.digits import flip_labels, load_digits_tensors
from lightning_xai.influence import Checkpoint, CheckpointStore, SelfInfluenceResult, TracIn
from lightning_xai.nn import MLP, DigitsCNN

warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")


def ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


def data(n_train: int = 1000, n_test: int = 100, flip: float = 0.1) -> tuple[torch.Tensor, ...]:
    x, y = load_digits_tensors()
    noisy, flipped = flip_labels(y[:n_train], flip, 10, seed=0)
    return x[:n_train], noisy, flipped, x[n_train : n_train + n_test], y[n_train : n_train + n_test]


def train(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    every: int,
    lr: float,
    store: CheckpointStore,
) -> None:
    torch.manual_seed(0)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    for epoch in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            idx = perm[i : i + 32]
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
        if (epoch + 1) % every == 0:
            store.save(Checkpoint.from_module(net, lr, epoch=epoch, step=epoch))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def extrapolate(m1: int, t1: float, m2: int, t2: float, n: int) -> float:
    """Linear fit through two timed subset sizes; proportional to the larger one if the fit is noisy."""
    slope = (t2 - t1) / (m2 - m1)
    return t1 + (n - m1) * slope if slope > 0 else t2 * n / m2


def captum_variants(
    net: nn.Module, store: CheckpointStore, train_set: TensorDataset, last: nn.Linear
) -> dict[str, Callable]:
    from captum.influence import TracInCP, TracInCPFast

    paths = [str(store.dirpath / e.file) for e in store.entries]

    def load(model: nn.Module, path: str) -> float:
        ckpt = torch.load(path, weights_only=True)
        model.load_state_dict({**ckpt["params"], **ckpt["buffers"]}, strict=False)
        return ckpt["lr"]

    common: dict[str, Any] = dict(checkpoints_load_func=load, batch_size=64)
    per_example = dict(loss_fn=nn.CrossEntropyLoss(reduction="none"), **common)
    summed = dict(loss_fn=nn.CrossEntropyLoss(reduction="sum"), **common)
    return {
        "TracInCP default": lambda ds: TracInCP(net, ds, paths, **per_example),
        "TracInCP sample_wise": lambda ds: TracInCP(
            net, ds, paths, sample_wise_grads_per_batch=True, **summed
        ),
        "TracInCPFast (last W)": lambda ds: TracInCPFast(net, last, ds, paths, **summed),
    }


def speed(
    name: str,
    net: nn.Module,
    last_weight: str,
    last: nn.Linear,
    store: CheckpointStore,
    x,
    y,
    xt,
    yt,
    quick: bool,
) -> None:
    n = len(x)
    train_set = TensorDataset(x, y)
    ours_all = TracIn(net, store, ce, batch_size=256, show_progress=False)
    ours_last = TracIn(net, store, ce, parameters=last_weight, batch_size=256, show_progress=False)
    repeat = 1 if quick else 3
    ours = {
        "all": (
            timed(lambda: ours_all.self_influence((x, y)).scores, repeat),
            timed(lambda: ours_all.influence((xt, yt), (x, y)).scores, repeat),
        ),
        "last": (
            timed(lambda: ours_last.self_influence((x, y)).scores, repeat),
            timed(lambda: ours_last.influence((xt, yt), (x, y)).scores, repeat),
        ),
    }
    print(
        f"\n== {name}: {sum(p.numel() for p in net.parameters())} parameters, {len(store)} checkpoints, "
        f"self-influence on {n}, influence {len(xt)} x {n} =="
    )
    print(
        f"{'method':28s} {'self s':>8s} {'ratio':>7s} {'rel diff':>9s} | {'influence s':>11s} {'ratio':>7s} {'rel diff':>9s}"
    )
    for params in ("all", "last"):
        (s, ts), (inf, ti) = ours[params]
        label = "lightning-xai TracIn" + (" (all)" if params == "all" else " (last W)")
        print(f"{label:28s} {ts:8.3f} {'1.0':>7s} {'-':>9s} | {ti:11.3f} {'1.0':>7s} {'-':>9s}")
    for label, make in captum_variants(net, store, train_set, last).items():
        params = "last" if "Fast" in label else "all"
        (s_ours, ts_ours), (inf_ours, ti_ours) = ours[params]
        bound = label == "TracInCP default" and name == "CNN"
        if bound:  # time-bound: two subsets, linear extrapolation to n
            sizes = (100, 200) if not quick else (20, 40)
            runs = []
            for m in sizes:
                sub = TensorDataset(x[:m], y[:m])
                si, t1 = timed(
                    lambda sub=sub, make=make: make(sub).self_influence(show_progress=False)
                )
                ii, t2 = timed(lambda sub=sub, make=make: make(sub).influence((xt, yt)))
                runs.append((m, si, t1, ii, t2))
            (m1, _, a1, _, b1), (m2, si, a2, ii, b2) = runs
            ts, ti = extrapolate(m1, a1, m2, a2, n), extrapolate(m1, b1, m2, b2, n)
            d_self, d_inf = rel(s_ours[:m2], si), rel(inf_ours[:, :m2], ii)
            label += f" ~{m1}/{m2}->{n}"
        else:
            runs = 1 if label == "TracInCP default" else repeat  # same repeats as ours
            si, ts = timed(
                lambda make=make: make(train_set).self_influence(show_progress=False), runs
            )
            ii, ti = timed(lambda make=make: make(train_set).influence((xt, yt)), runs)
            d_self, d_inf = rel(s_ours, si), rel(inf_ours, ii)
        print(
            f"{label:28s} {ts:8.3f} {ts / ts_ours:6.1f}x {d_self:9.1e} | {ti:11.3f} {ti / ti_ours:6.1f}x {d_inf:9.1e}"
        )


def recall(name: str, net: nn.Module, store: CheckpointStore, x, y, flipped) -> None:
    scores = TracIn(net, store, ce, show_progress=False).self_influence((x, y))
    with torch.no_grad():
        losses = SelfInfluenceResult(ce(net.eval()(x), y))
        accuracy = float((net(x).argmax(1) == y).float().mean())
    random = SelfInfluenceResult(torch.rand(len(x), generator=torch.Generator().manual_seed(0)))
    print(
        f"\n== mislabel recall, {name}: {int(flipped.sum())}/{len(x)} labels flipped, "
        f"train accuracy on the noisy labels {accuracy:.3f} (memorised: {accuracy == 1.0}) =="
    )
    print(f"{'ranking':24s} {'recall@10%':>10s} {'recall@20%':>10s}")
    for label, result in (
        ("TracIn self-influence", scores),
        ("final loss", losses),
        ("random", random),
    ):
        print(
            f"{label:24s} {result.recall(flipped, 0.1):10.3f} {result.recall(flipped, 0.2):10.3f}"
        )


def memory_worker(n: int, batch_size: int, method: str, store_dir: str) -> None:
    torch.set_num_threads(1)
    x, y = load_digits_tensors()
    reps = -(-n // len(x))
    x, y = x.repeat(reps, 1, 1, 1)[:n], y.repeat(reps)[:n]
    net = DigitsCNN()
    tracin = TracIn(net, store_dir, ce, batch_size=batch_size, method=method, show_progress=False)
    tracin.self_influence((x[:8], y[:8]))  # warm up allocator and kernels
    before = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    tracin.self_influence((x, y))
    print(json.dumps({"growth_mib": (_rss_kib("VmHWM") - before) / 1024}))


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def memory(store_dir: str, quick: bool) -> None:
    sizes = (1000, 4000) if quick else (1000, 4000, 16000)
    chunks = (64, 512)
    params = sum(p.numel() for p in DigitsCNN().parameters())
    print(
        f"\n== peak memory of self-influence, DigitsCNN ({params} parameters), growth of peak RSS in MiB =="
    )
    print(
        f"{'N':>6s} {'N x P fp32':>11s} "
        + " ".join(f"{f'{m} chunk={c}':>15s}" for m in ("auto", "vmap") for c in chunks)
    )
    for n in sizes:
        cells = []
        for method in ("auto", "vmap"):
            for chunk in chunks:
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--memory-worker",
                        str(n),
                        str(chunk),
                        method,
                        store_dir,
                    ],
                    env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                cells.append(json.loads(out.stdout.strip().splitlines()[-1])["growth_mib"])
        print(f"{n:6d} {n * params * 4 / 2**20:11.0f} " + " ".join(f"{c:15.1f}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer epochs and repeats: a smoke run"
    )
    parser.add_argument("--memory-worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker:
        n, chunk, method, store_dir = args.memory_worker
        memory_worker(int(n), int(chunk), method, store_dir)
        return
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; captum {__import__('captum').__version__}")
    x, y, flipped, xt, yt = data()
    root = Path(tempfile.mkdtemp(prefix="tracin_bench_"))
    epochs = {"MLP": 100, "CNN": 60} if not args.quick else {"MLP": 10, "CNN": 5}
    models = {
        "MLP": (lambda: MLP(64, (128,), 10), 0.1, "net.3.weight", lambda m: m.net[3]),
        "CNN": (DigitsCNN, 0.05, "classifier.3.weight", lambda m: m.classifier[3]),
    }
    for name, (build, lr, last_weight, last) in models.items():
        torch.manual_seed(0)
        net = build()
        store = CheckpointStore(root / name)
        start = time.perf_counter()
        train(net, x, y, epochs[name], epochs[name] // 5, lr, store)
        print(f"\n{name}: trained {epochs[name]} epochs in {time.perf_counter() - start:.1f} s")
        speed(name, net, last_weight, last(net), store, x, y, xt, yt, args.quick)
        recall(name, net, store, x, y, flipped)
    memory(str(root / "CNN"), args.quick)


if __name__ == "__main__":
    main()
