"""Files that cannot be trusted, a full disk, and the user's data: errors name the file, the
manifest entry and the mismatch; nothing is deleted that the user did not ask to delete."""

from __future__ import annotations

import errno
import hashlib
import json
import os

import pytest
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import MisconfigurationException

import lightning_xai.utilities.io as xio
from lightning_xai.callbacks import InfluenceLogger, TracInCheckpoint
from lightning_xai.influence import Checkpoint, CheckpointStore, TracIn
from lightning_xai.influence.errors import CheckpointError
from tests.helpers import TinyClassifier, make_trainer, tiny_digits


def ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


def digest(folder) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def tiny_store(path, num_classes: int = 10, epochs: int = 2) -> CheckpointStore:
    store = CheckpointStore(path)
    module = TinyClassifier(num_classes=num_classes)
    for epoch in range(epochs):
        store.save(Checkpoint.from_module(module, 0.05, epoch=epoch, step=epoch + 1))
    return store


def validate_with(tmp_path, store_dir, module=None) -> None:
    cb = InfluenceLogger(stages=("validate",), checkpoints=store_dir, num_samples=2)
    trainer = make_trainer(tmp_path / "logs", callbacks=[cb])
    trainer.validate(module or TinyClassifier(), datamodule=tiny_digits())


# ---------------------------------------------------------------------------- corrupt files
def test_truncated_checkpoint_names_the_file_and_entry(tmp_path) -> None:
    store = tiny_store(tmp_path / "s")
    path = store.dirpath / store.entries[1].file
    path.write_bytes(path.read_bytes()[:200])  # truncated after it was recorded
    expected = r"epoch=0001-step=0000002\.pt.*manifest entry .*epoch 1, step 2.*truncated"
    with pytest.raises(CheckpointError, match=expected):
        store.load(1)
    with pytest.raises(CheckpointError, match=expected):
        TracIn(TinyClassifier(), store, ce, show_progress=False).self_influence(
            (torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 2]))
        )
    # found before any validation step, by the callback's check
    with pytest.raises(MisconfigurationException, match=expected):
        validate_with(tmp_path, store.dirpath)


def test_garbage_under_an_old_manifest_without_hashes_names_the_file(tmp_path) -> None:
    store = tiny_store(tmp_path / "s")
    manifest = json.loads(store.manifest_path.read_text())
    for row in manifest["entries"]:  # an older manifest: no size, no hash
        row.pop("size"), row.pop("sha256")
    store.manifest_path.write_text(json.dumps(manifest))
    assert store.entries[0].sha256 is None and len(list(store)) == 2  # still loads
    (store.dirpath / store.entries[0].file).write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(CheckpointError, match=r"epoch=0000-step=0000001\.pt.*cannot be read"):
        store.load(0)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"format": "lightning-xai/tracin-checkpoints/1", "entr', "not valid JSON"),
        ("", "not valid JSON"),
        (
            '{"format": "lightning-xai/tracin-checkpoints/1", "entries": [{"file": "a.pt"}]}',
            "entry #0",
        ),
    ],
)
def test_corrupt_manifest_names_the_manifest(tmp_path, text, match) -> None:
    store = tiny_store(tmp_path / "s")
    store.manifest_path.write_text(text)
    with pytest.raises(CheckpointError, match=rf"manifest.json.*{match}|{match}.*manifest.json"):
        _ = store.entries
    with pytest.raises(MisconfigurationException, match=r"manifest\.json"):
        validate_with(tmp_path, store.dirpath)


# ---------------------------------------------------------------------------- architecture
def test_checkpoint_of_another_architecture_is_named_at_setup(tmp_path) -> None:
    store = tiny_store(tmp_path / "s", num_classes=3)  # recorded for 3 classes
    module = TinyClassifier(num_classes=10)
    with pytest.raises(MisconfigurationException) as info:
        validate_with(tmp_path, store.dirpath, module)
    text = str(info.value)
    assert "epoch=0001-step=0000002.pt" in text and "another architecture" in text
    assert "model.classifier.3.weight: checkpoint (3, 16) vs model (10, 16)" in text
    assert "model.classifier.3.bias: checkpoint (3,) vs model (10,)" in text
    # TracIn directly: the same names, not an error inside a layer
    with pytest.raises(CheckpointError, match=r"shapes differ: model\.classifier\.3\.weight"):
        TracIn(module, store, ce, show_progress=False).self_influence(
            (torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 2]))
        )


def test_missing_and_extra_parameter_names(tmp_path) -> None:
    store = CheckpointStore(tmp_path / "s")
    other = torch.nn.Sequential(torch.nn.Linear(64, 10))  # names '0.weight', '0.bias'
    store.save(Checkpoint.from_module(other, 0.1, epoch=0, step=1))
    with pytest.raises(MisconfigurationException) as info:
        validate_with(tmp_path, store.dirpath)
    text = str(info.value)
    assert "names the model does not have ['0.weight', '0.bias']" in text
    assert "'model.features.0.weight'" in text  # what the model has instead


# ---------------------------------------------------------------------------- full disk
class FullDisk:
    """A file object that accepts ``budget`` bytes, then fails like a full disk."""

    def __init__(self, f, budget: int) -> None:
        self.f, self.budget = f, budget

    def write(self, data) -> int:
        if len(data) > self.budget:
            self.f.write(bytes(data)[: self.budget])  # half the file reaches the disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


@pytest.mark.parametrize("failing", ["checkpoint", "manifest"])
def test_full_disk_mid_file_keeps_the_old_files_and_leaves_no_temp(
    tmp_path, monkeypatch, failing
) -> None:
    store = tiny_store(tmp_path / "s", epochs=1)
    before = digest(store.dirpath)
    real = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real(fd, mode, *args, **kwargs)
        name = os.readlink(f"/proc/self/fd/{fd}")
        hit = ("manifest" in name) == (failing == "manifest")
        return FullDisk(f, 100) if "w" in mode and hit else f

    monkeypatch.setattr(xio.os, "fdopen", fdopen)
    module = TinyClassifier()
    with pytest.raises(OSError, match=r"No space left on device") as info:
        store.save(Checkpoint.from_module(module, 0.05, epoch=0, step=1))  # replaces epoch 0
    assert info.value.errno == errno.ENOSPC and "s/" in str(info.value)  # names the file
    monkeypatch.undo()
    after = digest(store.dirpath)
    if failing == "checkpoint":
        assert after == before  # the final file and the manifest untouched
    else:  # the new .pt landed under its final name, but the manifest still has the old hash
        assert after["manifest.json"] == before["manifest.json"]
        with pytest.raises(CheckpointError, match="content hash"):
            store.load(0)  # never trusted silently
    assert not [p for p in store.dirpath.iterdir() if p.name.endswith(".tmp")]
    assert [e.epoch for e in store.entries] == [0]


# ---------------------------------------------------------------------------- user data
def test_new_fit_refuses_a_store_that_holds_checkpoints(tmp_path) -> None:
    store_dir = tmp_path / "mine"
    first = make_trainer(tmp_path, callbacks=[TracInCheckpoint(dirpath=store_dir)], max_epochs=2)
    first.fit(TinyClassifier(), datamodule=tiny_digits())
    before = digest(store_dir)
    assert len(before) == 3  # two checkpoints and the manifest
    again = make_trainer(tmp_path, callbacks=[TracInCheckpoint(dirpath=store_dir)])
    with pytest.raises(MisconfigurationException) as info:
        again.fit(TinyClassifier(), datamodule=tiny_digits())
    text = str(info.value)
    assert "overwrite=True" in text and "fresh `dirpath`" in text and str(store_dir) in text
    assert again.global_step == 0  # refused before the first training step
    assert digest(store_dir) == before  # nothing deleted
    # the user asks for it: replaced
    replace = make_trainer(
        tmp_path, callbacks=[TracInCheckpoint(dirpath=store_dir, overwrite=True)]
    )
    replace.fit(TinyClassifier(), datamodule=tiny_digits())
    assert [e.epoch for e in CheckpointStore(store_dir).entries] == [0]


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
def test_resume_of_the_same_run_continues_the_store(tmp_path) -> None:
    store_dir = tmp_path / "mine"
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1)
    first = make_trainer(
        tmp_path,
        callbacks=[TracInCheckpoint(dirpath=store_dir), ckpt],
        enable_checkpointing=True,
        max_epochs=2,
        limit_train_batches=2,
    )
    first.fit(TinyClassifier(), datamodule=tiny_digits())
    resumed = make_trainer(
        tmp_path,
        callbacks=[TracInCheckpoint(dirpath=store_dir)],
        max_epochs=3,
        limit_train_batches=2,
    )
    resumed.fit(
        TinyClassifier(),
        datamodule=tiny_digits(),
        ckpt_path=str(tmp_path / "ckpt" / "epoch=1-step=4.ckpt"),
    )
    assert [(e.epoch, e.step) for e in CheckpointStore(store_dir).entries] == [
        (0, 2),
        (1, 4),
        (2, 6),
    ]


def test_dirpath_that_is_a_file_fails_at_setup(tmp_path) -> None:
    (tmp_path / "taken").write_text("the user's notes")
    trainer = make_trainer(tmp_path, callbacks=[TracInCheckpoint(dirpath=tmp_path / "taken")])
    with pytest.raises(MisconfigurationException, match=r"dirpath=.*taken.*is a file"):
        trainer.fit(TinyClassifier(), datamodule=tiny_digits())
    assert trainer.global_step == 0
    assert (tmp_path / "taken").read_text() == "the user's notes"


def test_stale_temporaries_are_removed_at_the_next_start(tmp_path) -> None:
    store = tiny_store(tmp_path / "s", epochs=1)
    stale = store.dirpath / ".epoch=0001-step=0000002.pt.k3j2.tmp"
    stale.write_bytes(b"half")
    trainer = make_trainer(
        tmp_path, callbacks=[TracInCheckpoint(dirpath=store.dirpath, overwrite=True)]
    )
    trainer.fit(TinyClassifier(), datamodule=tiny_digits())
    assert not stale.exists()
