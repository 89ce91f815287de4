"""BatchAdapter: every common batch layout read, the model called as its signature asks."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data._utils.collate import default_collate

import lightning_xai
from lightning_xai.utilities.batches import (
    BatchAdapter,
    batch_size,
    check_labels,
    resolve_callable,
    select_rows,
)
from tests.user_models import (
    DictDataset,
    HFTextClassifier,
    TwoInputNet,
    token_data,
    two_input_data,
)


def last_position(out: Tensor) -> Tensor:
    """An ``output=`` callable used by dotted path below: scores of the last position."""
    return out[:, -1]


def first_two(batch: Any) -> tuple[Tensor, Tensor]:
    return batch["a"], batch["b"]


class Recorder(nn.Module):
    """Records how it was called; returns class scores from the first argument."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.calls: list[tuple[int, tuple[str, ...]]] = []

    def forward(self, x: Tensor, lengths: Tensor | None = None, flag: bool = False) -> Tensor:
        self.calls.append((0 if lengths is None else 1, ("flag",) if flag else ()))
        return self.fc(x)


def test_top_level_export() -> None:
    assert lightning_xai.BatchAdapter is BatchAdapter


def test_tensor_batch() -> None:
    x = torch.rand(4, 3)
    b = BatchAdapter().split(x, nn.Linear(3, 2))
    assert b.inputs[0] is x and b.labels is None and b.extras == () and b.single


def test_pair_and_unused_entries_fill_optional_forward_args() -> None:
    model = Recorder()
    x, lengths, y = (
        torch.rand(4, 3),
        torch.arange(4.0).reshape(4, 1) + 1,
        torch.tensor([0, 1, 1, 0]),
    )
    # batch[1] is float 2-D: not label-like, so the labels are the last entry and `lengths`
    # fills the forward's optional argument instead of being dropped
    b = BatchAdapter().split((x, lengths, y), model)
    assert torch.equal(b.labels, y)
    assert b.extras[0] is lengths
    b.call(model)
    assert model.calls[-1] == (1, ())
    # a plain pair never passes anything else; flag=False (not None) is never filled
    b = BatchAdapter().split((x, y), model)
    b.call(model)
    assert model.calls[-1] == (0, ())


def test_two_input_model_default_adapter_passes_second_input() -> None:
    data = two_input_data(n=8)
    batch = tuple(data.tensors)
    model = TwoInputNet().eval()
    b = BatchAdapter().split(batch, model)
    assert torch.equal(b.labels, batch[2])
    with torch.no_grad():
        assert torch.allclose(b.call(model), model(batch[0], batch[1]))
        assert not torch.allclose(b.call(model), model(batch[0], None))
    b = BatchAdapter(inputs=(0, 1), labels=2).split(batch, model)
    assert len(b.inputs) == 2 and not b.single and b.extras == ()
    # inputs listed out of batch order are still passed in batch order
    b = BatchAdapter(inputs=(1, 0), labels=2).split(batch, model)
    with torch.no_grad():
        assert torch.allclose(b.call(model), model(batch[0], batch[1]))


def test_forward_func_for_captum_rebuilds_the_call() -> None:
    data = two_input_data(n=4)
    model = TwoInputNet().eval()
    b = BatchAdapter().split(tuple(data.tensors), model)
    f = b.forward_func(model)
    with torch.no_grad():
        assert torch.allclose(f(*b.inputs, *b.additional_forward_args), model(*data.tensors[:2]))


def test_hf_dict_batch_and_model_output() -> None:
    ds = DictDataset(token_data(n=6))
    batch = default_collate([ds[i] for i in range(6)])
    model = HFTextClassifier().eval()
    b = BatchAdapter().split(batch, model)
    args, kwargs = b.arguments()
    assert args == () and set(kwargs) == {"input_ids", "attention_mask"}  # labels never passed
    assert torch.equal(b.labels, batch["labels"])
    with torch.no_grad():
        expected = model.bert(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
        assert torch.allclose(b.call(model), expected)
    # the raw HF model takes more keyword arguments (token_type_ids, ...): chosen by signature
    batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    batch["unrelated"] = torch.ones(6)
    _, kwargs = BatchAdapter().split(batch, model.bert).arguments()
    assert set(kwargs) == {"input_ids", "attention_mask", "token_type_ids"}


def test_explicit_forward_kwargs_and_output_by_path() -> None:
    class Seq(nn.Module):
        def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
            return (tokens.float() * mask)[..., None].expand(-1, -1, 5)

    batch = {"tok": torch.ones(2, 3, dtype=torch.long), "m": torch.ones(2, 3), "y": torch.zeros(2)}
    adapter = BatchAdapter(
        inputs="tok",
        labels="y",
        forward_kwargs={"mask": "m"},
        output="tests.utilities.test_batches.last_position",
    )
    assert adapter.output is last_position
    b = adapter.split(batch, Seq())
    assert b.call(Seq()).shape == (2, 5)
    _, kwargs = b.arguments()
    assert set(kwargs) == {"mask"}  # "tok" is not a parameter name: passed positionally


def test_callable_inputs_and_labels() -> None:
    batch = {"a": torch.rand(2, 3), "b": torch.rand(2, 3), "t": torch.tensor([1, 0])}
    adapter = BatchAdapter(inputs=first_two, labels=lambda b: b["t"], forward_kwargs=None)
    b = adapter.split(batch, lambda a, b: a + b)
    assert len(b.inputs) == 2 and torch.equal(b.labels, batch["t"])
    assert torch.allclose(b.call(lambda a, b: a + b), batch["a"] + batch["b"])


@pytest.mark.parametrize(
    ("adapter", "batch", "match"),
    [
        (BatchAdapter(inputs=3), (torch.rand(2, 3), torch.zeros(2)), "index 3"),
        (BatchAdapter(labels="y"), (torch.rand(2, 3), torch.zeros(2)), "labels='y'"),
        (BatchAdapter(inputs="x"), {"pixels": torch.rand(2, 3)}, "lacks"),
        (BatchAdapter(), {"pixels": torch.rand(2, 3)}, "inputs='<key>'"),
        (BatchAdapter(labels="lbl"), {"x": torch.rand(2, 3)}, "labels='lbl'"),
        (BatchAdapter(), "text", "collate_fn"),
    ],
)
def test_errors_name_the_option_and_the_layout(
    adapter: BatchAdapter, batch: Any, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        adapter.split(batch, nn.Identity())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"inputs": 1.5}, "inputs"),
        ({"inputs": (0, 0)}, "twice"),
        ({"labels": True}, "labels"),
        ({"forward_kwargs": {"mask": 1.0}}, "forward_kwargs"),
        ({"output": [1]}, "output"),
    ],
)
def test_constructor_rejects_bad_options(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        BatchAdapter(**kwargs)


def test_output_reading() -> None:
    adapter = BatchAdapter()
    t = torch.rand(2, 3)
    assert adapter.read_output(t) is t
    assert adapter.read_output((t, "aux")) is t
    assert adapter.read_output({"loss": torch.tensor(1.0), "logits": t}) is t
    Out = namedtuple("Out", ["hidden", "logits"])
    assert BatchAdapter(output="logits").read_output(Out(None, t)) is t
    with pytest.raises(ValueError, match="output="):
        adapter.read_output({"hidden": t})


def test_check_labels() -> None:
    scores = torch.zeros(3, 4)
    assert check_labels(torch.tensor([0, 3, 1]), scores) is not None
    check_labels(torch.rand(3, 4), scores)  # soft targets
    with pytest.raises(ValueError, match="up to 4"):
        check_labels(torch.tensor([0, 4, 1]), scores)
    with pytest.raises(ValueError, match="down to -1"):
        check_labels(torch.tensor([0, -1, 1]), scores)
    with pytest.raises(ValueError, match="floating point"):
        check_labels(torch.rand(3), scores)
    with pytest.raises(ValueError, match="scored 3 examples"):
        check_labels(torch.tensor([0, 1]), scores)
    with pytest.raises(ValueError, match="per-class"):
        check_labels(torch.rand(3, 5), scores)
    check_labels(torch.rand(3), torch.zeros(3))  # regression


def test_rows_and_size() -> None:
    batch = {"input_ids": torch.arange(12).reshape(4, 3), "meta": "x", "shared": torch.ones(2)}
    assert batch_size(batch) == 4
    sub = select_rows(batch, torch.tensor([3, 1]))
    assert sub["input_ids"].tolist() == [[9, 10, 11], [3, 4, 5]]
    assert sub["meta"] == "x" and sub["shared"].shape == (2,)
    with pytest.raises(ValueError, match="no tensor"):
        batch_size({"a": "b"})


def test_resolve_callable() -> None:
    assert resolve_callable("torch.nn.functional.relu") is torch.nn.functional.relu
    assert resolve_callable("no.such.module.fn") == "no.such.module.fn"
    assert resolve_callable("labels") == "labels"
