"""Attributions: agreement with captum, callback overhead, label-free speed and correctness.

In one run:

(a) our attributions against captum called directly on the same 64 test digits, with the same
    targets, baselines and seeds, for a trained DigitsCNN: max absolute difference per method
    (label-free integrated gradients is compared with captum on a hand-written
    ``<f(x), f(x0)>`` function);
(b) fit time of the quickstart (DigitsCNN classifier on DigitsDataModule, 10 epochs, batch 64,
    TensorBoard logger, default checkpointing) without and with ``AttributionLogger()`` at its
    defaults, interleaved, medians of wall-clock and process CPU time (CPU time is less
    disturbed by other processes); plus the CPU time spent inside the callback in the same runs;
(c) label-free attribution of an autoencoder's encoder (16-dim latent) on 512 digits in
    batches of 64, ours vs lfxai 0.1.1's ``attribute_auxiliary``: throughput (medians of
    interleaved repeats) and correctness against a per-example loop (batch size 1, where no
    pairing can go wrong).

Run: ``python benchmarks/attribution.py`` (needs ``make bench-deps`` for lfxai; about 5-10
minutes on 1 CPU thread; ``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from captum import attr as ca
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_xai.attribution import Attributor
from lightning_xai.callbacks import AttributionLogger
from lightning_xai.data import DigitsDataModule
from lightning_xai.data.digits import load_digits_tensors
from lightning_xai.modules import Classifier
from lightning_xai.nn import DigitsCNN
from lightning_xai.nn.autoencoders import DigitsDecoder, DigitsEncoder

warnings.filterwarnings("ignore")


def seed(value: int = 0) -> None:
    torch.manual_seed(value)
    np.random.seed(value)


# --------------------------------------------------------------------------- (a)
def train_cnn(x: torch.Tensor, y: torch.Tensor, epochs: int = 10) -> nn.Module:
    seed()
    net = DigitsCNN(10)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def agreement(net: nn.Module, x: torch.Tensor) -> None:
    target = net(x).argmax(1)
    zeros = torch.zeros(1, 1, 8, 8)
    window = {"sliding_window_shapes": (1, 2, 2), "strides": (1, 1, 1)}
    cases: list[tuple[str, dict[str, Any], Callable[[], torch.Tensor]]] = [
        ("saliency", {}, lambda: ca.Saliency(net).attribute(x, target=target)),
        ("input_x_gradient", {}, lambda: ca.InputXGradient(net).attribute(x, target=target)),
        (
            "integrated_gradients",
            {},
            lambda: ca.IntegratedGradients(net).attribute(x, zeros, target=target),
        ),
        ("deeplift", {}, lambda: ca.DeepLift(net).attribute(x, zeros, target=target)),
        ("guided_backprop", {}, lambda: ca.GuidedBackprop(net).attribute(x, target=target)),
        (
            "gradient_shap",
            {},
            lambda: ca.GradientShap(net).attribute(x, zeros, target=target),
        ),
        (
            "occlusion",
            {"method_kwargs": window},
            lambda: ca.Occlusion(net).attribute(x, baselines=zeros, target=target, **window),
        ),
        (
            "feature_ablation",
            {},
            lambda: ca.FeatureAblation(net).attribute(x, baselines=zeros, target=target),
        ),
        (
            "layer_grad_cam",
            {"layer": "features.2"},
            lambda: ca.LayerGradCam(net, net.features[2]).attribute(x, target=target),
        ),
        (
            "layer_conductance",
            {"layer": "features.2"},
            lambda: ca.LayerConductance(net, net.features[2]).attribute(x, zeros, target=target),
        ),
        (
            "layer_integrated_gradients",
            {"layer": "features.2"},
            lambda: ca.LayerIntegratedGradients(net, net.features[2]).attribute(
                x, zeros, target=target
            ),
        ),
        (
            "saliency",
            {"noise_tunnel": "smoothgrad", "nt_samples": 8, "nt_stdevs": 0.1},
            lambda: ca.NoiseTunnel(ca.Saliency(net)).attribute(
                x, nt_type="smoothgrad", nt_samples=8, stdevs=0.1, target=target
            ),
        ),
    ]
    print("(a) ours vs captum called directly, 64 test digits, trained DigitsCNN")
    print(f"    {'method':<34}{'max |ours - captum|':>22}{'max |captum|':>15}")
    for name, kwargs, direct in cases:
        seed(1)
        theirs = direct().detach()
        seed(1)
        ours = Attributor(net, name, completeness_threshold=None, **kwargs).attribute(x)
        label = f"{kwargs['noise_tunnel']}({name})" if "noise_tunnel" in kwargs else name
        diff = (ours.attributions - theirs).abs().max().item()
        print(f"    {label:<34}{diff:>22.3e}{theirs.abs().max().item():>15.3e}")

    encoder = nn.Sequential(*list(net.features), nn.Flatten())  # a 512-d feature map as latent
    refs = encoder(x).detach()

    def inner(inputs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return (encoder(inputs) * z).sum(1)

    theirs = ca.IntegratedGradients(inner).attribute(x, zeros, additional_forward_args=(refs,))
    ours = Attributor(encoder, "integrated_gradients", label_free=True).attribute(x)
    diff = (ours.attributions - theirs.detach()).abs().max().item()
    print(
        f"    {'label-free integrated_gradients':<34}{diff:>22.3e}{theirs.abs().max().item():>15.3e}"
    )


# --------------------------------------------------------------------------- (b)
class TimedAttributionLogger(AttributionLogger):
    """AttributionLogger at its defaults that also records the CPU time spent in its hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu_seconds = 0.0

    def run(self, *args: Any, **kwargs: Any) -> None:
        start = time.process_time()
        super().run(*args, **kwargs)
        self.cpu_seconds += time.process_time() - start


def quickstart_fit(with_callback: bool) -> tuple[float, float, float]:
    """Wall-clock and process CPU seconds of one quickstart fit, and CPU seconds in the callback."""
    pl.seed_everything(0, verbose=False)
    callbacks = [TimedAttributionLogger()] if with_callback else []
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(
            max_epochs=10,
            accelerator="cpu",
            devices=1,
            log_every_n_steps=5,
            logger=TensorBoardLogger(root, name="quickstart"),
            callbacks=callbacks,
            default_root_dir=root,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        model = Classifier(DigitsCNN(10), num_classes=10, lr=0.003)
        data = DigitsDataModule(batch_size=64, seed=0)
        wall, cpu = time.perf_counter(), time.process_time()
        trainer.fit(model, datamodule=data)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, (callbacks[0].cpu_seconds if callbacks else 0.0)


def overhead(repeats: int) -> None:
    quickstart_fit(False)  # warm-up: imports, dataset cache
    runs: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
    for r in range(repeats):
        for with_callback in (False, True) if r % 2 == 0 else (True, False):
            runs[with_callback].append(quickstart_fit(with_callback))
    med = {k: [statistics.median(col) for col in zip(*v)] for k, v in runs.items()}
    share = statistics.median(cb / cpu for _, cpu, cb in runs[True])
    print(f"\n(b) quickstart fit (10 epochs), {repeats} interleaved runs each, medians")
    print(f"    {'':<30}{'wall s':>9}{'CPU s':>9}")
    print(f"    {'without callback':<30}{med[False][0]:>9.2f}{med[False][1]:>9.2f}")
    print(f"    {'with AttributionLogger()':<30}{med[True][0]:>9.2f}{med[True][1]:>9.2f}")
    print(
        f"    {'overhead':<30}{100 * (med[True][0] / med[False][0] - 1):>8.1f}%"
        f"{100 * (med[True][1] / med[False][1] - 1):>8.1f}%"
    )
    print(
        f"    CPU time inside the callback: {100 * share:.1f}% of its fit (defaults: integrated "
        "gradients, n_steps=8, 16 samples, every 5 epochs, grid + scalars + .pt)"
    )


# --------------------------------------------------------------------------- (c)
def train_encoder(x: torch.Tensor, epochs: int = 10) -> nn.Module:
    seed()
    encoder, decoder = DigitsEncoder(16), DigitsDecoder(16)
    params = list(encoder.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(decoder(encoder(x[idx])), x[idx]).backward()
            opt.step()
    return encoder.eval()


def ours_label_free(
    encoder: nn.Module, method: str, **kwargs: Any
) -> Callable[[DataLoader], torch.Tensor]:
    attributor = Attributor(encoder, method, label_free=True, completeness_threshold=None, **kwargs)
    return lambda loader: torch.cat([attributor.attribute(xb).attributions for xb, _ in loader])


def lfxai_label_free(
    encoder: nn.Module, method: str, **kwargs: Any
) -> Callable[[DataLoader], torch.Tensor]:
    from lfxai.explanations.features import attribute_auxiliary

    cls = {"integrated_gradients": ca.IntegratedGradients, "gradient_shap": ca.GradientShap}[method]
    n_samples = kwargs.get("method_kwargs", {}).get("n_samples")

    def run(loader: DataLoader) -> torch.Tensor:
        explainer = cls(encoder)
        if n_samples is not None:  # attribute_auxiliary passes no arguments: bind them
            original = explainer.attribute
            explainer.attribute = lambda *a, **k: original(*a, n_samples=n_samples, **k)
        out = attribute_auxiliary(
            encoder, loader, torch.device("cpu"), explainer, torch.zeros(1, 1, 8, 8)
        )
        return torch.as_tensor(out)

    return run


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def label_free(x: torch.Tensor, repeats: int, n_correct: int) -> None:
    encoder = train_encoder(x)
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=64)
    print(f"\n(c) label-free attribution, trained DigitsEncoder (16-d latent), {len(x)} digits")
    print(f"    throughput, batches of 64, medians of {repeats} interleaved repeats")
    for method in ("integrated_gradients", "gradient_shap"):
        fns = {"ours": ours_label_free(encoder, method), "lfxai": lfxai_label_free(encoder, method)}
        times: dict[str, list[float]] = {k: [] for k in fns}
        for r in range(repeats):
            for name in list(fns) if r % 2 == 0 else list(fns)[::-1]:
                start = time.perf_counter()
                fns[name](loader)
                times[name].append(time.perf_counter() - start)
        rates = {k: len(x) / statistics.median(v) for k, v in times.items()}
        print(
            f"    {method:<22} ours {rates['ours']:8.0f} ex/s   lfxai {rates['lfxai']:8.0f} ex/s"
            f"   ratio {rates['ours'] / rates['lfxai']:.2f}x"
        )

    sub = x[:n_correct]
    batched = DataLoader(TensorDataset(sub, torch.zeros(len(sub))), batch_size=16)
    single = DataLoader(TensorDataset(sub, torch.zeros(len(sub))), batch_size=1)
    print(
        f"    correctness on {len(sub)} digits: ||batched - per-example|| / ||per-example||, "
        "per-example = batch size 1"
    )
    # GradientShap is random: with many samples, a correct batched result converges to the
    # per-example one; the noise floor is two per-example runs with different seeds.
    configs = [
        ("integrated_gradients", {}, "deterministic"),
        ("gradient_shap", {"method_kwargs": {"n_samples": 200}}, "n_samples=200"),
    ]
    for method, kwargs, note in configs:
        row = []
        for name, make in (("ours", ours_label_free), ("lfxai", lfxai_label_free)):
            fn = make(encoder, method, **kwargs)
            seed(1)
            reference = fn(single)
            seed(2)
            row.append(f"{name} {relative(fn(batched), reference):.4f}")
            if name == "ours" and method == "gradient_shap":
                seed(3)
                row.append(f"noise floor {relative(fn(single), reference):.4f}")
        print(f"    {method + ' (' + note + ')':<40}" + "   ".join(row))
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 16))  # gradient independent of x: exact
    row = []
    for name, make in (("ours", ours_label_free), ("lfxai", lfxai_label_free)):
        fn = make(linear, "gradient_shap")
        row.append(f"{name} {relative(fn(batched), fn(single)):.2e}")
    print(f"    {'gradient_shap (linear encoder, exact)':<40}" + "   ".join(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--repeats", type=int, default=15, help="fits per setting in (b)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parts", default="abc", help="which parts to run, e.g. 'b'")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y = load_digits_tensors()
    if "a" in args.parts:
        net = train_cnn(x[:1200], y[:1200], epochs=2 if args.quick else 10)
        agreement(net, x[1200:1264])
    if "b" in args.parts:
        overhead(1 if args.quick else args.repeats)
    if "c" in args.parts:
        label_free(
            x[1200 : 1200 + (128 if args.quick else 512)],
            1 if args.quick else 9,
            16 if args.quick else 64,
        )


if __name__ == "__main__":
    main()
