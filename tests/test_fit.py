"""Tests for attnlib.train.fit and its schedule (the loop every chapter uses)."""

from __future__ import annotations

import pytest
import torch

from attnlib.train import History, cosine_schedule, fit, move_to


def regression_batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.tensor([[1.0], [-2.0], [0.5]])
    while True:
        x = torch.randn(32, 3, generator=g)
        yield x, x @ w


def mse(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def test_fit_learns_and_records_history():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    h = fit(model, mse, regression_batches(), steps=200, lr=0.05, eval_fn=lambda m: {"w0": m.weight[0, 0]},
            eval_every=50, progress=False)
    assert isinstance(h, History)
    assert h.step == list(range(1, 201)) and len(h.loss) == len(h.lr) == len(h.grad_norm) == 200
    assert h.loss[-1] < 1e-3 < h.loss[0]
    steps, values = h.metric("w0")
    assert steps == [50, 100, 150, 200] and values[-1] == pytest.approx(1.0, abs=0.05)
    assert not model.training
    with pytest.raises(KeyError, match="no metric named 'nope'"):
        h.metric("nope")


def test_fit_is_reproducible_and_restarts_finite_iterables():
    data = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(3)]  # an "epoch" of 3 batches
    losses = []
    for _ in range(2):
        torch.manual_seed(1)
        model = torch.nn.Linear(3, 1)
        losses.append(fit(model, mse, data, steps=7, progress=False).loss)
    assert losses[0] == losses[1]


def test_cosine_schedule_and_clipping():
    f = cosine_schedule(100, warmup=10, final=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(99) == pytest.approx(0.1) and f(50) < 1.0
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    h = fit(model, lambda m, b: 1e4 * mse(m, b), regression_batches(), steps=5, clip_norm=1.0,
            lr_lambda=cosine_schedule(5), progress=False)
    assert max(h.grad_norm) > 1.0  # recorded before clipping
    assert h.lr[0] == pytest.approx(1e-3)


def test_move_to_keeps_structure():
    batch = {"a": torch.zeros(1), "b": [torch.zeros(1), 3]}
    moved = move_to(batch, torch.device("cpu"))
    assert set(moved) == {"a", "b"} and moved["b"][1] == 3


def test_fit_errors():
    model = torch.nn.Linear(3, 1)
    with pytest.raises(ValueError, match=r"steps must be a positive int \(got 0\)"):
        fit(model, mse, regression_batches(), steps=0)
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar tensor \(got shape \(32, 1\)\)"):
        fit(model, lambda m, b: m(b[0]), regression_batches(), steps=1, progress=False)
    with pytest.raises(ValueError, match="batches yielded nothing"):
        fit(model, mse, [], steps=1, progress=False)
    with pytest.raises(ValueError, match=r"clip_norm must be positive or None \(got 0\)"):
        fit(model, mse, regression_batches(), steps=1, clip_norm=0)
    with pytest.raises(ValueError, match=r"need steps >= 1 and 0 <= warmup < steps"):
        cosine_schedule(10, warmup=10)


def test_tqdm_disable_environment_variable_hides_the_bar():
    """tqdm reads TQDM_DISABLE when it is imported, so each case runs in a fresh process."""
    import os
    import subprocess
    import sys

    code = (
        "import torch; from attnlib.train import fit\n"
        "m = torch.nn.Linear(1, 1)\n"
        "fit(m, lambda m, b: m(b).pow(2).mean(), [torch.ones(2, 1)], steps=3, progress=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    hidden = subprocess.run([sys.executable, "-c", code], env=env | {"TQDM_DISABLE": "1"},
                            capture_output=True, text=True, check=True)
    assert "training" in shown.stderr
    assert "training" not in hidden.stderr
    # Hidden bars leave a plain line on standard output: the last step, with the loss.
    assert "training: step 3/3, loss " in hidden.stdout
    assert "training: step" not in shown.stdout


def _run_in_kernel(code: str, env: dict) -> list:
    """Run ``code`` in a fresh IPython kernel; return the iopub messages of that execution."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        msg_id = kc.execute(code)
        reply = kc.get_shell_msg(timeout=120)
        assert reply["content"]["status"] == "ok", reply["content"]
        messages = []
        while True:
            msg = kc.get_iopub_msg(timeout=30)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            messages.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return messages
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_hidden_bars_send_no_widget_messages_in_a_notebook_kernel():
    """In Jupyter, tqdm.auto is tqdm.notebook, which ignores TQDM_DISABLE; fit and progress must not.

    A widget bar sends dozens of messages a second. Under nbval nobody reads them until the
    cell's reply, ZeroMQ drops the overflow, the cell's final status message with it, and
    the cell fails with "Timeout ... waiting for output" (the cause of the slow-machine
    failures in chapters 08d and 11).
    """
    import os

    code = (
        "import torch, attnlib\n"
        "from attnlib.train import fit\n"
        "m = torch.nn.Linear(1, 1)\n"
        "h = fit(m, lambda m, b: m(b).pow(2).mean(), [torch.ones(2, 1)], steps=30, progress=True)\n"
        "items = list(attnlib.utils.progress(range(20), desc='runs', lines=4))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    hidden = _run_in_kernel(code, env | {"TQDM_DISABLE": "1"})
    kinds = [m["msg_type"] for m in hidden]
    assert not [k for k in kinds if k.startswith("comm")], kinds
    text = "".join(m["content"]["text"] for m in hidden if m["msg_type"] == "stream")
    assert "training: step 30/30, loss " in text
    assert [line.split(" (")[0] for line in text.splitlines() if line.startswith("runs:")] == \
        ["runs: 5/20", "runs: 10/20", "runs: 15/20", "runs: 20/20"]
    shown = _run_in_kernel(code, env)
    assert any(m["msg_type"] == "comm_open" for m in shown), "a person in Jupyter sees widget bars"
