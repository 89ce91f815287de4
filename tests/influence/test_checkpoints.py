from __future__ import annotations

import json
import pickle

import pytest
import torch
from torch import nn

from lightning_xai.influence import Checkpoint, CheckpointStore
from lightning_xai.influence.checkpoints import learning_rates, load_checkpoint_file
from lightning_xai.influence.errors import CheckpointError
from lightning_xai.utilities.io import atomic_save


def make_net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_roundtrip_with_buffers_and_lrs(tmp_path) -> None:
    net = make_net()
    store = CheckpointStore(tmp_path / "ckpts")
    assert len(store) == 0 and store.entries == [] and store.orphans() == []
    rates = {"0.weight": 0.1, "2.weight": 0.2}
    store.save(Checkpoint.from_module(net, rates, ["0.weight", "2.weight"], epoch=3, step=30))
    (entry,) = store.entries
    assert (entry.epoch, entry.step, entry.params, entry.lr) == (
        3,
        30,
        ("0.weight", "2.weight"),
        rates,
    )
    loaded = store[0]
    assert sorted(loaded.params) == ["0.weight", "2.weight"]
    assert sorted(loaded.buffers) == ["1.num_batches_tracked", "1.running_mean", "1.running_var"]
    assert torch.equal(loaded.params["2.weight"], net[2].weight.detach())
    assert loaded.lr_of("2.weight") == 0.2 and (loaded.epoch, loaded.step) == (3, 30)
    with pytest.raises(KeyError, match="no learning rate"):
        loaded.lr_of("0.bias")


def test_files_load_with_weights_only(tmp_path) -> None:
    store = CheckpointStore(tmp_path)
    path = store.save(Checkpoint.from_module(make_net(), 0.5, epoch=0, step=1))
    data = torch.load(path, weights_only=True)
    assert data["lr"] == 0.5 and set(data) == {"params", "buffers", "lr", "epoch", "step"}


def test_same_epoch_replaces_no_duplicates_sorted(tmp_path) -> None:
    net = make_net()
    store = CheckpointStore(tmp_path)
    for epoch in (2, 0, 1, 1):
        store.save(Checkpoint.from_module(net, 0.1 * (epoch + 1), epoch=epoch, step=10 * epoch))
    assert [e.epoch for e in store.entries] == [0, 1, 2]
    assert [c.epoch for c in store] == [0, 1, 2]
    assert store.orphans() == []


def test_crash_mid_write_leaves_nothing_trusted(tmp_path) -> None:
    net = make_net()
    store = CheckpointStore(tmp_path)
    store.save(Checkpoint.from_module(net, 0.1, epoch=0, step=5))

    # an interrupted write: the payload fails half-way inside the atomic writer
    def explode(f) -> None:
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_save(tmp_path / "epoch=0001-step=0000010.pt", explode)
    assert not (tmp_path / "epoch=0001-step=0000010.pt").exists()
    # a crash after the file but before the manifest, and a stray temp file
    (tmp_path / "epoch=0002-step=0000020.pt").write_bytes(b"\x80garbage")
    (tmp_path / ".epoch=0003.pt.abc.tmp").write_bytes(b"")
    assert [e.epoch for e in store.entries] == [0]
    assert [p.name for p in store.orphans()] == [
        ".epoch=0003.pt.abc.tmp",
        "epoch=0002-step=0000020.pt",
    ]
    assert len(list(store)) == 1
    # the next save of that epoch overwrites the orphan and lists it once
    store.save(Checkpoint.from_module(net, 0.1, epoch=2, step=20))
    assert [e.epoch for e in store.entries] == [0, 2] and store[1].step == 20


def test_truncate_drops_later_epochs(tmp_path) -> None:
    store = CheckpointStore(tmp_path)
    for epoch in range(4):
        store.save(Checkpoint.from_module(make_net(), 0.1, epoch=epoch, step=epoch))
    dropped = store.truncate(2)
    assert [e.epoch for e in dropped] == [2, 3] and [e.epoch for e in store.entries] == [0, 1]
    assert (
        store.orphans() == [] and sorted(p.name for p in tmp_path.iterdir())[-1] == "manifest.json"
    )


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_foreign_manifest_and_unsafe_pickle_rejected(tmp_path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other", "entries": []}))
    with pytest.raises(ValueError, match="not a lightning-xai TracIn manifest"):
        _ = CheckpointStore(tmp_path).entries
    other = tmp_path / "evil"
    store = CheckpointStore(other)
    path = store.save(Checkpoint.from_module(make_net(), 0.1, epoch=0, step=0))
    path.write_bytes(pickle.dumps({"params": {}, "lr": object()}))
    with pytest.raises(CheckpointError, match="manifest recorded"):  # size/hash catch it first
        store[0]
    # without a manifest entry to compare with, weights_only=True refuses the unsafe pickle
    with pytest.raises(CheckpointError, match=f"{path.name}.*cannot be read") as info:
        load_checkpoint_file(path)
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)


def test_learning_rates_per_group() -> None:
    net = make_net()
    opt = torch.optim.SGD(
        [{"params": net[0].parameters(), "lr": 0.1}, {"params": net[2].parameters(), "lr": 0.3}]
    )
    assert learning_rates(net, [opt], ["0.weight", "0.bias"]) == 0.1
    assert learning_rates(net, [opt], ["0.weight", "2.bias"]) == {"0.weight": 0.1, "2.bias": 0.3}
    assert learning_rates(net, [opt], ["1.weight"]) == 0.0  # not optimised: no influence
