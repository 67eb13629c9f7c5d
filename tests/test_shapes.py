"""Tests for attnlib.shapes: the forward-hook shape tracer."""

from __future__ import annotations

from typing import Any, Dict, Optional

import pytest
import torch
from torch import Tensor, nn

from attnlib.attention import MultiHeadAttention
from attnlib.shapes import ShapeRecord, ShapeTrace, ShapeTracer, describe_shape, format_shape, trace_shapes

B, T, S, D, H = 2, 5, 7, 16, 4


def hook_count(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


class Block(nn.Module):
    """A nested module: attention inside, a sequential tail, a shared layer used twice."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(D, H)
        self.tail = nn.Sequential(nn.Linear(D, 2 * D), nn.ReLU(), nn.Linear(2 * D, D))
        self.shared = nn.Linear(D, D)

    def forward(self, x: Tensor) -> Tensor:
        h, _ = self.attn(x, x, x)
        return self.shared(self.tail(self.shared(h)))


class Odd(nn.Module):
    """A module with non-tensor inputs and outputs."""

    def forward(self, x: Tensor, scale: float = 1.0, mode: Optional[str] = None) -> Dict[str, Any]:
        return {"out": x * scale, "n": x.size(0), "none": None, "pair": (x.sum(), [x[0]])}


class Boom(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        raise RuntimeError("boom")


# --- shapes through attnlib's MultiHeadAttention -----------------------------------


def test_multihead_attention_shapes() -> None:
    mha = MultiHeadAttention(D, H).eval()
    q, kv = torch.randn(B, T, D), torch.randn(B, S, D)
    trace = trace_shapes(mha, q, kv, kv, need_weights=True, average_attn_weights=False)
    assert trace.names() == ["", "q_proj", "k_proj", "v_proj", "out_proj"]
    root = trace.find("")
    assert root.module_type == "MultiHeadAttention" and root.depth == 0 and root.finished
    assert root.args == ((B, T, D), (B, S, D), (B, S, D))
    assert root.kwargs == {"need_weights": "True", "average_attn_weights": "False"}
    assert root.output == ((B, T, D), (B, H, T, S))
    assert trace.find("q_proj").output == (B, T, D)
    assert trace.find("k_proj").args == ((B, S, D),) and trace.find("k_proj").output == (B, S, D)
    assert trace.find("v_proj").output == (B, S, D)
    assert trace.find("out_proj").args == ((B, T, D),) and trace.find("out_proj").output == (B, T, D)
    assert all(r.module_type == "Linear" and r.depth == 1 for r in trace[1:])


def test_none_in_output_tuple() -> None:
    mha = MultiHeadAttention(D, H).eval()
    x = torch.randn(B, T, D)
    trace = trace_shapes(mha, x, x, x)
    assert trace.find("").output == ((B, T, D), None)
    assert trace.find("").format_output() == f"(({B}, {T}, {D}), None)"


# --- nesting, repeated calls, depth ---------------------------------------------------


def test_nested_modules_in_call_order() -> None:
    block = Block()
    trace = trace_shapes(block, torch.randn(B, T, D))
    assert trace.names() == [
        "", "attn", "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj",
        "shared", "tail", "tail.0", "tail.1", "tail.2", "shared",
    ]
    assert [r.depth for r in trace] == [0, 1, 2, 2, 2, 2, 1, 1, 2, 2, 2, 1]
    assert trace.find("tail.0").output == (B, T, 2 * D)
    assert trace.find("tail").output == (B, T, D)
    assert len([r for r in trace if r.name == "shared"]) == 2  # one record per call


def test_max_depth_and_include_root() -> None:
    block = Block()
    with ShapeTracer(block, max_depth=1) as trace:
        block(torch.randn(B, T, D))
    assert trace.names() == ["", "attn", "shared", "tail", "shared"]
    with ShapeTracer(block, max_depth=1, include_root=False) as trace:
        block(torch.randn(B, T, D))
    assert trace.names() == ["attn", "shared", "tail", "shared"]
    with ShapeTracer(block, max_depth=0) as trace:
        block(torch.randn(B, T, D))
    assert trace.names() == [""]


def test_context_manager_records_several_calls() -> None:
    lin = nn.Linear(3, 4)
    with ShapeTracer(lin) as trace:
        lin(torch.randn(2, 3))
        lin(torch.randn(5, 6, 3))
    assert [r.output for r in trace] == [(2, 4), (5, 6, 4)]


# --- non-tensor inputs and outputs ------------------------------------------------


def test_non_tensor_inputs_and_outputs() -> None:
    trace = trace_shapes(Odd(), torch.randn(3, 2), 2.0, mode="fast")
    record = trace[0]
    assert record.args == ((3, 2), "2.0")
    assert record.kwargs == {"mode": "'fast'"}
    assert record.output == {"out": (3, 2), "n": "3", "none": None, "pair": ((), [(2,)])}
    assert record.format_inputs() == "(3, 2), 2.0, mode='fast'"
    assert record.format_output() == "{out: (3, 2), n: 3, none: None, pair: ((), [(2,)])}"


def test_describe_shape() -> None:
    assert describe_shape(torch.zeros(2, 3)) == torch.Size([2, 3])
    assert isinstance(describe_shape(torch.zeros(2, 3)), torch.Size)
    assert describe_shape(None) is None
    assert describe_shape((torch.zeros(1), None)) == (torch.Size([1]), None)
    assert describe_shape([torch.zeros(1)]) == [torch.Size([1])]
    assert describe_shape(True) == "True"
    assert describe_shape(nn.ReLU()) == "ReLU"
    assert describe_shape("x" * 100) == "str"
    assert describe_shape(list(range(20))) == "list of 20"
    assert describe_shape({i: i for i in range(20)}) == "dict of 20"


def test_format_shape() -> None:
    assert format_shape(torch.Size([2, 5, 32])) == "(2, 5, 32)"
    assert format_shape(torch.Size([7])) == "(7,)"
    assert format_shape(torch.Size([])) == "()"
    assert format_shape((torch.Size([1]),)) == "((1,),)"
    assert format_shape(None) == "None"
    with pytest.raises(TypeError, match="shape must be a value returned by describe_shape"):
        format_shape(3.5)  # type: ignore[arg-type]


# --- hooks are removed --------------------------------------------------------------


def test_hooks_removed_after_trace() -> None:
    block = Block()
    before = hook_count(block)
    with ShapeTracer(block) as trace:
        assert hook_count(block) == before + 2 * len(list(block.modules()))
        block(torch.randn(B, T, D))
    assert hook_count(block) == before
    n = len(trace)
    block(torch.randn(B, T, D))  # nothing is recorded once the block has ended
    assert len(trace) == n


def test_hooks_removed_when_forward_raises() -> None:
    model = nn.Sequential(nn.Linear(3, 3), Boom())
    with pytest.raises(RuntimeError, match="boom"):
        with ShapeTracer(model) as trace:
            model(torch.randn(2, 3))
    assert hook_count(model) == 0
    assert trace.find("0").finished and trace.find("0").output == (2, 3)
    assert not trace.find("1").finished and trace.find("1").format_output() == "(raised)"
    assert not trace.find("").finished


def test_trace_shapes_removes_hooks_on_bad_input() -> None:
    mha = MultiHeadAttention(D, H)
    with pytest.raises(ValueError, match="query must have width"):
        trace_shapes(mha, torch.randn(B, T, D + 1), torch.randn(B, S, D), torch.randn(B, S, D))
    assert hook_count(mha) == 0


def test_user_hooks_are_kept() -> None:
    lin = nn.Linear(3, 3)
    seen = []
    handle = lin.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    trace_shapes(lin, torch.randn(4, 3))
    assert len(lin._forward_hooks) == 1 and seen == [torch.Size([4, 3])]
    handle.remove()


def test_outputs_unchanged() -> None:
    torch.manual_seed(0)
    block = Block().eval()
    x = torch.randn(B, T, D)
    expected = block(x)
    with ShapeTracer(block):
        got = block(x)
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


# --- rendering ----------------------------------------------------------------------


def test_plain_text_table() -> None:
    mha = MultiHeadAttention(D, H)
    x = torch.randn(B, T, D)
    trace = trace_shapes(mha, x, x, x)
    lines = str(trace).splitlines()
    assert lines[0].split() == ["module", "type", "inputs", "output"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert len(lines) == 2 + len(trace)
    assert lines[2].startswith("(root)") and "MultiHeadAttention" in lines[2]
    assert f"(({B}, {T}, {D}), None)" in lines[2]
    assert repr(trace) == str(trace)
    assert repr(ShapeTrace()) == "ShapeTrace(no calls recorded)"


def test_markdown_table() -> None:
    trace = ShapeTrace([ShapeRecord("a|b", "Linear", 1, (torch.Size([2, 3]),), {}, torch.Size([2, 4]), True)])
    md = trace._repr_markdown_().splitlines()
    assert md[0] == "| module | type | inputs | output |"
    assert md[1] == "|---|---|---|---|"
    assert md[2] == "| a\\|b | Linear | `(2, 3)` | `(2, 4)` |"


def test_html_table() -> None:
    trace = ShapeTrace([ShapeRecord("a<b", "Linear", 1, (torch.Size([2, 3]),), {}, torch.Size([2, 4]), True)])
    page = trace._repr_html_()
    assert page.startswith("<table><thead><tr><th>module</th><th>type</th><th>inputs</th><th>output</th></tr></thead>")
    assert "<tr><td>a&lt;b</td><td>Linear</td><td><code>(2, 3)</code></td><td><code>(2, 4)</code></td></tr>" in page
    assert page.count("<tr>") == 1 + len(trace)


# --- bad arguments ------------------------------------------------------------------


def test_module_must_be_a_module() -> None:
    with pytest.raises(TypeError, match=r"module must be a torch.nn.Module \(got function\)"):
        ShapeTracer(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"module must be a torch.nn.Module \(got Tensor\)"):
        trace_shapes(torch.zeros(1))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_max_depth_must_be_non_negative_int(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"max_depth must be None or a non-negative int \(got"):
        ShapeTracer(nn.Linear(2, 2), max_depth=bad)


def test_include_root_must_be_bool() -> None:
    with pytest.raises(TypeError, match=r"include_root must be a bool \(got int\)"):
        ShapeTracer(nn.Linear(2, 2), include_root=1)  # type: ignore[arg-type]


def test_tracer_cannot_be_entered_twice() -> None:
    tracer = ShapeTracer(nn.Linear(2, 2))
    with tracer:
        with pytest.raises(RuntimeError, match="already active"):
            tracer.__enter__()
    with tracer as trace:  # reusable once it has ended
        tracer.module(torch.randn(1, 2))
    assert len(trace) == 1


def test_find_unknown_name() -> None:
    trace = trace_shapes(nn.Linear(2, 2), torch.randn(1, 2))
    with pytest.raises(KeyError, match=r"no call of a submodule named 'nope' was recorded \(recorded: \[''\]\)"):
        trace.find("nope")
