"""Tests for attnlib.circuits: head maps, induction scores, head ablation, attribution."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from attnlib.attention import MultiHeadAttention
from attnlib.circuits import (
    ablate_heads,
    attention_modules,
    attention_rollout,
    collect_attention,
    duplicate_token_score,
    gradient_x_input,
    head_means,
    leave_one_out,
    prefix_matching_score,
    previous_token_score,
    record_attention,
    repeated_random_tokens,
    spearman,
)
from attnlib.gpt import GPT
from attnlib.transformer import EncoderLayer, TransformerConfig

# --- a two-layer attention-only model with a hand-built induction circuit --------------
#
# Residual stream: token one-hot | position one-hot | previous token | prediction.
# Layer 0, head 0 attends from position t to t - 1 (its query is t's position, its key
# s's position moved one up) and writes that token into "previous token". Layer 1,
# head 0 attends from the current token to the positions whose previous token equals it
# and writes their token into "prediction", which the head reads out. Heads 1 do nothing.

V, N = 8, 5  # token 0 is BOS; a copy has N distinct tokens from 1..7
T = 2 * N + 1
TOK, POS, PREV, OUT = 0, V, V + T, 2 * V + T
D, H = 36, 2
DH = D // H
SHARP = 60.0


class AttentionOnly(nn.Module):
    """Token + position embeddings, causal attention-only EncoderLayers, a linear head."""

    def __init__(self, d_model: int = D, num_heads: int = H, num_layers: int = 2, max_len: int = T) -> None:
        super().__init__()
        config = TransformerConfig(
            src_vocab_size=V, tgt_vocab_size=V, d_model=d_model, num_heads=num_heads, num_encoder_layers=num_layers,
            dropout=0.0, feed_forward=False, layer_norm=False, norm_first=True, pad_id=None, max_len=max_len,
        )
        self.token_embedding = nn.Embedding(V, d_model)
        self.position_embedding = nn.Embedding(max_len, d_model)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(num_layers))
        self.head = nn.Linear(d_model, V, bias=False)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.token_embedding(tokens) + self.position_embedding(torch.arange(tokens.size(1)))
        for layer in self.layers:
            x, _ = layer(x, is_causal=True)
        return self.head(x)


def induction_model() -> AttentionOnly:
    model = AttentionOnly().double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.token_embedding.weight[:, TOK:TOK + V] = torch.eye(V)
        model.position_embedding.weight[:, POS:POS + T] = torch.eye(T)
        prev, ind = model.layers[0].self_attn, model.layers[1].self_attn
        for i in range(T):  # previous-token head: query = own position, key = position + 1
            prev.q_proj.weight[i, POS + i] = SHARP
            if i + 1 < T:
                prev.k_proj.weight[i + 1, POS + i] = 1.0
        for j in range(V):
            prev.v_proj.weight[j, TOK + j] = 1.0
            prev.out_proj.weight[PREV + j, j] = 1.0
            ind.q_proj.weight[j, TOK + j] = SHARP  # induction head: query = token, key = previous token
            ind.k_proj.weight[j, PREV + j] = 1.0
            ind.v_proj.weight[j, TOK + j] = 1.0
            ind.out_proj.weight[OUT + j, j] = 1.0
            model.head.weight[j, OUT + j] = 10.0
    return model


def induction_batch(batch_size: int = 6, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return repeated_random_tokens(batch_size, N, V, generator=g, low=1, bos_id=0, distinct=True)


def second_copy_accuracy(model: nn.Module, tokens: Tensor) -> float:
    logits = model(tokens)  # position t predicts t + 1; the second copy's tokens N + 2 .. 2N are predictable
    predicted = logits[:, N + 1:-1].argmax(-1)
    return (predicted == tokens[:, N + 2:]).double().mean().item()


def make_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(11, d_model=16, num_heads=4, num_layers=2, dropout=0.0, max_len=32).double().eval()


def patched(module: nn.Module) -> bool:
    """Whether any attention instance still carries a wrapper or a hook of ours."""
    return any(
        "attend" in m.__dict__ or len(m.out_proj._forward_pre_hooks) > 0
        for m in module.modules() if isinstance(m, MultiHeadAttention)
    )


# --- the hand-built circuit, seen through the scores and the ablations ----------------


def test_hand_built_heads_score_as_built():
    model, tokens = induction_model(), induction_batch()
    maps = collect_attention(model, tokens)
    assert maps.shape == (2, 6, H, T, T)
    prev = previous_token_score(maps).mean(1)  # (L, H)
    induction = prefix_matching_score(maps, period=N).mean(1)
    assert prev[0, 0] > 0.99 and induction[1, 0] > 0.99
    assert prev[0, 1] < 0.5 and induction[0, 0] < 0.1 and induction[1, 1] < 0.3 and prev[1, 0] < 0.5
    assert duplicate_token_score(maps, period=N).mean(1).max() < 0.3
    assert second_copy_accuracy(model, tokens) == 1.0


def test_ablating_the_previous_token_head_breaks_induction():
    model, tokens = induction_model(), induction_batch()
    with torch.no_grad(), ablate_heads(model, {(0, 0)}):
        maps = collect_attention(model, tokens)
        accuracy = second_copy_accuracy(model, tokens)
    assert prefix_matching_score(maps, period=N).mean(1)[1, 0] < 0.3
    assert accuracy < 0.5
    with torch.no_grad(), ablate_heads(model, {(0, 1), (1, 1)}):  # the idle heads: nothing changes
        assert second_copy_accuracy(model, tokens) == 1.0
    means = head_means(model, induction_batch(seed=1))
    with torch.no_grad(), ablate_heads(model, {(1, 0)}, mode="mean", means=means):
        assert second_copy_accuracy(model, tokens) < 0.5
    assert not patched(model)
    with torch.no_grad():
        assert second_copy_accuracy(model, tokens) == 1.0


def test_attributions_find_the_copied_token():
    model, tokens = induction_model(), induction_batch(batch_size=2)
    position = 2 * N - 1  # holds x_{N-1}; the next token x_N sits at N, after x_{N-1} at N - 1
    target = tokens[:, 2 * N]
    others = [j for j in range(T) if j not in (N - 1, N, position)]
    for scores in (leave_one_out(model, tokens, position, target),
                   leave_one_out(model, tokens, position, target, replacement_id=0)):
        assert scores.shape == (2, T)
        assert (scores[:, [N - 1, N]] > 5).all() and scores[:, others].abs().max() < 1e-3
        assert scores[:, position + 1:].abs().max() < 1e-9  # causal: later tokens cannot matter
    # Gradient x input sees the copied token but not x_{N-1}, which the saturated
    # previous-token head reads: its gradient is nearly zero. Attributions disagree.
    scores = gradient_x_input(model, tokens, position, target)
    assert (scores[:, N] > 5).all() and scores[:, N - 1].abs().max() < 0.01


# --- the scores on synthetic maps ---------------------------------------------------------


def exact_map(T: int, column) -> Tensor:
    maps = torch.zeros(T, T, dtype=torch.float64)
    for t in range(T):
        maps[t, column(t)] = 1.0
    return maps


def test_scores_of_exact_and_uniform_maps():
    n, T = 4, 8
    prev = exact_map(T, lambda t: max(t - 1, 0))
    induction = exact_map(T, lambda t: t - n + 1 if t >= n else t)
    duplicate = exact_map(T, lambda t: t - n if t >= n else t)
    uniform = torch.ones(T, T, dtype=torch.float64).tril()
    uniform = uniform / uniform.sum(-1, keepdim=True)
    assert previous_token_score(prev).item() == 1.0
    assert prefix_matching_score(induction).item() == 1.0
    assert duplicate_token_score(duplicate).item() == 1.0
    assert prefix_matching_score(prev).item() == 0.0 and duplicate_token_score(induction).item() == 0.0
    mean_inverse = lambda rows: sum(1 / (t + 1) for t in rows) / len(rows)  # noqa: E731
    assert previous_token_score(uniform).item() == pytest.approx(mean_inverse(range(1, T)))
    assert prefix_matching_score(uniform).item() == pytest.approx(mean_inverse(range(n, T)))
    assert duplicate_token_score(uniform).item() == pytest.approx(mean_inverse(range(n, T)))
    # leading dimensions are kept; a BOS shifts the copies by one (T odd, period T // 2)
    stacked = torch.stack([prev, induction]).expand(3, 2, T, T)
    assert prefix_matching_score(stacked).shape == (3, 2)
    bos = exact_map(T + 1, lambda t: t - n + 1 if t >= n + 1 else t)
    assert prefix_matching_score(bos).item() == 1.0 and prefix_matching_score(bos, period=n).item() == 1.0


def test_repeated_random_tokens():
    g = torch.Generator().manual_seed(3)
    tokens = repeated_random_tokens(4, 6, 50, generator=g, low=10)
    assert tokens.shape == (4, 12) and tokens.dtype == torch.int64
    assert torch.equal(tokens[:, :6], tokens[:, 6:]) and tokens.min() >= 10 and tokens.max() < 50
    again = repeated_random_tokens(4, 6, 50, generator=torch.Generator().manual_seed(3), low=10)
    assert torch.equal(tokens, again)
    distinct = repeated_random_tokens(20, 7, 8, low=1, bos_id=0, distinct=True)
    assert distinct.shape == (20, 15) and (distinct[:, 0] == 0).all()
    assert all(len(set(row[1:8].tolist())) == 7 for row in distinct)


# --- recording maps ----------------------------------------------------------------------


def test_recorded_maps_equal_need_weights():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).double().eval()
    q, kv = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, 7, 16, dtype=torch.float64)
    out_ref, w_ref = mha(q, kv, kv, need_weights=True, average_attn_weights=False)
    fused_out, _ = mha(q, kv, kv)
    with record_attention(mha) as record:
        out, w = mha(q, kv, kv)  # the caller asked for no weights: it gets none
        out_avg, w_avg = mha(q, kv, kv, None, None, True)  # positional need_weights, averaged by default
    assert w is None and torch.allclose(out, fused_out, atol=1e-12)
    assert torch.equal(out_avg, out_ref) and torch.allclose(w_avg, w_ref.mean(1))
    assert record.names == [""] and len(record.maps[""]) == 2
    assert torch.equal(record.maps[""][0], w_ref) and not record.maps[""][0].requires_grad
    assert not patched(mha)


def test_collect_attention_from_gpt_matches_its_layers():
    model = make_gpt()
    tokens = torch.randint(0, 11, (3, 9), generator=torch.Generator().manual_seed(0))
    maps = collect_attention(model, tokens)
    assert maps.shape == (2, 3, 4, 9, 9)
    with torch.no_grad():
        x = model.token_embedding(tokens) + model.position_embedding(torch.arange(9))
        for layer, recorded in zip(model.blocks.layers, maps):
            x, weights = layer(x, is_causal=True, need_weights=True)
            assert torch.allclose(recorded, weights, atol=1e-12)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 3, 4, 9, dtype=torch.float64))
    assert maps.triu(diagonal=1).abs().max() == 0  # causal
    assert [name for name, _ in attention_modules(model)] == ["blocks.layers.0.self_attn", "blocks.layers.1.self_attn"]
    with torch.no_grad(), record_attention(model) as record:
        logits = model(tokens)
    assert torch.allclose(logits, model(tokens), atol=1e-10) and not patched(model)


def test_records_a_direct_attend_call_and_keeps_gradients():
    """LlamaBlock calls attend itself, bypassing forward: the recorder still sees it."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, num_kv_heads=2)
    x = torch.randn(2, 6, 16)
    q, k, v = mha._split_heads(mha.q_proj(x)), mha._split_heads(mha.k_proj(x), 2), mha._split_heads(mha.v_proj(x), 2)
    with record_attention([mha], detach=False) as record:
        out, weights = mha.attend(q, k, v, is_causal=True)
    assert weights is None and record.stack().shape == (1, 2, 4, 6, 6) and record.names == ["0"]
    assert record.maps["0"][0].requires_grad


def test_llama_model_maps_and_ablation():
    from attnlib import llama

    torch.manual_seed(0)
    model = llama.LlamaModel(
        llama.LlamaConfig(vocab_size=11, d_model=16, num_heads=4, num_kv_heads=2, num_layers=2, dim_feedforward=24,
                          max_len=32)
    ).eval()
    tokens = torch.randint(0, 11, (2, 7))
    maps = collect_attention(model, tokens)
    assert maps.shape == (2, 2, 4, 7, 7) and maps.triu(diagonal=1).abs().max() == 0
    means = head_means(model, tokens)
    assert means.shape == (2, 4, 4)
    with torch.no_grad(), ablate_heads(model, {(1, 3)}, mode="mean", means=means):
        model(tokens)
    assert not patched(model)


def test_wrappers_and_hooks_are_removed_after_an_error():
    model = make_gpt()
    tokens = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(RuntimeError, match="boom"):
        with record_attention(model), ablate_heads(model, {(0, 1)}):
            assert patched(model)
            model(tokens)
            raise RuntimeError("boom")
    assert not patched(model)
    with record_attention(model) as outer:  # nested: both record, the inner one restores the outer's wrapper
        with record_attention(model) as inner:
            model(tokens)
        model(tokens)
    assert len(outer.maps["blocks.layers.0.self_attn"]) == 2 and len(inner.maps["blocks.layers.0.self_attn"]) == 1
    assert not patched(model)
    with pytest.raises(ValueError, match=r"stack needs exactly one call per attention module \(got calls"):
        outer.stack()


# --- ablation is exactly the removal of a head's term -----------------------------------------


def test_zero_ablation_removes_exactly_that_heads_term():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).double().eval()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    seen = []
    handle = mha.out_proj.register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0]))
    out, _ = mha(x, x, x, is_causal=True)
    handle.remove()
    heads = seen[0]  # (B, T, H * Dh)
    with ablate_heads(mha, [(0, 2)]):
        ablated, _ = mha(x, x, x, is_causal=True)
    zeroed = heads.clone()
    zeroed[..., 8:12] = 0
    assert torch.allclose(ablated, mha.out_proj(zeroed), atol=1e-12)
    term = heads[..., 8:12] @ mha.out_proj.weight[:, 8:12].T  # head 2's contribution W_O^2 o^2
    assert torch.allclose(ablated, out - term, atol=1e-12)
    assert not patched(mha)


def test_mean_ablation():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).double().eval()
    constant = torch.randn(16, dtype=torch.float64).expand(2, 5, 16)  # every position the same input
    means = head_means(mha, constant, constant, constant)
    assert means.shape == (1, 4, 4)
    out, _ = mha(constant, constant, constant)
    with ablate_heads(mha, {(0, 0), (0, 3)}, mode="mean", means=means):
        same, _ = mha(constant, constant, constant)
    assert torch.allclose(same, out, atol=1e-12)  # a head's own mean on a constant input: a no-op
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    seen = []
    with ablate_heads(mha, {(0, 1)}, mode="mean", means=means):
        handle = mha.out_proj.register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0]))
        mha(x, x, x)
        handle.remove()
    assert torch.equal(seen[0][..., 4:8], means[0, 1].expand(2, 5, 4))


# --- attribution and rank correlation ------------------------------------------------------


def test_gradient_x_input_matches_autograd():
    model = make_gpt()
    tokens = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(1))
    target = torch.tensor([3, 7])
    with torch.no_grad():  # the function turns gradients back on
        scores = gradient_x_input(model, tokens, -1, target)
    embedded = model.token_embedding(tokens).detach().requires_grad_(True)
    x = embedded + model.position_embedding(torch.arange(6))
    for layer in model.blocks.layers:
        x, _ = layer(x, is_causal=True)
    logits = model.head(model.blocks.norm(x))
    (grad,) = torch.autograd.grad(logits[[0, 1], 5, target].sum(), embedded)
    assert torch.allclose(scores, (grad * embedded).sum(-1), atol=1e-12)
    assert all(p.grad is None for p in model.parameters())
    assert scores.shape == (2, 6)


def test_leave_one_out_replacement_matches_a_manual_loop():
    model = make_gpt()
    tokens = torch.randint(1, 11, (2, 5), generator=torch.Generator().manual_seed(2))
    scores = leave_one_out(model, tokens, 3, 4, replacement_id=0)
    with torch.no_grad():
        base = model(tokens)[:, 3, 4]
        for j in range(5):
            changed = tokens.clone()
            changed[:, j] = 0
            assert torch.allclose(scores[:, j], base - model(changed)[:, 3, 4], atol=1e-12)
    masked = leave_one_out(model, tokens, 3, 4)
    assert masked[:, 4].abs().max() < 1e-12 and masked[:, :4].abs().min() > 0
    assert not patched(model)


def test_spearman():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (3, 12), generator=g).double()  # many ties
    b = torch.randn(3, 12, generator=g)
    rho = spearman(a, b)
    assert rho.shape == (3,) and rho.dtype == torch.float64
    from scipy import stats  # installed with scikit-learn (the book extra)

    for i in range(3):
        assert rho[i].item() == pytest.approx(stats.spearmanr(a[i].numpy(), b[i].numpy()).statistic, abs=1e-12)
    assert spearman(torch.tensor([1.0, 2.0, 2.0, 3.0]), torch.tensor([10, 20, 20, 30])).item() == pytest.approx(1.0)
    assert spearman(b[0], -b[0]).item() == pytest.approx(-1.0)
    assert spearman(torch.ones(4), b[0, :4]).isnan()


def test_attention_rollout():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 2, 4, 5, 5, generator=g, dtype=torch.float64).tril()
    maps = maps / maps.sum(-1, keepdim=True)
    flow = attention_rollout(maps)
    assert flow.shape == (2, 5, 5) and torch.allclose(flow.sum(-1), torch.ones(2, 5, dtype=torch.float64))
    one = attention_rollout(maps[:1], residual=0.25)
    assert torch.allclose(one, 0.75 * maps[0].mean(1) + 0.25 * torch.eye(5, dtype=torch.float64))
    assert torch.equal(attention_rollout(maps, residual=1), torch.eye(5, dtype=torch.float64).expand(2, 5, 5))


# --- bad input ------------------------------------------------------------------------------------


def test_errors():
    model = make_gpt()
    maps = torch.rand(2, 6, 6)
    tokens = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"model must contain an attnlib MultiHeadAttention \(got a Linear"):
        attention_modules(nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"model must be an nn.Module or a sequence of MultiHeadAttention \(got int\)"):
        attention_modules(3)
    with pytest.raises(TypeError, match=r"detach must be a bool \(got 1\)"):
        with record_attention(model, detach=1):
            pass
    with pytest.raises(ValueError, match=r"maps must be a floating tensor of shape \(\.\.\., T, T\) \(got shape \(6,\)"):
        previous_token_score(torch.rand(6))
    with pytest.raises(ValueError, match=r"maps must be self-attention maps \(\.\.\., T, T\) with T >= 2 \(got shape \(6, 5\)\)"):
        prefix_matching_score(torch.rand(6, 5))
    with pytest.raises(ValueError, match=r"period must be an int in \[1, T // 2 = 3\] for maps of length T = 6 \(got 4\)"):
        duplicate_token_score(maps, period=4)
    with pytest.raises(ValueError, match=r"period must be a positive int \(got 0\)"):
        repeated_random_tokens(2, 0, 10)
    with pytest.raises(ValueError, match=r"low must be an int in \[0, vocab_size=10\) \(got 10\)"):
        repeated_random_tokens(2, 3, 10, low=10)
    with pytest.raises(ValueError, match=r"period must be at most vocab_size - low = 3 with distinct=True \(got 4\)"):
        repeated_random_tokens(2, 4, 10, low=7, distinct=True)
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None \(got int\)"):
        repeated_random_tokens(2, 3, 10, generator=0)
    with pytest.raises(ValueError, match=r"mode must be 'zero' or 'mean' \(got 'resample'\)"):
        with ablate_heads(model, {(0, 0)}, mode="resample"):
            pass
    with pytest.raises(TypeError, match=r"heads must hold \(layer, head\) pairs of ints \(got 0\)"):
        with ablate_heads(model, [0]):
            pass
    with pytest.raises(ValueError, match=r"layer in heads must be an int in \[0, number of attention modules=2\) \(got 2\)"):
        with ablate_heads(model, {(2, 0)}):
            pass
    with pytest.raises(ValueError, match=r"head in heads for layer 1 must be an int in \[0, num_heads=4\) \(got 4\)"):
        with ablate_heads(model, {(1, 4)}):
            pass
    with pytest.raises(ValueError, match=r"means must be head_means\(model, \.\.\.\)'s tensor of shape \(L, H, Dh\) = \(2, 4, 4\) \(got NoneType\)"):
        with ablate_heads(model, {(0, 0)}, mode="mean"):
            pass
    with pytest.raises(ValueError, match=r"means is only used with mode='mean'"):
        with ablate_heads(model, {(0, 0)}, means=torch.zeros(2, 4, 4)):
            pass
    with pytest.raises(TypeError, match=r"model must be an nn.Module to run on the reference batch \(got list\)"):
        head_means([model.blocks.layers[0].self_attn], tokens)
    with pytest.raises(ValueError, match=r"tokens must be an integer tensor of shape \(B, T\) \(got shape \(4,\)"):
        gradient_x_input(model, tokens[0], 0, 1)
    with pytest.raises(ValueError, match=r"position must be an int in \[-4, 4\) \(got 4\)"):
        gradient_x_input(model, tokens, 4, 1)
    with pytest.raises(ValueError, match=r"target must be an int or a tensor of shape \(B,\) = \(1,\) \(got \(2,\)\)"):
        leave_one_out(model, tokens, 0, torch.tensor([1, 2]))
    with pytest.raises(TypeError, match=r"embedding must be the model's token embedding module \(got NoneType\)"):
        gradient_x_input(nn.Embedding(11, 4), tokens, 0, 1)
    with pytest.raises(TypeError, match=r"replacement_id must be an int token id or None \(got float\)"):
        leave_one_out(model, tokens, 0, 1, replacement_id=0.0)
    with pytest.raises(ValueError, match=r"a and b must have the same shape \(got \(3,\) and \(4,\)\)"):
        spearman(torch.rand(3), torch.rand(4))
    with pytest.raises(ValueError, match=r"a must be a real tensor of shape \(\.\.\., N\) with N >= 2 \(got \(1,\)\)"):
        spearman(torch.rand(1), torch.rand(1))
    with pytest.raises(ValueError, match=r"maps must have shape \(L, B, H, T, T\) \(got \(2, 6, 6\)\)"):
        attention_rollout(maps)
    with pytest.raises(ValueError, match=r"residual must be a number in \[0, 1\] \(got 2\)"):
        attention_rollout(maps[None, None], residual=2)


def test_random_repeats():
    from attnlib.circuits import random_repeats

    g = torch.Generator().manual_seed(0)
    tokens, mask = random_repeats(200, 20, 3, 8, 40, generator=g, distinct=True)
    assert tokens.shape == (200, 20) and mask.shape == (200, 19) and mask.dtype == torch.bool
    periods = set()
    for row, m in zip(tokens, mask):
        n = int(m.sum()) + 1  # the second copy's n - 1 positions whose next token is in it
        periods.add(n)
        assert torch.equal(row[20 - n:], row[20 - 2 * n:20 - n])  # the copy, twice, at the end
        assert len(set(row[20 - n:].tolist())) == n  # a copy has distinct tokens
        assert not m[:20 - n].any() and m[20 - n:].all()
    assert periods == set(range(3, 9))
    starts = tokens[:, :4]  # random tokens before every copy (n <= 8): not all alike
    assert len(set(starts.flatten().tolist())) > 20
    again, _ = random_repeats(200, 20, 3, 8, 40, generator=torch.Generator().manual_seed(0), distinct=True)
    assert torch.equal(tokens, again)
    fixed, fixed_mask = random_repeats(4, 10, 5, 5, 5, distinct=True)  # two copies fill the row
    assert torch.equal(fixed[:, :5], fixed[:, 5:]) and fixed_mask.sum() == 4 * 4
    plain, _ = random_repeats(50, 12, 2, 6, 3)  # with repetition: a small vocabulary is fine
    assert plain.max() < 3
    with pytest.raises(ValueError, match=r"max_period must be an int in \[3, length // 2 \+ 1=6\) \(got 6\)"):
        random_repeats(2, 10, 3, 6, 40)
    with pytest.raises(ValueError, match=r"vocab_size must be at least max_period = 4 for distinct tokens \(got 3\)"):
        random_repeats(2, 10, 3, 4, 3, distinct=True)
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None \(got int\)"):
        random_repeats(2, 10, 3, 4, 40, generator=1)  # type: ignore[arg-type]
