"""Tests for attnlib.utils and attnlib.viz."""

from __future__ import annotations

import random
import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import attnlib  # noqa: E402
from attnlib.utils import get_device, measure_time, measure_times, seed_everything, show_source  # noqa: E402
from attnlib.viz import plot_attention, plot_attention_heads  # noqa: E402


def test_device_falls_back_to_cpu_here_and_honours_a_choice(monkeypatch):
    monkeypatch.delenv("ATTNLIB_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert get_device().type == expected
    assert get_device("cpu").type == "cpu"
    monkeypatch.setenv("ATTNLIB_DEVICE", "cpu")
    assert get_device().type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is missing")
def test_device_error_when_cuda_is_missing():
    with pytest.raises(ValueError, match=r"prefer='cuda' but CUDA is not available"):
        get_device("cuda")


def test_seed_everything_makes_runs_repeat():
    g = seed_everything(3)
    a = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g).item())
    g = seed_everything(3)
    b = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g).item())
    assert a == b
    with pytest.raises(ValueError, match=r"seed must be a non-negative int \(got -1\)"):
        seed_everything(-1)


def test_measure_time_returns_the_median_and_validates():
    calls = []
    t = measure_time(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and t >= 0
    with pytest.raises(ValueError, match=r"repeats must be a positive int \(got 0\)"):
        measure_time(lambda: None, repeats=0)


def test_measure_times_runs_rounds_in_shuffled_order_and_validates():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abcd"}
    state = torch.random.get_rng_state()
    times = measure_times(fns, repeats=6, warmup=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global random state is left alone
    assert list(times) == list("abcd") and all(len(t) == 6 and min(t) >= 0 for t in times.values())
    assert calls[:4] == list("abcd")  # the warm-up round, in order
    rounds = [calls[4 + 4 * r: 8 + 4 * r] for r in range(6)]
    assert all(sorted(r) == list("abcd") for r in rounds)  # every function once per round
    assert len({tuple(r) for r in rounds}) > 1  # in changing order
    again = []
    measure_times({name: (lambda name=name: again.append(name)) for name in "abcd"}, repeats=6, warmup=1)
    assert again == calls  # reproducible: the order comes from a generator seeded 0
    slow = measure_times({"fast": lambda: None, "slow": lambda: time.sleep(0.002)}, repeats=3)
    assert all(s > f for s, f in zip(slow["slow"], slow["fast"]))
    with pytest.raises(TypeError, match=r"fns must be a non-empty mapping of names to functions \(got \{\}\)"):
        measure_times({})
    with pytest.raises(TypeError, match=r"fns must be a non-empty mapping of names to functions"):
        measure_times([lambda: None])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"repeats must be a positive int \(got 0\)"):
        measure_times(fns, repeats=0)
    with pytest.raises(ValueError, match=r"warmup must be a non-negative int \(got -1\)"):
        measure_times(fns, warmup=-1)
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None \(got int\)"):
        measure_times(fns, generator=0)  # type: ignore[arg-type]


def test_show_source_is_the_real_source():
    src = show_source(attnlib.safe_softmax)
    assert str(src).startswith("def safe_softmax(")
    assert "```python" in src._repr_markdown_()
    assert src.title == "attnlib.functional.safe_softmax"
    method = show_source(attnlib.MultiHeadAttention.forward)
    assert str(method).startswith("def forward(")  # dedented
    with pytest.raises(TypeError, match=r"must be a Python function, class, method or module"):
        show_source(3)


def test_plot_attention_and_heads():
    w = torch.softmax(torch.randn(3, 4), -1)
    ax = plot_attention(w, ["a", "b", "c"], ["w", "x", "y", "z"], title="t")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["w", "x", "y", "z"]
    fig = plot_attention_heads(torch.softmax(torch.randn(3, 3, 4), -1), ncols=2)
    assert len(fig.axes) >= 3
    plt.close("all")


def test_viz_errors():
    with pytest.raises(ValueError, match=r"weights must have shape \(T, S\) \(got shape \(2, 3, 4\)\)"):
        plot_attention(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"key_labels must have one label per position: 4 \(got 2\)"):
        plot_attention(torch.zeros(3, 4), key_labels=["a", "b"])
    with pytest.raises(ValueError, match=r"weights must have shape \(H, T, S\) \(got shape \(3, 4\)\)"):
        plot_attention_heads(torch.zeros(3, 4))
    plt.close("all")


def test_public_api_is_exported():
    for name in attnlib.__all__:
        assert hasattr(attnlib, name), name
    assert isinstance(attnlib.__version__, str)


@pytest.mark.parametrize("value,hidden", [("1", True), ("true", True), ("", False), ("0", False), ("False", False)])
def test_bars_hidden_reads_tqdm_disable(monkeypatch, value, hidden):
    monkeypatch.setenv("TQDM_DISABLE", value)
    assert attnlib.utils.bars_hidden() is hidden


def test_progress_prints_lines_when_bars_are_hidden(monkeypatch, capsys):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert list(attnlib.utils.progress(iter(range(7)), total=7, desc="runs", lines=3)) == list(range(7))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["runs: 3/7", "runs: 6/7", "runs: 7/7"]
    # Without a length there is nothing to count against: items only, no lines.
    assert list(attnlib.utils.progress(iter(range(3)), desc="runs")) == [0, 1, 2]
    assert capsys.readouterr().out == ""


def test_progress_rejects_a_bad_line_count():
    with pytest.raises(ValueError, match=r"lines must be a non-negative int \(got -1\)"):
        list(attnlib.utils.progress(range(3), lines=-1))


def _captured_glue(publish, *args):
    """The display outputs of publish(*args) under an IPython shell: (data, metadata) pairs."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    try:
        with capture_output() as captured:
            publish(*args)
    finally:
        InteractiveShell.clear_instance()
    return [(output.data, output.metadata) for output in captured.outputs]


def test_glue_writes_what_myst_nb_glue_writes():
    myst_glue = pytest.importorskip("myst_nb").glue
    ours = _captured_glue(attnlib.glue, "c11_peek_exact", 0.25)
    theirs = _captured_glue(lambda n, v: myst_glue(n, v, display=False), "c11_peek_exact", 0.25)
    assert ours == theirs == [({attnlib.utils.GLUE_PREFIX + "text/plain": "0.25"},
                               {"scrapbook": {"name": "c11_peek_exact", "mime_prefix": attnlib.utils.GLUE_PREFIX}})]


@pytest.mark.parametrize("value, text", [(np.float32(0.5), "0.5"), (np.int64(3), "3"), (7, "7"),
                                         (torch.tensor(0.125), "0.125"), ("pre-norm", "pre-norm")])
def test_glue_stores_numbers_as_plain_text_that_a_format_spec_reads(value, text):
    [(data, _)] = _captured_glue(attnlib.glue, "x", value)
    assert data == {attnlib.utils.GLUE_PREFIX + "text/plain": text}


def test_glue_outside_ipython_does_nothing(capsys):
    attnlib.glue("x", 1.0)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("name, value, error, words", [
    ("not an identifier", 1.0, ValueError, "name must be a Python identifier (got 'not an identifier')"),
    ("x", float("nan"), ValueError, "value must be finite"),
    ("x", [1.0], TypeError, "value must be a real number or a string (got list)"),
    ("x", True, TypeError, "(got bool)"),
    ("x", torch.ones(2), TypeError, "a tensor of shape (2,)"),
])
def test_glue_rejects_bad_input(name, value, error, words):
    with pytest.raises(error) as excinfo:
        attnlib.glue(name, value)
    assert words in str(excinfo.value)
