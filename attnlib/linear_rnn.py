"""Recurrence returns: linear attention and gated linear recurrences (minGRU, minLSTM).

Chapter 16, "Recurrence returns", derives every function here. Two ideas meet:

* **Linear attention** (Katharopoulos et al., 2020, "Transformers are RNNs"). Replace
  softmax's ``exp(q·k)`` by a product of positive features ``φ(q)·φ(k)``, with
  ``φ(x) = elu(x) + 1``. Causal attention then becomes a recurrence on a fixed-size
  state: ``S_t = S_{t-1} + φ(k_t) v_tᵀ`` and ``z_t = z_{t-1} + φ(k_t)``, read out as
  ``o_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + eps)``. The same numbers come from a masked
  ``(T, T)`` matrix product (the *parallel* form, for training) or from one state
  update per token (the *recurrent* form, for generation: the state does not grow
  with the prefix, unlike a KV cache).
* **Gated linear recurrences** (Feng et al., 2024, "Were RNNs All We Needed?"). Drop
  ``h_{t-1}`` from the gates of the GRU and the LSTM and the update becomes
  ``h_t = a_t ⊙ h_{t-1} + b_t``, with ``a_t`` and ``b_t`` computed from ``x_t`` alone.
  Such a recurrence can be evaluated for all ``t`` at once by a *scan*: here in log
  space, with :func:`torch.logcumsumexp` (Heinsen, 2023), as in the paper's appendix.

Chapter 16's test bench, one shell around four sequence mixers, is :mod:`attnlib.mixers`.

Each parallel form is tested against its loop in float64 (to 1e-10). For float16 and
bfloat16 inputs, the functions compute in float32 and return the input's dtype; the
linear-attention state is then kept in float32.

Shape legend: ``B`` batch, ``H`` heads, ``T`` time steps, ``D`` model width
(``embed_dim``) or state width (``hidden_size``), ``Dh`` key width per head, ``Dv``
value width per head, ``I`` input width (``input_size``), ``...`` leading dimensions.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import is_number, positive_int
from .functional import _check_qkv

__all__ = [
    "elu_feature_map",
    "LinearAttentionState",
    "linear_attention",
    "linear_attention_step",
    "linear_attention_recurrent",
    "LinearAttention",
    "sequential_scan",
    "parallel_scan_log",
    "MinGRU",
    "MinLSTM",
]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float16 and bfloat16 (long sums lose too much in them), else ``dtype``."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _check_eps(eps: object) -> float:
    if not is_number(eps) or not eps >= 0:
        raise ValueError(f"eps must be a non-negative number (got {eps!r})")
    return float(eps)


def _check_tensor(name: str, t: object, shape: str, ndim: Optional[int]) -> Tensor:
    """A floating-point tensor with ``ndim`` dimensions (``None``: at least one), or an error."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (got {type(t).__name__})")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (got dtype {t.dtype})")
    wrong_rank = t.dim() == 0 if ndim is None else t.dim() != ndim
    if wrong_rank:
        raise ValueError(f"{name} must have shape {shape} (got {tuple(t.shape)})")
    return t


# --- linear attention ---------------------------------------------------------------


def elu_feature_map(x: Tensor) -> Tensor:
    """The positive feature map ``φ(x) = elu(x) + 1`` of Katharopoulos et al. (2020), section 3.2.1.

    Args:
        x: queries or keys.

    Shapes:
        any shape; the output has the same shape.

    Returns:
        ``x + 1`` where ``x > 0`` and ``exp(x)`` elsewhere: positive, so every similarity
        ``φ(q)·φ(k)`` is positive. Computed as written rather than as ``elu(x) + 1``,
        whose ``(exp(x) - 1) + 1`` rounds to exactly 0 for ``x`` below about -37 in
        float64 (-17 in float32).
    """
    return torch.where(x > 0, x + 1.0, torch.exp(x.clamp(max=0.0)))  # clamp: no inf in the unused branch


class LinearAttentionState(NamedTuple):
    """The fixed-size state of causal linear attention after ``t`` tokens.

    Its size depends on ``Dh`` and ``Dv``, never on ``t``. Chapter 16.
    """

    kv: Tensor
    """``S_t = Σ_{j≤t} φ(k_j) v_jᵀ``, shape ``(..., Dh, Dv)``."""
    k_sum: Tensor
    """``z_t = Σ_{j≤t} φ(k_j)``, the normaliser, shape ``(..., Dh)``."""

    @property
    def nbytes(self) -> int:
        """Bytes held by the state (compare :class:`attnlib.attention.KVCache`, which grows with ``t``)."""
        return self.kv.nbytes + self.k_sum.nbytes


def linear_attention(query: Tensor, key: Tensor, value: Tensor, is_causal: bool = True, eps: float = 1e-6) -> Tensor:
    """Linear attention, all positions at once (the parallel form, for training).

    ``o_i = Σ_j A_ij v_j / (Σ_j A_ij + eps)`` with ``A_ij = φ(q_i)·φ(k_j)``. Causal:
    ``j ≤ i`` (the lower triangle of ``A``; its row sums are ``φ(q_i)·Σ_{j≤i} φ(k_j)``),
    which costs ``O(T² Dh)`` like softmax attention. Not causal: every ``j``, and by
    associativity ``φ(Q) (φ(K)ᵀ V)`` costs only ``O(T Dh Dv)``.

    Args:
        query: queries.
        key: keys.
        value: values.
        is_causal: let position ``i`` see positions ``0..i`` only (needs ``S == T``).
        eps: added to the normaliser.

    Shapes:
        query: ``(..., T, Dh)``; key: ``(..., S, Dh)``; value: ``(..., S, Dv)``;
        returns ``(..., T, Dv)``.

    Returns:
        The attended values, in the query's dtype.

    Katharopoulos et al. (2020), "Transformers are RNNs", sections 3.2 and 3.3. Chapter 16.
    """
    _check_qkv(query, key, value)
    eps = _check_eps(eps)
    if is_causal and query.size(-2) != key.size(-2):
        raise ValueError(
            f"causal linear attention needs as many keys as queries (got T={query.size(-2)} and S={key.size(-2)})"
        )
    compute = _compute_dtype(query.dtype)
    q = elu_feature_map(query.to(compute))  # (..., T, Dh)
    k = elu_feature_map(key.to(compute))  # (..., S, Dh)
    v = value.to(compute)  # (..., S, Dv)
    if not is_causal:
        kv = k.transpose(-2, -1) @ v  # (..., Dh, Dv): one state for the whole sequence
        normaliser = q @ k.sum(dim=-2).unsqueeze(-1)  # (..., T, 1)
        return ((q @ kv) / (normaliser + eps)).to(query.dtype)  # (..., T, Dv)
    scores = (q @ k.transpose(-2, -1)).tril()  # (..., T, T): zero above the diagonal
    out = (scores @ v) / (scores.sum(dim=-1, keepdim=True) + eps)  # (..., T, Dv)
    return out.to(query.dtype)


def _check_state(state: object, lead: Tuple[int, ...], Dh: int, Dv: int, dtype: torch.dtype) -> LinearAttentionState:
    if not (isinstance(state, tuple) and len(state) == 2):
        raise TypeError(f"state must be a LinearAttentionState (kv, k_sum) or None (got {type(state).__name__})")
    kv, k_sum = state
    for name, t, shape in (("state.kv", kv, lead + (Dh, Dv)), ("state.k_sum", k_sum, lead + (Dh,))):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor (got {type(t).__name__})")
        if t.shape != shape:
            raise ValueError(f"{name} must have shape {shape} for these inputs (got {tuple(t.shape)})")
        if t.dtype != dtype:
            raise TypeError(f"{name} must have dtype {dtype} for these inputs (got {t.dtype})")
    return LinearAttentionState(kv, k_sum)


def linear_attention_step(
    query: Tensor, key: Tensor, value: Tensor, state: Optional[LinearAttentionState] = None, eps: float = 1e-6
) -> Tuple[Tensor, LinearAttentionState]:
    """One token of causal linear attention: update the state, then read it (the recurrent form).

    ``S_t = S_{t-1} + φ(k_t) v_tᵀ``, ``z_t = z_{t-1} + φ(k_t)``,
    ``o_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + eps)``: the cost per token is ``O(Dh Dv)``,
    however long the prefix.

    Args:
        query: this token's query.
        key: this token's key.
        value: this token's value.
        state: the state after the previous tokens (zeros, i.e. no prefix, if ``None``).
        eps: added to the normaliser.

    Shapes:
        query, key: ``(..., Dh)``; value: ``(..., Dv)``; state: ``kv`` ``(..., Dh, Dv)``
        and ``k_sum`` ``(..., Dh)``. Returns ``(..., Dv)`` and a state of the same shapes.

    Returns:
        ``(out, new_state)``; ``out`` in the query's dtype, the state in float32 for
        float16/bfloat16 inputs and in the query's dtype otherwise. The input state is
        not modified.

    Katharopoulos et al. (2020), "Transformers are RNNs", section 3.4. Chapter 16.
    """
    for name, t in (("query", query), ("key", key), ("value", value)):
        _check_tensor(name, t, "(..., width)", None)
    if key.shape != query.shape or value.shape[:-1] != query.shape[:-1]:
        raise ValueError(
            "query and key must have the same shape (..., Dh) and value the shape (..., Dv) with the same "
            f"leading dimensions (got {tuple(query.shape)}, {tuple(key.shape)} and {tuple(value.shape)})"
        )
    if key.dtype != query.dtype or value.dtype != query.dtype:
        raise TypeError(f"query, key and value must share a dtype (got {query.dtype}, {key.dtype}, {value.dtype})")
    eps = _check_eps(eps)
    compute = _compute_dtype(query.dtype)
    lead, Dh, Dv = tuple(query.shape[:-1]), query.size(-1), value.size(-1)
    if state is None:
        state = LinearAttentionState(
            query.new_zeros(lead + (Dh, Dv), dtype=compute), query.new_zeros(lead + (Dh,), dtype=compute)
        )
    state = _check_state(state, lead, Dh, Dv, compute)
    q = elu_feature_map(query.to(compute))  # (..., Dh)
    k = elu_feature_map(key.to(compute))  # (..., Dh)
    v = value.to(compute)  # (..., Dv)
    kv = state.kv + k.unsqueeze(-1) * v.unsqueeze(-2)  # (..., Dh, Dv): add the outer product φ(k) vᵀ
    k_sum = state.k_sum + k  # (..., Dh)
    numerator = (q.unsqueeze(-2) @ kv).squeeze(-2)  # (..., 1, Dh) @ (..., Dh, Dv) -> (..., Dv)
    normaliser = (q * k_sum).sum(dim=-1, keepdim=True)  # (..., 1)
    return (numerator / (normaliser + eps)).to(query.dtype), LinearAttentionState(kv, k_sum)


def linear_attention_recurrent(
    query: Tensor, key: Tensor, value: Tensor, state: Optional[LinearAttentionState] = None, eps: float = 1e-6
) -> Tuple[Tensor, LinearAttentionState]:
    """Causal linear attention as an RNN: :func:`linear_attention_step` in a loop over time.

    Args:
        query: queries.
        key: keys.
        value: values.
        state: the state after an earlier prefix (none if ``None``).
        eps: added to the normaliser.

    Shapes:
        query, key: ``(..., T, Dh)``; value: ``(..., T, Dv)``; returns ``(..., T, Dv)``
        and a state (``(..., Dh, Dv)`` and ``(..., Dh)``).

    Returns:
        ``(out, state)``: the same outputs as ``linear_attention(..., is_causal=True)``
        (tested to 1e-10 in float64) and the state after the last token, ready for
        :func:`linear_attention_step` to continue.

    Katharopoulos et al. (2020), "Transformers are RNNs", section 3.4. Chapter 16.
    """
    _check_qkv(query, key, value)
    if query.size(-2) != key.size(-2) or query.size(-2) == 0:
        raise ValueError(
            f"query and key must have the same length T >= 1 (got {query.size(-2)} and {key.size(-2)})"
        )
    outputs = []
    for t in range(query.size(-2)):  # o_t needs S_t, which needs S_{t-1}: one token at a time
        out, state = linear_attention_step(query[..., t, :], key[..., t, :], value[..., t, :], state, eps)
        outputs.append(out)  # (..., Dv)
    assert state is not None  # T >= 1 steps ran
    return torch.stack(outputs, dim=-2), state  # (..., T, Dv)


class LinearAttention(nn.Module):
    """Causal multi-head linear self-attention: :func:`linear_attention` between the projections.

    The projections are :class:`attnlib.attention.MultiHeadAttention`'s (``q_proj``, ``k_proj``,
    ``v_proj``, ``out_proj``); only the softmax is replaced by the ``φ`` feature map.
    :meth:`forward` trains on whole sequences (the parallel form); :meth:`step`
    generates one token at a time from a state whose size does not depend on the
    prefix length.

    Args:
        embed_dim: model width ``D``.
        num_heads: number of heads ``H``; must divide ``embed_dim``.
        bias: whether the four projections have biases.
        eps: added to the normaliser.
        device, dtype: where and in what precision to create the parameters.

    Katharopoulos et al. (2020), "Transformers are RNNs". Chapter 16.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        bias: bool = True,
        eps: float = 1e-6,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        positive_int("embed_dim", embed_dim)
        positive_int("num_heads", num_heads)
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"embed_dim must be divisible by num_heads (got embed_dim={embed_dim} and num_heads={num_heads})"
            )
        factory = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.eps = _check_eps(eps)
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform input projections and zero biases, as :class:`attnlib.attention.MultiHeadAttention`."""
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight)
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)
        if self.out_proj.bias is not None:
            nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Project ``(..., D)`` and split the heads: three ``(..., H, Dh)`` tensors."""
        split = x.shape[:-1] + (self.num_heads, self.head_dim)
        return self.q_proj(x).view(split), self.k_proj(x).view(split), self.v_proj(x).view(split)

    def _check_input(self, x: Tensor, shape: str, ndim: int) -> None:
        _check_tensor("x", x, shape, ndim)
        if x.size(-1) != self.embed_dim:
            raise ValueError(f"x must have width D={self.embed_dim} (got shape {tuple(x.shape)})")

    def forward(self, x: Tensor) -> Tensor:
        """Causal self-attention over whole sequences (the parallel form).

        Args:
            x: batch-first input sequences.

        Shapes:
            x: ``(B, T, D)``; returns ``(B, T, D)``.

        Returns:
            The attended sequence.
        """
        self._check_input(x, "(B, T, D)", 3)
        B, T, _ = x.shape
        q, k, v = (t.transpose(1, 2) for t in self._heads(x))  # (B, T, H, Dh) -> (B, H, T, Dh)
        out = linear_attention(q, k, v, is_causal=True, eps=self.eps)  # (B, H, T, Dh)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, self.embed_dim))  # (B, T, D)

    def forward_recurrent(
        self, x: Tensor, state: Optional[LinearAttentionState] = None
    ) -> Tuple[Tensor, LinearAttentionState]:
        """The same as :meth:`forward`, one token at a time; also returns the state.

        Args:
            x: batch-first input sequences.
            state: the state after an earlier prefix (none if ``None``).

        Shapes:
            x: ``(B, T, D)``; state: ``kv`` ``(B, H, Dh, Dh)``, ``k_sum`` ``(B, H, Dh)``.
            Returns ``(B, T, D)`` and a state of the same shapes.

        Returns:
            ``(out, state)``: the attended sequence and the state after its last token.
        """
        self._check_input(x, "(B, T, D)", 3)
        B, T, _ = x.shape
        q, k, v = (t.transpose(1, 2) for t in self._heads(x))  # (B, H, T, Dh) each
        out, state = linear_attention_recurrent(q, k, v, state, eps=self.eps)  # (B, H, T, Dh)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, self.embed_dim)), state  # (B, T, D)

    def step(self, x: Tensor, state: Optional[LinearAttentionState] = None) -> Tuple[Tensor, LinearAttentionState]:
        """One token of generation.

        Args:
            x: this token's input.
            state: the state after the previous tokens (none if ``None``).

        Shapes:
            x: ``(B, D)``; state: ``kv`` ``(B, H, Dh, Dh)``, ``k_sum`` ``(B, H, Dh)``.
            Returns ``(B, D)`` and a state of the same shapes.

        Returns:
            ``(out, new_state)``.
        """
        self._check_input(x, "(B, D)", 2)
        q, k, v = self._heads(x)  # (B, H, Dh) each
        out, state = linear_attention_step(q, k, v, state, eps=self.eps)  # (B, H, Dh)
        return self.out_proj(out.reshape(x.size(0), self.embed_dim)), state  # (B, D)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, eps={self.eps}"


# --- gated linear recurrences: h_t = a_t ⊙ h_{t-1} + b_t ---------------------------


def _check_scan(a: Tensor, b: Tensor, h0: Optional[Tensor], names: Tuple[str, str]) -> None:
    _check_tensor(names[0], a, "(B, T, D)", 3)
    _check_tensor(names[1], b, "(B, T, D)", 3)
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape (got {tuple(a.shape)} and {tuple(b.shape)})")
    if a.size(1) == 0:
        raise ValueError(f"{names[0]} must hold at least one time step (got shape {tuple(a.shape)})")
    if h0 is not None:
        expected = (a.size(0), a.size(2))
        if _check_tensor("h0", h0, f"(B, D) = {expected}", 2).shape != expected:
            raise ValueError(f"h0 must have shape (B, D) = {expected} (got {tuple(h0.shape)})")


def sequential_scan(coeffs: Tensor, values: Tensor, h0: Optional[Tensor] = None) -> Tensor:
    """``h_t = a_t ⊙ h_{t-1} + b_t`` for ``t = 1..T``, one step at a time (the readable form).

    Args:
        coeffs: the decay ``a_t`` of each step.
        values: the input ``b_t`` of each step.
        h0: the initial state (zeros if ``None``).

    Shapes:
        coeffs, values: ``(B, T, D)``; h0: ``(B, D)``; returns ``(B, T, D)``.

    Returns:
        The states ``h_1 .. h_T`` (float16/bfloat16 inputs are computed in float32).

    Feng et al. (2024), "Were RNNs All We Needed?", section 3. Chapter 16.
    """
    _check_scan(coeffs, values, h0, ("coeffs", "values"))
    compute = _compute_dtype(values.dtype)
    h = values.new_zeros(values.size(0), values.size(2), dtype=compute) if h0 is None else h0.to(compute)
    states = []
    for t in range(values.size(1)):
        h = coeffs[:, t].to(compute) * h + values[:, t].to(compute)  # (B, D)
        states.append(h)
    return torch.stack(states, dim=1).to(values.dtype)  # (B, T, D)


def parallel_scan_log(log_coeffs: Tensor, log_values: Tensor, h0: Optional[Tensor] = None) -> Tensor:
    """The same recurrence for all ``t`` at once, in log space (Heinsen, 2023).

    Unrolled, ``h_t = A_t ⊙ h_0 + Σ_{j≤t} (A_t / A_j) ⊙ b_j`` with ``A_t = a_1 ⋯ a_t``.
    With ``a* = cumsum(log a)`` this is ``exp(a*_t) ⊙ h_0 + exp(a*_t + logcumsumexp(log b - a*)_t)``:
    a cumulative sum and a cumulative log-sum-exp, both parallel over ``t``. The values
    ``b_t`` must be positive (they enter as logs); ``h_0`` may have any sign, because
    the recurrence is linear in it (the paper's appendix instead prepends ``log h_0``,
    which requires ``h_0 > 0``). The absolute error of ``log h_t`` grows with ``|a*_t|``,
    about ``T`` times the rounding unit: near 1e-12 for ``T = 512`` in float64, near
    1e-3 for ``T = 4096`` in float32 (both tested).

    Args:
        log_coeffs: ``log a_t`` (``<= 0`` for a decay).
        log_values: ``log b_t``.
        h0: the initial state (zeros if ``None``).

    Shapes:
        log_coeffs, log_values: ``(B, T, D)``; h0: ``(B, D)``; returns ``(B, T, D)``.

    Returns:
        The states ``h_1 .. h_T``, equal to :func:`sequential_scan` of
        ``exp(log_coeffs), exp(log_values)`` (float16/bfloat16 inputs are computed in float32).

    Feng et al. (2024), "Were RNNs All We Needed?", appendix B. Chapter 16.
    """
    _check_scan(log_coeffs, log_values, h0, ("log_coeffs", "log_values"))
    compute = _compute_dtype(log_values.dtype)
    log_a, log_b = log_coeffs.to(compute), log_values.to(compute)
    a_star = torch.cumsum(log_a, dim=1)  # (B, T, D): log A_t
    h = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))  # (B, T, D): the zero-h0 states
    if h0 is not None:
        h = h + torch.exp(a_star) * h0.to(compute).unsqueeze(1)  # (B, 1, D) broadcast over T
    return h.to(log_values.dtype)


def _g(x: Tensor) -> Tensor:
    """``x + 0.5`` for ``x >= 0``, ``sigmoid(x)`` below: positive, continuous, linear for large ``x``."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def _log_g(x: Tensor) -> Tensor:
    """``log g(x)``, without taking the log of a small number: ``log sigmoid(x) = -softplus(-x)``."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


class _MinRNN(nn.Module):
    """A minimal RNN: subclasses give ``a_t, b_t`` (and their logs) from ``x_t`` alone."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = positive_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)

    def coefficients(self, input: Tensor) -> Tuple[Tensor, Tensor]:
        """The decay ``a_t`` and the input ``b_t`` of ``h_t = a_t ⊙ h_{t-1} + b_t``.

        Shapes:
            input: ``(..., I)``; returns two ``(..., D)`` tensors.
        """
        raise NotImplementedError

    def log_coefficients(self, input: Tensor) -> Tuple[Tensor, Tensor]:
        """``(log a_t, log b_t)``, computed from the pre-activations (no log of a rounded product).

        Shapes:
            input: ``(..., I)``; returns two ``(..., D)`` tensors.
        """
        raise NotImplementedError

    def _check(self, input: Tensor, h: Optional[Tensor], shape: str, ndim: int, h_name: str) -> None:
        _check_tensor("input", input, shape, ndim)
        if input.size(-1) != self.input_size or (ndim == 3 and input.size(1) == 0):
            raise ValueError(
                f"input must have shape {shape} with I={self.input_size}{' and T >= 1' if ndim == 3 else ''} "
                f"(got {tuple(input.shape)})"
            )
        if h is not None:
            expected = (input.size(0), self.hidden_size)
            if _check_tensor(h_name, h, f"(B, D) = {expected}", 2).shape != expected:
                raise ValueError(f"{h_name} must have shape (B, D) = {expected} (got {tuple(h.shape)})")

    def forward(self, input: Tensor, h0: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Run over whole sequences with the log-space scan (the parallel mode, for training).

        Args:
            input: batch-first input sequences.
            h0: the initial state (zeros if ``None``); any sign.

        Shapes:
            input: ``(B, T, I)``; h0: ``(B, D)``. Returns ``(B, T, D)`` and ``(B, D)``.

        Returns:
            ``(outputs, h_last)``: the state at every step and after the last one.
        """
        self._check(input, h0, "(B, T, I)", 3, "h0")
        log_a, log_b = self.log_coefficients(input)  # (B, T, D) each
        outputs = parallel_scan_log(log_a, log_b, h0)  # (B, T, D)
        return outputs, outputs[:, -1]

    def forward_recurrent(self, input: Tensor, h0: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """The same as :meth:`forward`, with a Python loop over time (the sequential mode).

        Args:
            input: batch-first input sequences.
            h0: the initial state (zeros if ``None``).

        Shapes:
            input: ``(B, T, I)``; h0: ``(B, D)``. Returns ``(B, T, D)`` and ``(B, D)``.

        Returns:
            ``(outputs, h_last)``, equal to :meth:`forward`'s (tested to 1e-10 in float64).
        """
        self._check(input, h0, "(B, T, I)", 3, "h0")
        a, b = self.coefficients(input)  # (B, T, D) each
        outputs = sequential_scan(a, b, h0)  # (B, T, D)
        return outputs, outputs[:, -1]

    def step(self, input: Tensor, h: Optional[Tensor] = None) -> Tensor:
        """One step of generation: ``h_t = a_t ⊙ h_{t-1} + b_t``.

        Args:
            input: this step's input.
            h: the previous state (zeros if ``None``).

        Shapes:
            input: ``(B, I)``; h: ``(B, D)``; returns ``(B, D)``.

        Returns:
            The new state, which is also the output.
        """
        self._check(input, h, "(B, I)", 2, "h")
        a, b = self.coefficients(input)  # (B, D) each
        return b if h is None else a * h + b

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class MinGRU(_MinRNN):
    r"""minGRU (Feng et al., 2024): a GRU whose gate and candidate read ``x_t`` only.

    .. math::

        z_t = \sigma(W_z x_t + b_z), \qquad \tilde h_t = g(W_h x_t + b_h), \qquad
        h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t

    with ``g(x) = x + 0.5`` for ``x >= 0`` and ``sigmoid(x)`` below, which keeps the
    candidate positive, as the paper's log-space version needs (appendix B); both modes
    use it, so they compute the same function. In log space,
    ``log(1 - z) = -softplus(k)`` and ``log z = -softplus(-k)`` for ``k = W_z x + b_z``.

    Args:
        input_size: input width ``I``.
        hidden_size: state width ``D``.
        bias: whether the two linear maps have biases.
        device, dtype: where and in what precision to create the parameters.

    Unlike :class:`attnlib.rnn.GRU`, states are ``(B, D)`` (one layer, one direction).
    Chapter 16.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.linear_z = nn.Linear(input_size, hidden_size, bias=bias, device=device, dtype=dtype)
        self.linear_h = nn.Linear(input_size, hidden_size, bias=bias, device=device, dtype=dtype)

    def coefficients(self, input: Tensor) -> Tuple[Tensor, Tensor]:
        z = torch.sigmoid(self.linear_z(input))  # (..., D): the update gate
        return 1 - z, z * _g(self.linear_h(input))

    def log_coefficients(self, input: Tensor) -> Tuple[Tensor, Tensor]:
        k = self.linear_z(input)  # (..., D)
        return -F.softplus(k), -F.softplus(-k) + _log_g(self.linear_h(input))


class MinLSTM(_MinRNN):
    r"""minLSTM (Feng et al., 2024): an LSTM whose gates read ``x_t`` only, normalised to sum to one.

    .. math::

        f_t, i_t = \sigma(W_f x_t + b_f), \sigma(W_i x_t + b_i), \qquad
        h_t = \frac{f_t}{f_t + i_t} \odot h_{t-1} + \frac{i_t}{f_t + i_t} \odot g(W_h x_t + b_h)

    In log space, with ``d = softplus(-k_f) - softplus(-k_i)``, the two normalised
    gates are ``-softplus(d)`` and ``-softplus(-d)`` (the paper's appendix B).

    Args:
        input_size: input width ``I``.
        hidden_size: state width ``D``.
        bias: whether the three linear maps have biases.
        device, dtype: where and in what precision to create the parameters.

    Chapter 16.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.linear_f = nn.Linear(input_size, hidden_size, bias=bias, device=device, dtype=dtype)
        self.linear_i = nn.Linear(input_size, hidden_size, bias=bias, device=device, dtype=dtype)
        self.linear_h = nn.Linear(input_size, hidden_size, bias=bias, device=device, dtype=dtype)

    def coefficients(self, input: Tensor) -> Tuple[Tensor, Tensor]:
        f, i = torch.sigmoid(self.linear_f(input)), torch.sigmoid(self.linear_i(input))  # (..., D) each
        return f / (f + i), i / (f + i) * _g(self.linear_h(input))

    def log_coefficients(self, input: Tensor) -> Tuple[Tensor, Tensor]:
        d = F.softplus(-self.linear_f(input)) - F.softplus(-self.linear_i(input))  # log(i / f), (..., D)
        return -F.softplus(d), -F.softplus(-d) + _log_g(self.linear_h(input))
