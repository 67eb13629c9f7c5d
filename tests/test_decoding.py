"""Tests for attnlib.decoding: greedy decoding for the sequence-to-sequence protocol."""

from __future__ import annotations

from typing import Optional

import pytest
import torch
from torch import Tensor

from attnlib.data import BOS_ID, EOS_ID, PAD_ID, Example, NumberTranslation
from attnlib.decoding import IncrementalSeq2SeqModel, Seq2SeqModel, greedy_decode, translate
from attnlib.seq2seq import gru_seq2seq

TASK = NumberTranslation()
EXAMPLES = [Example((5,)), Example((12, 907, 40)), Example((100, 3)), Example((999, 0, 17, 8))]


class Scripted(torch.nn.Module):
    """A stand-in model that reads out a fixed script per row: the token at each position."""

    def __init__(self, scripts: Tensor, vocab: int = 8) -> None:
        super().__init__()
        self.scripts = scripts  # (B, L)
        self.vocab = vocab
        self.calls = 0
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def encode(self, src: Tensor, src_key_padding_mask: Optional[Tensor] = None) -> Tensor:
        return src

    def decode(self, tgt_in: Tensor, memory: Tensor, src_key_padding_mask: Optional[Tensor] = None) -> Tensor:
        self.calls += 1
        B, T = tgt_in.shape
        assert (tgt_in[:, 0] == BOS_ID).all()
        return torch.nn.functional.one_hot(self.scripts[:, :T], self.vocab).float()  # (B, T, V)

    def forward(self, src: Tensor, tgt_in: Tensor, src_key_padding_mask: Optional[Tensor] = None) -> Tensor:
        return self.decode(tgt_in, self.encode(src))


def test_greedy_stops_at_eos_per_sequence_and_pads_after():
    scripts = torch.tensor([[5, 6, EOS_ID, 7, 7, 7], [4, EOS_ID, 7, 7, 7, 7], [6, 6, 6, 6, EOS_ID, 7]])
    model = Scripted(scripts)
    assert isinstance(model, Seq2SeqModel) and not isinstance(model, IncrementalSeq2SeqModel)
    out = greedy_decode(model, torch.zeros(3, 2, dtype=torch.long), max_len=20)
    expected = torch.tensor([[5, 6, EOS_ID, PAD_ID, PAD_ID], [4, EOS_ID, PAD_ID, PAD_ID, PAD_ID], [6, 6, 6, 6, EOS_ID]])
    assert torch.equal(out, expected)
    assert model.calls == 5  # stopped as soon as every row had finished, not at max_len
    cut = greedy_decode(Scripted(scripts), torch.zeros(3, 2, dtype=torch.long), max_len=2)
    assert torch.equal(cut, expected[:, :2])


@pytest.mark.parametrize("kind", [None, "additive"])
def test_greedy_equals_step_by_step_argmax(kind):
    torch.manual_seed(0)
    model = gru_seq2seq(len(TASK.src_vocab), len(TASK.tgt_vocab), hidden_size=8, embed_dim=6, attention=kind).eval()
    assert isinstance(model, IncrementalSeq2SeqModel)
    src, mask, _, _ = TASK.collate(EXAMPLES)
    out = greedy_decode(model, src, mask, max_len=12)
    assert torch.equal(out, greedy_decode(model, src, mask, max_len=12, incremental=False))
    # The definition, one row at a time: append argmax of the last position until <eos>.
    for i, ex in enumerate(EXAMPLES):
        one = TASK.collate([ex])
        memory = model.encode(one.src)
        prefix = [BOS_ID]
        with torch.no_grad():
            while len(prefix) <= 12:
                logits = model.decode(torch.tensor([prefix]), memory)
                prefix.append(int(logits[0, -1].argmax()))
                if prefix[-1] == EOS_ID:
                    break
        row = out[i].tolist()
        assert row[: len(prefix) - 1] == prefix[1:]
        assert all(t == PAD_ID for t in row[len(prefix) - 1 :])


def test_translate_returns_tokens():
    torch.manual_seed(0)
    model = gru_seq2seq(len(TASK.src_vocab), len(TASK.tgt_vocab), hidden_size=8, embed_dim=6).eval()
    preds = translate(model, TASK, EXAMPLES, batch_size=3, max_len=7)
    assert len(preds) == 4 and all(isinstance(p, list) and len(p) <= 7 for p in preds)
    assert all(tok in TASK.tgt_vocab.stoi and tok not in ("<eos>", "<pad>", "<bos>") for p in preds for tok in p)
    src, mask, _, _ = TASK.collate(EXAMPLES)
    ids = greedy_decode(model, src, mask, max_len=7)
    assert preds == [TASK.tgt_vocab.decode(r) for r in ids]


def test_errors():
    model = Scripted(torch.tensor([[EOS_ID]]))
    src = torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(TypeError, match=r"model must follow the Seq2SeqModel protocol \(encode, decode\) \(got Linear\)"):
        greedy_decode(torch.nn.Linear(2, 2), src)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"src must be a tensor of shape \(B, S\) \(got \(2,\)\)"):
        greedy_decode(model, src[0])
    with pytest.raises(ValueError, match=r"src must be a tensor of shape \(B, S\) \(got list\)"):
        greedy_decode(model, [[0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_len must be a positive int \(got 0\)"):
        greedy_decode(model, src, max_len=0)
    with pytest.raises(ValueError, match=r"incremental=True needs a model with init_state and decode_step \(got Scripted\)"):
        greedy_decode(model, src, incremental=True)
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module \(got str\)"):
        translate("model", TASK, EXAMPLES)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"batch_size must be a positive int \(got 0\)"):
        translate(model, TASK, EXAMPLES, batch_size=0)


# --- beam search (chapter 08) ---------------------------------------------------------

from attnlib.decoding import BeamSearchOutput, beam_search, sequence_log_prob  # noqa: E402
from attnlib.transformer import Transformer, TransformerConfig  # noqa: E402


def _models():
    """Untrained models of both families, in float64 so that near-ties do not flip."""
    torch.manual_seed(0)
    V_src, V_tgt = len(TASK.src_vocab), len(TASK.tgt_vocab)
    yield gru_seq2seq(V_src, V_tgt, hidden_size=8, embed_dim=6, attention="additive").double().eval()
    yield gru_seq2seq(V_src, V_tgt, hidden_size=8, embed_dim=6).double().eval()
    config = TransformerConfig(V_src, V_tgt, d_model=16, num_heads=2, dim_feedforward=32, dropout=0.0, max_len=64)
    yield Transformer(config).double().eval()


@pytest.mark.parametrize("model", list(_models()), ids=["attention-gru", "plain-gru", "transformer"])
def test_beam_size_one_is_greedy(model):
    src, mask, _, _ = TASK.collate(EXAMPLES)
    greedy = greedy_decode(model, src, mask, max_len=12)
    out = beam_search(model, src, mask, beam_size=1, max_len=12)
    assert isinstance(out, BeamSearchOutput)
    assert torch.equal(out.tokens, greedy)
    torch.testing.assert_close(out.log_probs, sequence_log_prob(model, src, greedy, mask).float())


@pytest.mark.parametrize("model", list(_models()), ids=["attention-gru", "plain-gru", "transformer"])
@pytest.mark.parametrize("beam_size", [2, 5])
def test_beam_scores_at_least_greedy_and_batch_equals_single(model, beam_size):
    examples = TASK.sample(12, seed=3)
    src, mask, _, _ = TASK.collate(examples)
    greedy = greedy_decode(model, src, mask, max_len=15)
    out = beam_search(model, src, mask, beam_size=beam_size, max_len=15)
    # The reported score is the model's log-probability of the returned tokens.
    torch.testing.assert_close(out.log_probs, sequence_log_prob(model, src, out.tokens, mask).float())
    assert (out.log_probs >= sequence_log_prob(model, src, greedy, mask).float() - 1e-5).all()
    assert torch.isfinite(out.log_probs).all()
    # Rows end like greedy output: at most one <eos>, padding after it only.
    for row in out.tokens.tolist():
        if EOS_ID in row:
            assert all(t == PAD_ID for t in row[row.index(EOS_ID) + 1 :])
        assert PAD_ID not in row[: row.index(EOS_ID) if EOS_ID in row else len(row)]
    # Each example decoded alone (no padding) gives the same hypothesis and score.
    for i, ex in enumerate(examples):
        one = TASK.collate([ex])
        alone = beam_search(model, one.src, beam_size=beam_size, max_len=15)
        row = out.tokens[i, : alone.tokens.size(1)]
        assert torch.equal(row, alone.tokens[0])
        assert (out.tokens[i, alone.tokens.size(1) :] == PAD_ID).all()
        torch.testing.assert_close(out.log_probs[i], alone.log_probs[0], atol=1e-5, rtol=0)


def test_wider_beam_finds_the_likelier_path_greedy_misses():
    # Step 1: greedy takes token 4 (p=0.6), then must go on for two more tokens of p=0.7;
    # token 5 (p=0.4) ends at once with p=1: beam 2 finds 0.4 > 0.6 * 0.7 * 0.7 * 1.
    class Tree(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def encode(self, src, src_key_padding_mask=None):
            return src

        def decode(self, tgt_in, memory, src_key_padding_mask=None):
            B, T = tgt_in.shape
            probs = torch.full((B, T, 8), 1e-9, dtype=torch.float64)
            for b in range(B):
                for t in range(T):
                    prefix = tgt_in[b, : t + 1].tolist()
                    if prefix == [BOS_ID]:
                        probs[b, t, 4], probs[b, t, 5] = 0.6, 0.4
                    elif prefix[1] == 5:
                        probs[b, t, EOS_ID] = 1.0
                    elif len(prefix) < 4:
                        probs[b, t, 6], probs[b, t, 7] = 0.7, 0.3
                    else:
                        probs[b, t, EOS_ID] = 1.0
            return probs.log()

        def forward(self, src, tgt_in, src_key_padding_mask=None):
            return self.decode(tgt_in, src)

    model, src = Tree(), torch.zeros(2, 1, dtype=torch.long)
    assert greedy_decode(model, src, max_len=10)[0].tolist() == [4, 6, 6, EOS_ID]
    out = beam_search(model, src, beam_size=2, max_len=10)
    assert out.tokens.tolist() == [[5, EOS_ID], [5, EOS_ID]]
    torch.testing.assert_close(out.log_probs, torch.full((2,), float(torch.tensor(0.4).log())))
    # Length normalisation (alpha = 1, the mean log-probability per token) prefers the
    # longer greedy path here: log(0.294) / 4 > log(0.4) / 2.
    normalised = beam_search(model, src, beam_size=2, max_len=10, length_penalty=1.0)
    assert normalised.tokens[0].tolist() == [4, 6, 6, EOS_ID]
    # max_len cuts hypotheses that have not finished, as greedy decoding does.
    assert beam_search(model, src, beam_size=1, max_len=2).tokens.tolist() == [[4, 6], [4, 6]]


def test_beam_search_errors():
    model = Scripted(torch.tensor([[EOS_ID]]))
    src = torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(TypeError, match=r"model must follow the Seq2SeqModel protocol \(encode, decode\) \(got Linear\)"):
        beam_search(torch.nn.Linear(2, 2), src)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"src must be a tensor of shape \(B, S\) \(got \(2,\)\)"):
        beam_search(model, src[0])
    with pytest.raises(ValueError, match=r"src_key_padding_mask must be None or have the shape of src \(1, 2\) \(got \(1, 3\)\)"):
        beam_search(model, src, torch.zeros(1, 3, dtype=torch.bool))
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match=rf"beam_size must be a positive int \(got {bad!r}\)"):
            beam_search(model, src, beam_size=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_len must be a positive int \(got -1\)"):
        beam_search(model, src, max_len=-1)
    with pytest.raises(ValueError, match=r"length_penalty must be a number >= 0 \(got -0.5\)"):
        beam_search(model, src, length_penalty=-0.5)
    with pytest.raises(ValueError, match=r"length_penalty must be a number >= 0 \(got nan\)"):
        beam_search(model, src, length_penalty=float("nan"))
    with pytest.raises(ValueError, match=r"incremental=True needs a model with init_state and decode_step \(got Scripted\)"):
        beam_search(model, src, incremental=True)
    with pytest.raises(ValueError, match=r"beam_size must be a positive int \(got 0\)"):
        translate(model, TASK, EXAMPLES, beam_size=0)
    with pytest.raises(ValueError, match=r"tokens must be a tensor of shape \(B, L\) with B = 1 \(got \(2, 3\)\)"):
        sequence_log_prob(model, src, torch.zeros(2, 3, dtype=torch.long))

    class SetMemory(Scripted):
        def encode(self, src, src_key_padding_mask=None):
            return {1, 2}

    with pytest.raises(TypeError, match=r"the model's memory must be a tensor or a \(nested\) tuple, list or dict "
                                        r"of batch-first tensors for beam search to copy it per beam \(got set\)"):
        beam_search(SetMemory(torch.tensor([[EOS_ID]])), src)


def test_translate_with_beam_matches_beam_search():
    model = next(_models())
    preds = translate(model, TASK, EXAMPLES, batch_size=3, max_len=9, beam_size=3)
    src, mask, _, _ = TASK.collate(EXAMPLES)
    ids = beam_search(model, src, mask, beam_size=3, max_len=9).tokens
    assert preds == [TASK.tgt_vocab.decode(r) for r in ids]
    assert translate(model, TASK, EXAMPLES, max_len=9, beam_size=1) == translate(model, TASK, EXAMPLES, max_len=9)


# --- the multi-task text-to-text data of chapter 08 (attnlib.data, appended section) ---

from attnlib.data import TEXT_TO_TEXT_TASKS, TaskExample, TextToText, split_of  # noqa: E402


def test_text_to_text_examples_and_batches():
    tasks = TextToText()
    example = TaskExample("sort", (12, 907, 40))
    assert example.src == ["sort:"] + list("12 907 40") and "".join(example.tgt) == "12 40 907"
    assert "".join(TaskExample("reverse", (12, 907, 40)).tgt) == "40 907 12"
    assert TaskExample("translate", (12, 907, 40)).tgt == Example((12, 907, 40)).tgt
    assert str(TaskExample("reverse", (12, 907, 40))) == "reverse: 12 907 40 -> 40 907 12"
    assert str(TaskExample("translate", (12, 5))) == "translate: 12 5 -> twelve , five"
    assert tasks.max_target_len == TASK.max_target_len == 50
    assert TextToText(tasks=("sort",)).max_target_len == 40  # ten 3-digit numbers, nine spaces, <eos>
    batch = next(tasks.batches(64, seed=0))
    assert batch.src.shape[0] == 64 and torch.equal(batch.src_key_padding_mask, batch.src == PAD_ID)
    prefixes = {tasks.src_vocab.itos[i] for i in batch.src[:, 0].tolist()}
    assert prefixes == {f"{t}:" for t in TEXT_TO_TEXT_TASKS}  # every row starts with its task token
    assert (batch.tgt_in[:, 0] == BOS_ID).all()
    # Decoding ids back gives the example's target; splits follow the numbers.
    test = tasks.dataset("reverse", "test", per_count=5, seed=1)
    assert all(e.task == "reverse" and split_of(e.numbers) == "test" for e in test)
    assert [e.numbers for e in test] == [e.numbers for e in tasks.dataset("sort", "test", per_count=5, seed=1)]
    one = tasks.collate(test[-1:])
    assert tasks.tgt_vocab.decode(one.tgt_out[0]) == test[-1].tgt
    assert all(split_of(e.numbers) == "valid" for e in tasks.sample(20, seed=2, split="valid"))
    # translate() decodes any such task.
    torch.manual_seed(0)
    model = gru_seq2seq(len(tasks.src_vocab), len(tasks.tgt_vocab), hidden_size=8, embed_dim=6).eval()
    preds = translate(model, tasks, test[:3], max_len=5)
    assert len(preds) == 3 and all(len(p) <= 5 for p in preds)


def test_text_to_text_errors():
    with pytest.raises(ValueError, match=r"tasks must be distinct names from \('translate', 'reverse', 'sort'\), "
                                         r"at least one \(got \('sort', 'add'\)\)"):
        TextToText(tasks=("sort", "add"))
    with pytest.raises(ValueError, match=r"tasks must be distinct names .* \(got \(\)\)"):
        TextToText(tasks=())
    tasks = TextToText(tasks=("sort", "reverse"))
    with pytest.raises(ValueError, match=r"task must be one of \('sort', 'reverse'\) \(got 'translate'\)"):
        tasks.dataset("translate", "test", per_count=2, seed=0)
    with pytest.raises(ValueError, match=r"task must be one of \('sort', 'reverse'\) \(got 'translate'\)"):
        tasks.collate([TaskExample("translate", (1,))])
    with pytest.raises(TypeError, match=r"examples must be TaskExample objects \(got Example\)"):
        tasks.collate([Example((1,))])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"examples must not be empty"):
        tasks.collate([])
    with pytest.raises(ValueError, match=r"batch_size must be a positive int \(got 0\)"):
        tasks.batches(0, seed=0)
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'valid', 'test'\) \(got 'dev'\)"):
        tasks.batches(4, seed=0, split="dev")


def test_exact_match_by_count_groups_by_number_count():
    from attnlib.decoding import exact_match_by_count

    # A scripted model that spells examples 0 and 2 right and writes examples 1 and 3 wrong.
    right = [TASK.tgt_vocab.encode(e.tgt) + [EOS_ID] for e in EXAMPLES]
    rows = [right[0], right[0], right[2], right[2]]
    L = TASK.max_target_len
    scripts = torch.tensor([r + [PAD_ID] * (L - len(r)) for r in rows])
    model = Scripted(scripts, vocab=len(TASK.tgt_vocab))
    by_count = exact_match_by_count(model, TASK, EXAMPLES)
    assert by_count == {1: 1.0, 2: 1.0, 3: 0.0, 4: 0.0} and list(by_count) == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="examples must not be empty"):
        exact_match_by_count(model, TASK, [])
