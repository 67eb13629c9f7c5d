"""Tests for attnlib.linear_rnn: parallel forms equal their loops, causality, generation, gradients, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnlib import KVCache
from attnlib.linear_rnn import (
    LinearAttention,
    LinearAttentionState,
    MinGRU,
    MinLSTM,
    _g,
    _log_g,
    elu_feature_map,
    linear_attention,
    linear_attention_recurrent,
    linear_attention_step,
    parallel_scan_log,
    sequential_scan,
)

TOL = 1e-10
f64 = torch.float64
LOW_PRECISION = [torch.bfloat16, torch.float16]


def randn(*shape, seed=0, dtype=f64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def qkv(B=2, H=3, T=9, Dh=4, Dv=6, seed=0, dtype=f64):
    return randn(B, H, T, Dh, seed=seed, dtype=dtype), randn(B, H, T, Dh, seed=seed + 1, dtype=dtype), randn(
        B, H, T, Dv, seed=seed + 2, dtype=dtype
    )


def close(a, b, tol=TOL):
    torch.testing.assert_close(a, b, atol=tol, rtol=0)


# --- linear attention: the parallel form equals the recurrent one --------------------


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 9, 4, 6), (1, 1, 1, 5, 5), (3, 2, 33, 8, 3), (2, 4, 64, 16, 16)],
    ids=lambda s: "B{}-H{}-T{}-Dh{}-Dv{}".format(*s),
)
def test_parallel_equals_recurrent(shape):
    B, H, T, Dh, Dv = shape
    q, k, v = qkv(B, H, T, Dh, Dv)
    parallel = linear_attention(q, k, v)
    recurrent, state = linear_attention_recurrent(q, k, v)
    assert parallel.shape == recurrent.shape == (B, H, T, Dv)
    close(parallel, recurrent)
    assert state.kv.shape == (B, H, Dh, Dv) and state.k_sum.shape == (B, H, Dh)


def test_parallel_equals_the_normalised_causal_formula():
    q, k, v = qkv()
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    similarity = (fq @ fk.transpose(-2, -1)).tril()  # (B, H, T, T)
    normaliser = (fq * fk.cumsum(dim=-2)).sum(-1, keepdim=True)  # φ(Q)·cumsum(φ(K))
    close(linear_attention(q, k, v, eps=1e-6), (similarity @ v) / (normaliser + 1e-6))
    weights = similarity / normaliser
    close(weights.sum(-1), torch.ones_like(weights.sum(-1)))  # a causal average of the values


def test_unbatched_inputs_and_leading_dims():
    q, k, v = qkv(B=1, H=1)
    out = linear_attention(q[0, 0], k[0, 0], v[0, 0])  # (T, Dh): no batch dimensions at all
    close(out, linear_attention(q, k, v)[0, 0])
    close(out, linear_attention_recurrent(q[0, 0], k[0, 0], v[0, 0])[0])


def test_non_causal_is_every_query_reading_the_final_state():
    q, k, v = qkv()
    _, final = linear_attention_recurrent(q, k, v)
    full = linear_attention(q, k, v, is_causal=False)
    fq = elu_feature_map(q)
    reads = (fq @ final.kv) / ((fq * final.k_sum[..., None, :]).sum(-1, keepdim=True) + 1e-6)
    close(full, reads)
    close(full[..., -1, :], linear_attention(q, k, v)[..., -1, :])  # the last query sees everything anyway


def test_no_causal_leak():
    q, k, v = qkv(T=12)
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for t in (q2, k2, v2):
        t[..., 7:, :] = randn(*t[..., 7:, :].shape, seed=9)
    for fn in (linear_attention, lambda *a: linear_attention_recurrent(*a)[0]):
        a, b = fn(q, k, v), fn(q2, k2, v2)
        close(a[..., :7, :], b[..., :7, :], tol=0)
        assert (a[..., 7:, :] - b[..., 7:, :]).abs().max() > 1e-3
    model = LinearAttention(8, 2).double()
    x = randn(2, 12, 8)
    x2 = x.clone()
    x2[:, 7:] = randn(2, 5, 8, seed=3)
    close(model(x)[:, :7], model(x2)[:, :7], tol=0)


def test_feature_map_is_elu_plus_one_and_stays_positive():
    x = torch.linspace(-20, 20, 101, dtype=f64)
    close(elu_feature_map(x), F.elu(x) + 1, tol=1e-15)
    far = torch.tensor([-50.0, -100.0], dtype=f64)
    assert (F.elu(far) + 1 == 0).all() and (elu_feature_map(far) > 0).all()  # elu + 1 rounds to zero there
    big = torch.tensor([100.0], dtype=torch.float32, requires_grad=True)
    elu_feature_map(big).backward()
    assert big.grad is not None and big.grad.item() == 1.0  # no NaN from exp's overflow in the unused branch


def test_step_continues_a_prefix_and_leaves_its_input_state_alone():
    q, k, v = qkv(T=10)
    full = linear_attention(q, k, v)
    prefix, state = linear_attention_recurrent(q[..., :6, :], k[..., :6, :], v[..., :6, :])
    kv_before, k_sum_before = state.kv.clone(), state.k_sum.clone()
    _ = linear_attention_step(q[..., 6, :], k[..., 6, :], v[..., 6, :], state)
    close(state.kv, kv_before, tol=0)  # the step returned a new state; the old one is unchanged
    close(state.k_sum, k_sum_before, tol=0)
    outs = [prefix]
    for t in range(6, 10):
        out, state = linear_attention_step(q[..., t, :], k[..., t, :], v[..., t, :], state)
        outs.append(out[..., None, :])  # (B, H, 1, Dv)
    close(torch.cat(outs, dim=-2), full)


def test_module_parallel_recurrent_and_step_agree():
    torch.manual_seed(0)
    model = LinearAttention(12, 3).double()
    x = randn(2, 20, 12)
    parallel = model(x)
    recurrent, state = model.forward_recurrent(x)
    close(parallel, recurrent)
    assert state.kv.shape == (2, 3, 4, 4) and state.k_sum.shape == (2, 3, 4)
    state_t = None
    for t in range(20):
        out_t, state_t = model.step(x[:, t], state_t)
        close(out_t, parallel[:, t])
    assert state_t is not None
    close(state_t.kv, state.kv)


def test_state_size_does_not_grow_with_the_prefix_but_a_kv_cache_does():
    model = LinearAttention(16, 4)
    x = torch.randn(1, 40, 16)
    cache = KVCache(max_len=40)
    state, sizes, cache_sizes = None, [], []
    with torch.no_grad():
        for t in range(40):
            _, state = model.step(x[:, t], state)
            sizes.append(state.nbytes)
            k = model.k_proj(x[:, t : t + 1]).view(1, 1, 4, 4).transpose(1, 2)  # (B, H, 1, Dh)
            keys, values = cache.append(k, k)
            cache_sizes.append(keys.nbytes + values.nbytes)
    assert len(set(sizes)) == 1 and sizes[0] == (4 * 4 * 4 + 4 * 4) * 4  # H·Dh·Dv + H·Dh floats
    assert cache_sizes[-1] == 40 * cache_sizes[0]


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_linear_attention_in_low_precision_stays_finite_and_close(dtype):
    q, k, v = (t * 3 for t in qkv(T=256, Dh=8, Dv=8, dtype=torch.float32))
    reference = linear_attention(q, k, v)
    lq, lk, lv = q.to(dtype), k.to(dtype), v.to(dtype)
    parallel = linear_attention(lq, lk, lv)
    recurrent, state = linear_attention_recurrent(lq, lk, lv)
    assert parallel.dtype == recurrent.dtype == dtype and state.kv.dtype == torch.float32
    for out in (parallel, recurrent):
        assert torch.isfinite(out).all()
        close(out.float(), reference, tol=0.5)  # the inputs were rounded to 8 or 11 bits
    model = LinearAttention(8, 2).to(dtype)
    x = torch.randn(2, 64, 8).to(dtype)
    out = model(x)
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert torch.isfinite(model.step(x[:, 0])[0]).all()


def test_gradcheck_linear_attention():
    q, k, v = (t.requires_grad_() for t in qkv(B=1, H=2, T=5, Dh=3, Dv=2))
    assert torch.autograd.gradcheck(linear_attention, (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: linear_attention(a, b, c, is_causal=False), (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: linear_attention_recurrent(a, b, c)[0], (q, k, v))


# --- gated linear recurrences: the log-space scan equals the loop ---------------------


def scan_inputs(B=2, T=7, D=5, seed=0, h0_sign=1.0):
    a = torch.sigmoid(randn(B, T, D, seed=seed))  # decays in (0, 1)
    b = torch.exp(randn(B, T, D, seed=seed + 1))  # positive inputs
    h0 = h0_sign * randn(B, D, seed=seed + 2)
    return a, b, h0


@pytest.mark.parametrize("T", [1, 7, 512])
@pytest.mark.parametrize("with_h0", [False, True])
def test_parallel_scan_equals_sequential_scan(T, with_h0):
    a, b, h0 = scan_inputs(T=T)
    h0_or_none = h0 if with_h0 else None
    close(parallel_scan_log(a.log(), b.log(), h0_or_none), sequential_scan(a, b, h0_or_none))


def test_parallel_scan_matches_the_papers_appendix_with_a_positive_h0():
    a, b, h0 = scan_inputs()
    h0 = h0.abs() + 0.1

    def paper_scan(log_coeffs, log_values):  # Feng et al. (2024), appendix B, verbatim
        a_star = F.pad(torch.cumsum(log_coeffs, dim=1), (0, 0, 1, 0))
        log_h0_plus_b_star = torch.logcumsumexp(log_values - a_star, dim=1)
        return torch.exp(a_star + log_h0_plus_b_star)[:, 1:]

    close(parallel_scan_log(a.log(), b.log(), h0), paper_scan(a.log(), torch.cat([h0.log()[:, None], b.log()], 1)))


MODELS = {"mingru": MinGRU, "minlstm": MinLSTM}


def make(kind, I=3, D=5, dtype=f64, seed=0):
    torch.manual_seed(seed)
    return MODELS[kind](I, D).to(dtype)


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("T", [1, 8, 512])
@pytest.mark.parametrize("with_h0", [False, True])
def test_min_rnn_parallel_equals_sequential(kind, T, with_h0):
    model = make(kind)
    x = 2 * randn(4, T, 3)  # wide gate pre-activations: decays close to 0 and to 1
    h0 = randn(4, 5, seed=1) if with_h0 else None
    out_p, last_p = model(x, h0)
    out_s, last_s = model.forward_recurrent(x, h0)
    assert out_p.shape == (4, T, 5) and last_p.shape == (4, 5)
    close(out_p, out_s)
    close(last_p, last_s)


def test_min_gru_follows_its_equations():
    model = make("mingru")
    x, h = randn(2, 6, 3), randn(2, 5, seed=1)
    expected = []
    for t in range(6):
        z = torch.sigmoid(model.linear_z(x[:, t]))
        h_tilde = model.linear_h(x[:, t])
        h_tilde = torch.where(h_tilde >= 0, h_tilde + 0.5, torch.sigmoid(h_tilde))  # g
        h = (1 - z) * h + z * h_tilde
        expected.append(h)
    close(model(x, randn(2, 5, seed=1))[0], torch.stack(expected, 1))


def test_min_lstm_follows_its_equations():
    model = make("minlstm")
    x, h = randn(2, 6, 3), randn(2, 5, seed=1)
    expected = []
    for t in range(6):
        f, i = torch.sigmoid(model.linear_f(x[:, t])), torch.sigmoid(model.linear_i(x[:, t]))
        h = f / (f + i) * h + i / (f + i) * _g(model.linear_h(x[:, t]))
        expected.append(h)
    close(model(x, randn(2, 5, seed=1))[0], torch.stack(expected, 1))


@pytest.mark.parametrize("kind", list(MODELS))
def test_log_coefficients_are_the_logs_of_the_coefficients(kind):
    model = make(kind)
    x = 4 * randn(2, 9, 3)
    for value, log_value in zip(model.coefficients(x), model.log_coefficients(x)):
        close(log_value, value.log())


def test_g_is_positive_continuous_and_log_g_is_its_log():
    x = torch.tensor([-40.0, -1.0, -1e-9, 0.0, 1e-9, 3.0], dtype=f64)
    assert (_g(x) > 0).all()
    close(_log_g(x), _g(x).log())
    close(_g(torch.tensor([-1e-12, 1e-12], dtype=f64)), torch.full((2,), 0.5, dtype=f64), tol=1e-11)


@pytest.mark.parametrize("kind", list(MODELS))
def test_min_rnn_step_by_step_generation_equals_the_forward(kind):
    model = make(kind)
    x, h0 = randn(3, 10, 3), randn(3, 5, seed=1)
    outputs, last = model(x, h0)
    h = None
    for t in range(10):
        h = model.step(x[:, t], h)
        assert h.shape == (3, 5)  # the state is the same size at every step
    close(model(x)[1], h)
    h = h0
    for t in range(10):
        h = model.step(x[:, t], h)
        close(h, outputs[:, t])
    close(h, last)


def test_min_gru_matches_the_reference_implementation():
    from minGRU_pytorch import minGRU as reference  # lucidrains' minGRU-pytorch (the test extra)

    ours = MinGRU(6, 6, bias=False).double()
    theirs = reference(6).double()
    with torch.no_grad():  # theirs: one Linear giving (hidden, gate)
        theirs.to_hidden_and_gate.weight.copy_(torch.cat([ours.linear_h.weight, ours.linear_z.weight]))
    x, h0 = randn(2, 30, 6), randn(2, 6, seed=1).abs() + 0.1  # theirs takes log(h0): positive only
    close(ours(x)[0], theirs(x))
    close(ours(x, h0)[0], theirs(x, h0[:, None]))


@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("kind", list(MODELS))
def test_min_rnn_in_low_precision_stays_finite(kind, dtype):
    model = make(kind, I=8, D=16, dtype=torch.float32)
    x = torch.randn(2, 512, 8, generator=torch.Generator().manual_seed(0))
    reference, _ = model(x)
    low = model.to(dtype)
    for out, _ in (low(x.to(dtype)), low.forward_recurrent(x.to(dtype))):
        assert out.dtype == dtype and torch.isfinite(out).all()
        close(out.float(), reference, tol=0.2)
    assert torch.isfinite(low.step(x[:, 0].to(dtype))).all()


def test_long_sequences_in_float32_stay_finite_and_accurate():
    model = make("mingru", dtype=torch.float32)
    x = 2 * torch.randn(2, 4096, 3, generator=torch.Generator().manual_seed(0))
    out, _ = model(x)
    exact, _ = model.double()(x.double())
    assert torch.isfinite(out).all()
    close(out.double(), exact, tol=1e-2)  # error grows like T times float32's rounding unit


def test_gradcheck_scans_and_min_rnns():
    a, b, h0 = (t.requires_grad_() for t in scan_inputs(B=1, T=4, D=2))
    assert torch.autograd.gradcheck(lambda *t: parallel_scan_log(t[0].log(), t[1].log(), t[2]), (a, b, h0))
    assert torch.autograd.gradcheck(sequential_scan, (a, b, h0))
    for kind in MODELS:
        model = make(kind, I=2, D=3)
        x, h = randn(1, 4, 2).requires_grad_(), randn(1, 3, seed=1).requires_grad_()
        assert torch.autograd.gradcheck(lambda x, h: model(x, h)[0], (x, h))
        assert torch.autograd.gradcheck(lambda x, h: model.forward_recurrent(x, h)[0], (x, h))


# --- errors -------------------------------------------------------------------------


def test_errors_linear_attention():
    q, k, v = qkv()
    with pytest.raises(TypeError, match=r"query must be a torch.Tensor \(got list\)"):
        linear_attention([1.0], k, v)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"query must have at least 2 dimensions.*got shape \(4,\)"):
        linear_attention(q[0, 0, 0], k, v)
    with pytest.raises(ValueError, match=r"query and key must have the same width.*query width 4 and key width 3"):
        linear_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match=r"causal linear attention needs as many keys as queries \(got T=9 and S=5\)"):
        linear_attention(q, k[..., :5, :], v[..., :5, :])
    with pytest.raises(ValueError, match=r"query and key must have the same length T >= 1 \(got 9 and 5\)"):
        linear_attention_recurrent(q, k[..., :5, :], v[..., :5, :])
    with pytest.raises(ValueError, match=r"eps must be a non-negative number \(got -1.0\)"):
        linear_attention(q, k, v, eps=-1.0)
    with pytest.raises(TypeError, match=r"query, key and value must share a dtype"):
        linear_attention(q, k.float(), v)


def test_errors_linear_attention_step_and_state():
    q, k, v = (t[..., 0, :] for t in qkv())  # (B, H, Dh), (B, H, Dh), (B, H, Dv)
    _, state = linear_attention_step(q, k, v)
    with pytest.raises(TypeError, match=r"value must be a torch.Tensor \(got int\)"):
        linear_attention_step(q, k, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"query must have shape \(..., width\) \(got \(\)\)"):
        linear_attention_step(q[0, 0, 0], k, v)
    with pytest.raises(ValueError, match=r"query and key must have the same shape.*got \(2, 3, 4\), \(2, 3, 2\) and"):
        linear_attention_step(q, k[..., :2], v)
    with pytest.raises(ValueError, match=r"state.kv must have shape \(2, 3, 4, 6\) for these inputs \(got \(2, 3, 4, 5\)\)"):
        linear_attention_step(q, k, v, LinearAttentionState(state.kv[..., :5], state.k_sum))
    with pytest.raises(ValueError, match=r"state.k_sum must have shape \(2, 3, 4\) for these inputs \(got \(3, 4\)\)"):
        linear_attention_step(q, k, v, LinearAttentionState(state.kv, state.k_sum[0]))
    with pytest.raises(TypeError, match=r"state.kv must have dtype torch.float64 for these inputs \(got torch.float32\)"):
        linear_attention_step(q, k, v, LinearAttentionState(state.kv.float(), state.k_sum))
    with pytest.raises(TypeError, match=r"state must be a LinearAttentionState \(kv, k_sum\) or None \(got Tensor\)"):
        linear_attention_step(q, k, v, state.kv)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"state.k_sum must be a torch.Tensor \(got list\)"):
        linear_attention_step(q, k, v, (state.kv, [0.0]))  # type: ignore[arg-type]


def test_errors_linear_attention_module():
    with pytest.raises(ValueError, match=r"embed_dim must be divisible by num_heads \(got embed_dim=10 and num_heads=3\)"):
        LinearAttention(10, 3)
    with pytest.raises(ValueError, match=r"num_heads must be a positive int \(got 0\)"):
        LinearAttention(8, 0)
    model = LinearAttention(8, 2)
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, D\) \(got \(3, 8\)\)"):
        model(torch.randn(3, 8))
    with pytest.raises(ValueError, match=r"x must have width D=8 \(got shape \(1, 3, 7\)\)"):
        model(torch.randn(1, 3, 7))
    with pytest.raises(ValueError, match=r"x must have shape \(B, D\) \(got \(1, 3, 8\)\)"):
        model.step(torch.randn(1, 3, 8))
    _, state = model.step(torch.randn(2, 8))
    with pytest.raises(ValueError, match=r"state.kv must have shape \(3, 2, 4, 4\) for these inputs \(got \(2, 2, 4, 4\)\)"):
        model.step(torch.randn(3, 8), state)
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor \(got NoneType\)"):
        model(None)  # type: ignore[arg-type]


def test_errors_scans():
    a, b, h0 = scan_inputs()
    with pytest.raises(ValueError, match=r"coeffs and values must have the same shape \(got \(2, 7, 5\) and \(2, 6, 5\)\)"):
        sequential_scan(a, b[:, :6])
    with pytest.raises(ValueError, match=r"log_values must have shape \(B, T, D\) \(got \(7, 5\)\)"):
        parallel_scan_log(a, b[0])
    with pytest.raises(ValueError, match=r"h0 must have shape \(B, D\) = \(2, 5\) \(got \(2, 4\)\)"):
        parallel_scan_log(a, b, h0[:, :4])
    with pytest.raises(TypeError, match=r"coeffs must be a floating-point tensor \(got dtype torch.int64\)"):
        sequential_scan(a.long(), b)
    with pytest.raises(ValueError, match=r"log_coeffs must hold at least one time step \(got shape \(2, 0, 5\)\)"):
        parallel_scan_log(a[:, :0], b[:, :0])


@pytest.mark.parametrize("kind", list(MODELS))
def test_errors_min_rnns(kind):
    with pytest.raises(ValueError, match=r"hidden_size must be a positive int \(got 0\)"):
        MODELS[kind](3, 0)
    model = make(kind)
    x = randn(2, 4, 3)
    with pytest.raises(TypeError, match=r"input must be a torch.Tensor \(got list\)"):
        model([[1.0]])
    with pytest.raises(ValueError, match=r"input must have shape \(B, T, I\) \(got \(4, 3\)\)"):
        model(x[0])
    with pytest.raises(ValueError, match=r"input must have shape \(B, T, I\) with I=3 and T >= 1 \(got \(2, 4, 2\)\)"):
        model.forward_recurrent(x[..., :2])
    with pytest.raises(ValueError, match=r"input must have shape \(B, T, I\) with I=3 and T >= 1 \(got \(2, 0, 3\)\)"):
        model(x[:, :0])
    with pytest.raises(ValueError, match=r"h0 must have shape \(B, D\) = \(2, 5\) \(got \(1, 2, 5\)\)"):
        model(x, randn(1, 2, 5))
    with pytest.raises(ValueError, match=r"h0 must have shape \(B, D\) = \(2, 5\) \(got \(3, 5\)\)"):
        model(x, randn(3, 5))
    with pytest.raises(ValueError, match=r"input must have shape \(B, I\) \(got \(2, 4, 3\)\)"):
        model.step(x)
    with pytest.raises(TypeError, match=r"h must be a torch.Tensor \(got float\)"):
        model.step(x[:, 0], 0.0)  # type: ignore[arg-type]
