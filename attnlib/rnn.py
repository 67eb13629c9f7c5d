"""Recurrent networks written out from their equations: Elman RNN, LSTM and GRU.

Chapter 01 derives the recurrence, trains the three cells and measures why their
gradients vanish or explode. This is the teaching version: a Python loop over time
steps, one cell call per step. PyTorch's :class:`torch.nn.LSTM` runs the same loop in
C++ (or cuDNN) and is faster; the results agree (tested in float64), so later chapters
(the translator's bidirectional GRU encoder in ``attnlib.seq2seq``) use PyTorch's
layers for speed, and this module to read what they compute.

The cells use PyTorch's gate order and parameter names and shapes (``weight_ih``,
``weight_hh``, ``bias_ih``, ``bias_hh``), so ``cell.load_state_dict(torch_cell.state_dict())``
copies the weights of :class:`torch.nn.RNNCell`, :class:`torch.nn.LSTMCell` or
:class:`torch.nn.GRUCell` straight across. The layers keep one cell per layer and
direction in ``cells`` (index ``layer * K + direction``); cell ``l * K + k`` holds
PyTorch's ``weight_ih_l{l}`` (``_reverse`` when ``k == 1``) and friends.

Shape legend: ``B`` batch, ``T`` time steps, ``I`` input width (``input_size``), ``D``
hidden width (``hidden_size``), ``L`` layers (``num_layers``), ``K`` directions (2 when
``bidirectional``, else 1), ``G`` gates per cell (RNN 1, LSTM 4, GRU 3).

Padded batches: pass ``lengths`` (``(B,)``, each in ``[1, T]``). Padded steps do not
change the state, so the final state is the state at each sequence's true last step
(the backward direction starts there), and the outputs at padded steps are zero, as
with :func:`torch.nn.utils.rnn.pack_padded_sequence` then ``pad_packed_sequence``.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import boolean, is_number, positive_int

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU"]

LSTMState = Tuple[Tensor, Tensor]


def _check_forget_bias(forget_bias: object, bias: bool) -> None:
    if forget_bias is None:
        return
    if not is_number(forget_bias) or not math.isfinite(forget_bias):
        raise ValueError(f"forget_bias must be a finite float or None (got {forget_bias!r})")
    if not bias:
        raise ValueError(f"forget_bias needs bias=True (got forget_bias={forget_bias!r} and bias=False)")


class _Cell(nn.Module):
    """Parameters shared by the three cells: ``G`` stacked gate blocks of width ``D``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_gates: int) -> None:
        super().__init__()
        positive_int("input_size", input_size)
        positive_int("hidden_size", hidden_size)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(num_gates * hidden_size, input_size))  # (G*D, I)
        self.weight_hh = nn.Parameter(torch.empty(num_gates * hidden_size, hidden_size))  # (G*D, D)
        if bias:
            self.bias_ih: Optional[nn.Parameter] = nn.Parameter(torch.empty(num_gates * hidden_size))  # (G*D,)
            self.bias_hh: Optional[nn.Parameter] = nn.Parameter(torch.empty(num_gates * hidden_size))  # (G*D,)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in ``[-1/sqrt(D), 1/sqrt(D)]``, PyTorch's default for its RNN cells."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _check_input(self, input: Tensor) -> int:
        """Validate one step's input ``(B, I)``; return ``B``."""
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a torch.Tensor (got {type(input).__name__})")
        if input.dim() != 2 or input.size(1) != self.input_size:
            raise ValueError(f"input must have shape (B, I) with I={self.input_size} (got {tuple(input.shape)})")
        return input.size(0)

    def _check_state(self, state: object, B: int, name: str) -> Tensor:
        """Validate one state tensor ``(B, D)`` named ``name``; return it."""
        if not isinstance(state, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor (got {type(state).__name__})")
        if state.shape != (B, self.hidden_size):
            raise ValueError(f"{name} must have shape (B, D) = {(B, self.hidden_size)} (got {tuple(state.shape)})")
        return state

    def _projections(self, x: Tensor, h: Tensor) -> Tuple[Tensor, Tensor]:
        """``x W_ih^T + b_ih`` and ``h W_hh^T + b_hh``, each ``(B, G*D)``."""
        return F.linear(x, self.weight_ih, self.bias_ih), F.linear(h, self.weight_hh, self.bias_hh)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias_ih is not None}"


class RNNCell(_Cell):
    """One step of the Elman RNN (Elman, 1990): ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``.

    Args:
        input_size: input width ``I``.
        hidden_size: state width ``D``.
        bias: whether to add ``b_ih`` and ``b_hh``.
        nonlinearity: ``"tanh"`` (Elman) or ``"relu"``.

    The weights are those of :class:`torch.nn.RNNCell`: ``weight_ih`` ``(D, I)``,
    ``weight_hh`` ``(D, D)``, ``bias_ih`` and ``bias_hh`` ``(D,)``. Chapter 01.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu' (got {nonlinearity!r})")
        super().__init__(input_size, hidden_size, bias, num_gates=1)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        """One time step.

        Args:
            input: the input at this step.
            hx: the previous state (zeros if ``None``).

        Shapes:
            input: ``(B, I)``; hx: ``(B, D)``; returns ``(B, D)``.

        Returns:
            The new state ``h'``, which is also the cell's output.
        """
        B = self._check_input(input)
        h = input.new_zeros(B, self.hidden_size) if hx is None else self._check_state(hx, B, "hx")
        xw, hw = self._projections(input, h)  # (B, D) each
        return torch.tanh(xw + hw) if self.nonlinearity == "tanh" else torch.relu(xw + hw)


class LSTMCell(_Cell):
    r"""One step of the LSTM (Hochreiter & Schmidhuber, 1997, with the forget gate of Gers et al., 2000).

    .. math::

        i, f, g, o &= \sigma(a_i), \sigma(a_f), \tanh(a_g), \sigma(a_o)
        \quad\text{where } a = W_{ih} x + b_{ih} + W_{hh} h + b_{hh} \\
        c' &= f \odot c + i \odot g, \qquad h' = o \odot \tanh(c')

    The cell state ``c`` is carried by a sum, scaled only by the forget gate ``f``: the
    gradient from ``c'`` to ``c`` is ``f`` (elementwise), which is what lets an LSTM keep
    information (and gradient) over many steps when ``f`` is near 1.

    Args:
        input_size: input width ``I``.
        hidden_size: state width ``D``.
        bias: whether to add ``b_ih`` and ``b_hh``.
        forget_bias: if given, the forget gate's bias starts at this value (PyTorch's
            init leaves it near 0, so ``f`` starts near 0.5); Jozefowicz et al. (2015)
            recommend 1. ``None`` keeps PyTorch's init exactly.

    The weights are those of :class:`torch.nn.LSTMCell`: ``weight_ih`` ``(4D, I)``,
    ``weight_hh`` ``(4D, D)``, biases ``(4D,)``, gate blocks in the order input, forget,
    cell, output. Chapter 01.
    """

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, forget_bias: Optional[float] = None
    ) -> None:
        _check_forget_bias(forget_bias, bias)
        self.forget_bias = forget_bias
        super().__init__(input_size, hidden_size, bias, num_gates=4)

    def reset_parameters(self) -> None:
        """PyTorch's init; then the forget gate's bias, if ``forget_bias`` is set."""
        super().reset_parameters()
        if self.forget_bias is not None and self.bias_ih is not None and self.bias_hh is not None:
            D = self.hidden_size
            with torch.no_grad():
                self.bias_ih[D : 2 * D].fill_(self.forget_bias)  # blocks: input, forget, cell, output
                self.bias_hh[D : 2 * D].zero_()

    def forward(self, input: Tensor, hx: Optional[LSTMState] = None) -> LSTMState:
        """One time step.

        Args:
            input: the input at this step.
            hx: the previous ``(h, c)`` (zeros if ``None``).

        Shapes:
            input: ``(B, I)``; h, c: ``(B, D)``; returns two ``(B, D)`` tensors.

        Returns:
            ``(h', c')``: the new hidden state (the output) and the new cell state.
        """
        B = self._check_input(input)
        if hx is None:
            h = c = input.new_zeros(B, self.hidden_size)
        elif isinstance(hx, tuple) and len(hx) == 2:
            h, c = self._check_state(hx[0], B, "h"), self._check_state(hx[1], B, "c")
        else:
            raise TypeError(f"hx must be a tuple (h, c) or None (got {type(hx).__name__})")
        xw, hw = self._projections(input, h)  # (B, 4D) each
        i, f, g, o = (xw + hw).chunk(4, dim=1)  # (B, D) each
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c_new = f * c + i * g
        h_new = o * torch.tanh(c_new)
        return h_new, c_new


class GRUCell(_Cell):
    r"""One step of the gated recurrent unit (Cho et al., 2014).

    .. math::

        r &= \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}), \qquad
        z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
        n &= \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})), \qquad
        h' = (1 - z) \odot n + z \odot h

    The update gate ``z`` interpolates between the old state and the candidate ``n``:
    where ``z`` is near 1 the state (and its gradient) passes through unchanged.

    Args:
        input_size: input width ``I``.
        hidden_size: state width ``D``.
        bias: whether to add ``b_ih`` and ``b_hh``.

    The weights are those of :class:`torch.nn.GRUCell`: ``weight_ih`` ``(3D, I)``,
    ``weight_hh`` ``(3D, D)``, biases ``(3D,)``, gate blocks in the order reset, update,
    new. Chapter 01.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size, bias, num_gates=3)

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        """One time step.

        Args:
            input: the input at this step.
            hx: the previous state (zeros if ``None``).

        Shapes:
            input: ``(B, I)``; hx: ``(B, D)``; returns ``(B, D)``.

        Returns:
            The new state ``h'``, which is also the cell's output.
        """
        B = self._check_input(input)
        h = input.new_zeros(B, self.hidden_size) if hx is None else self._check_state(hx, B, "hx")
        xw, hw = self._projections(input, h)  # (B, 3D) each
        x_r, x_z, x_n = xw.chunk(3, dim=1)  # (B, D) each
        h_r, h_z, h_n = hw.chunk(3, dim=1)  # (B, D) each
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return (1 - z) * n + z * h


class _Recurrent(nn.Module):
    """A stack of cells run over time: ``L`` layers, ``K`` directions, one loop per direction.

    Internally a state is a tuple of ``(B, D)`` tensors: ``(h,)`` for the RNN and GRU,
    ``(h, c)`` for the LSTM. Subclasses say how to make a cell and how to step it.
    """

    num_states = 1  # tensors per state: 1 for (h,), 2 for (h, c)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        positive_int("input_size", input_size)
        positive_int("hidden_size", hidden_size)
        positive_int("num_layers", num_layers)
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1) (got {dropout!r})")
        boolean("bidirectional", bidirectional)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.dropout = float(dropout)
        self.cells = nn.ModuleList(
            self._make_cell(input_size if layer == 0 else self.num_directions * hidden_size, hidden_size, bias)
            for layer in range(num_layers)
            for _direction in range(self.num_directions)
        )

    def _make_cell(self, input_size: int, hidden_size: int, bias: bool) -> nn.Module:
        raise NotImplementedError

    def _step(self, cell: nn.Module, x: Tensor, state: Tuple[Tensor, ...]) -> Tuple[Tensor, ...]:
        """One step of one cell: ``(B, I)`` input, state tuple in, state tuple out."""
        return (cell(x, state[0]),)

    def _scan(
        self, cell: nn.Module, x: Tensor, state: Tuple[Tensor, ...], valid: Tensor, reverse: bool
    ) -> Tuple[Tensor, Tuple[Tensor, ...]]:
        """Run one cell over all ``T`` steps (from the last to the first if ``reverse``).

        Shapes:
            x: ``(B, T, I)``; each state tensor ``(B, D)``; valid: ``(B, T)`` boolean,
            False at padded steps. Returns outputs ``(B, T, D)`` and the final state.
        """
        T = x.size(1)
        outputs: List[Tensor] = []
        for t in range(T - 1, -1, -1) if reverse else range(T):
            new_state = self._step(cell, x[:, t], state)  # h_t needs h_{t-1}: one step at a time
            keep = valid[:, t, None]  # (B, 1): padded steps leave the state as it was
            state = tuple(torch.where(keep, new, old) for new, old in zip(new_state, state))
            outputs.append(new_state[0] * keep)  # zero output at padded steps
        if reverse:
            outputs.reverse()  # back to time order
        return torch.stack(outputs, dim=1), state  # (B, T, D)

    def _initial_states(self, hx: object, B: int, like: Tensor) -> List[Tuple[Tensor, ...]]:
        """Split the initial state into one ``(B, D)`` tuple per cell (zeros if ``None``)."""
        LK, D = self.num_layers * self.num_directions, self.hidden_size
        if hx is None:
            zeros = like.new_zeros(LK, B, D)
            tensors: Tuple[Tensor, ...] = (zeros,) * self.num_states
        else:
            tensors = self._unpack_hx(hx)
            for name, t in zip(("h0", "c0"), tensors):
                if not isinstance(t, Tensor):
                    raise TypeError(f"{name} must be a torch.Tensor (got {type(t).__name__})")
                if t.shape != (LK, B, D):
                    raise ValueError(
                        f"{name} must have shape (L*K, B, D) = {(LK, B, D)} (got {tuple(t.shape)})"
                    )
        return [tuple(t[i] for t in tensors) for i in range(LK)]

    def _unpack_hx(self, hx: object) -> Tuple[Tensor, ...]:
        return (hx,)  # type: ignore[return-value]

    def _pack_final(self, states: List[Tuple[Tensor, ...]]) -> Union[Tensor, LSTMState]:
        return torch.stack([s[0] for s in states])  # (L*K, B, D)

    def _valid_steps(
        self, lengths: Union[Tensor, Sequence[int], None], B: int, T: int, device: torch.device
    ) -> Tensor:
        """Boolean ``(B, T)``: True where step ``t`` is inside sequence ``b``."""
        if lengths is None:
            return torch.ones(B, T, dtype=torch.bool, device=device)
        lengths = torch.as_tensor(lengths)
        if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
            raise TypeError(f"lengths must hold integers (got dtype {lengths.dtype})")
        if lengths.shape != (B,):
            raise ValueError(f"lengths must have shape (B,) = ({B},) (got {tuple(lengths.shape)})")
        if B and (int(lengths.min()) < 1 or int(lengths.max()) > T):
            raise ValueError(f"lengths must be in [1, T] = [1, {T}] (got {lengths.tolist()})")
        steps = torch.arange(T, device=device)
        return steps[None, :] < lengths.to(device)[:, None]  # (B, T)

    def _run(
        self, input: Tensor, hx: object, lengths: Union[Tensor, Sequence[int], None]
    ) -> Tuple[Tensor, Union[Tensor, LSTMState]]:
        """Validate, then run every layer and direction; see the subclasses' ``forward``."""
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a torch.Tensor (got {type(input).__name__})")
        if input.dim() != 3 or input.size(2) != self.input_size:
            raise ValueError(
                f"input must be batch-first with shape (B, T, I) and I={self.input_size} (got {tuple(input.shape)})"
            )
        B, T, _ = input.shape
        valid = self._valid_steps(lengths, B, T, input.device)
        states = self._initial_states(hx, B, input)
        finals: List[Tuple[Tensor, ...]] = []
        x = input
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)  # between layers, as in PyTorch
            outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                out, final = self._scan(self.cells[index], x, states[index], valid, reverse=direction == 1)
                outputs.append(out)
                finals.append(final)
            x = torch.cat(outputs, dim=2)  # (B, T, K*D): forward then backward
        return x, self._pack_final(finals)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"bidirectional={self.bidirectional}, dropout={self.dropout}"
        )


class RNN(_Recurrent):
    """Elman RNN over batch-first sequences (Elman, 1990): :class:`RNNCell` in a loop over time.

    Args:
        input_size: input width ``I``.
        hidden_size: state width ``D``.
        num_layers: stacked layers ``L``; layer ``l > 0`` reads layer ``l - 1``'s outputs.
        bias: whether the cells have biases.
        bidirectional: also run a cell from the last step to the first and concatenate
            its outputs (``K = 2``).
        dropout: dropout on the outputs of every layer but the last, while training.
        nonlinearity: ``"tanh"`` (Elman) or ``"relu"``.

    Parity with :class:`torch.nn.RNN` (``batch_first=True``) is tested. Chapter 01.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        bidirectional: bool = False,
        dropout: float = 0.0,
        nonlinearity: str = "tanh",
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu' (got {nonlinearity!r})")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, bidirectional, dropout)

    def _make_cell(self, input_size: int, hidden_size: int, bias: bool) -> nn.Module:
        return RNNCell(input_size, hidden_size, bias, self.nonlinearity)

    def forward(
        self, input: Tensor, hx: Optional[Tensor] = None, lengths: Union[Tensor, Sequence[int], None] = None
    ) -> Tuple[Tensor, Tensor]:
        """Run the RNN over the sequences.

        Args:
            input: batch-first input sequences.
            hx: initial state ``h0`` (zeros if ``None``).
            lengths: true lengths of the sequences of a padded batch (``None``: all ``T``).

        Shapes:
            input: ``(B, T, I)``; hx: ``(L*K, B, D)``; lengths: ``(B,)``. Returns outputs
            ``(B, T, K*D)`` and final ``(L*K, B, D)``.

        Returns:
            ``(outputs, final)``: the last layer's state at every step (forward direction
            first, zero at padded steps) and every layer and direction's state after its
            last step, indexed ``layer * K + direction`` as in PyTorch.
        """
        out, final = self._run(input, hx, lengths)
        return out, final  # type: ignore[return-value]


class GRU(_Recurrent):
    """GRU over batch-first sequences (Cho et al., 2014): :class:`GRUCell` in a loop over time.

    Args:
        input_size: input width ``I``.
        hidden_size: state width ``D``.
        num_layers: stacked layers ``L``; layer ``l > 0`` reads layer ``l - 1``'s outputs.
        bias: whether the cells have biases.
        bidirectional: also run a cell from the last step to the first and concatenate
            its outputs (``K = 2``).
        dropout: dropout on the outputs of every layer but the last, while training.

    Parity with :class:`torch.nn.GRU` (``batch_first=True``) is tested. Chapter 01.
    """

    def _make_cell(self, input_size: int, hidden_size: int, bias: bool) -> nn.Module:
        return GRUCell(input_size, hidden_size, bias)

    def forward(
        self, input: Tensor, hx: Optional[Tensor] = None, lengths: Union[Tensor, Sequence[int], None] = None
    ) -> Tuple[Tensor, Tensor]:
        """Run the GRU over the sequences.

        Args:
            input: batch-first input sequences.
            hx: initial state ``h0`` (zeros if ``None``).
            lengths: true lengths of the sequences of a padded batch (``None``: all ``T``).

        Shapes:
            input: ``(B, T, I)``; hx: ``(L*K, B, D)``; lengths: ``(B,)``. Returns outputs
            ``(B, T, K*D)`` and final ``(L*K, B, D)``.

        Returns:
            ``(outputs, final)``: the last layer's state at every step (forward direction
            first, zero at padded steps) and every layer and direction's state after its
            last step, indexed ``layer * K + direction`` as in PyTorch.
        """
        out, final = self._run(input, hx, lengths)
        return out, final  # type: ignore[return-value]


class LSTM(_Recurrent):
    """LSTM over batch-first sequences (Hochreiter & Schmidhuber, 1997): :class:`LSTMCell` in a loop.

    Args:
        input_size: input width ``I``.
        hidden_size: state width ``D``.
        num_layers: stacked layers ``L``; layer ``l > 0`` reads layer ``l - 1``'s outputs.
        bias: whether the cells have biases.
        bidirectional: also run a cell from the last step to the first and concatenate
            its outputs (``K = 2``).
        dropout: dropout on the outputs of every layer but the last, while training.
        forget_bias: if given, every cell's forget-gate bias starts at this value
            (:class:`LSTMCell`); ``None`` keeps PyTorch's init.

    Parity with :class:`torch.nn.LSTM` (``batch_first=True``, no ``proj_size``) is
    tested. Chapter 01.
    """

    num_states = 2

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        bidirectional: bool = False,
        dropout: float = 0.0,
        forget_bias: Optional[float] = None,
    ) -> None:
        _check_forget_bias(forget_bias, bias)
        self.forget_bias = forget_bias
        super().__init__(input_size, hidden_size, num_layers, bias, bidirectional, dropout)

    def _make_cell(self, input_size: int, hidden_size: int, bias: bool) -> nn.Module:
        return LSTMCell(input_size, hidden_size, bias, self.forget_bias)

    def _step(self, cell: nn.Module, x: Tensor, state: Tuple[Tensor, ...]) -> Tuple[Tensor, ...]:
        return cell(x, state)  # (h, c) in, (h, c) out

    def _unpack_hx(self, hx: object) -> Tuple[Tensor, ...]:
        if not (isinstance(hx, tuple) and len(hx) == 2):
            raise TypeError(f"hx must be a tuple (h0, c0) or None (got {type(hx).__name__})")
        return hx

    def _pack_final(self, states: List[Tuple[Tensor, ...]]) -> Union[Tensor, LSTMState]:
        h = torch.stack([s[0] for s in states])  # (L*K, B, D)
        c = torch.stack([s[1] for s in states])  # (L*K, B, D)
        return h, c

    def forward(
        self, input: Tensor, hx: Optional[LSTMState] = None, lengths: Union[Tensor, Sequence[int], None] = None
    ) -> Tuple[Tensor, LSTMState]:
        """Run the LSTM over the sequences.

        Args:
            input: batch-first input sequences.
            hx: initial state ``(h0, c0)`` (zeros if ``None``).
            lengths: true lengths of the sequences of a padded batch (``None``: all ``T``).

        Shapes:
            input: ``(B, T, I)``; h0, c0: ``(L*K, B, D)`` each; lengths: ``(B,)``. Returns
            outputs ``(B, T, K*D)`` and a final ``(h, c)`` of ``(L*K, B, D)`` each.

        Returns:
            ``(outputs, (h, c))``: the last layer's hidden state at every step (forward
            direction first, zero at padded steps) and every layer and direction's
            ``(h, c)`` after its last step, indexed ``layer * K + direction`` as in PyTorch.
        """
        out, final = self._run(input, hx, lengths)
        return out, final  # type: ignore[return-value]
