"""Tests for attnlib.data: the running translation task, its vocabularies and batches."""

from __future__ import annotations

import pytest
import torch

from attnlib.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Example,
    NumberTranslation,
    Seq2SeqBatch,
    Vocab,
    group_by,
    number_to_words,
    split_of,
)
from attnlib.functional import padding_mask


@pytest.fixture(scope="module")
def task():
    return NumberTranslation()


def test_number_words_examples_and_every_number_spelled_differently():
    assert number_to_words(0) == ["zero"]
    assert number_to_words(7) == ["seven"]
    assert number_to_words(17) == ["seventeen"]
    assert number_to_words(40) == ["forty"]
    assert number_to_words(45) == ["forty", "five"]
    assert number_to_words(100) == ["one", "hundred"]
    assert number_to_words(907) == ["nine", "hundred", "seven"]
    assert number_to_words(999) == ["nine", "hundred", "ninety", "nine"]
    spellings = {tuple(number_to_words(n)) for n in range(1000)}
    assert len(spellings) == 1000  # the map is one-to-one, so the task is well posed
    assert max(len(s) for s in spellings) == 4


def test_example_source_and_target():
    ex = Example((12, 907, 40))
    assert ex.src == list("12 907 40")
    assert ex.tgt == ["twelve", ",", "nine", "hundred", "seven", ",", "forty"]
    assert ex.count == 3
    assert str(ex) == "12 907 40 -> twelve , nine hundred seven , forty"


def test_vocab_round_trip_and_specials(task):
    for vocab in (task.src_vocab, task.tgt_vocab):
        assert vocab.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
        assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (PAD_ID, BOS_ID, EOS_ID, UNK_ID)
    for ex in task.sample(50, seed=3):
        ids = task.tgt_vocab.encode(ex.tgt, bos=True, eos=True)
        assert ids[0] == BOS_ID and ids[-1] == EOS_ID and UNK_ID not in ids
        assert task.tgt_vocab.decode(ids + [PAD_ID, 5]) == ex.tgt  # stops at <eos>
        assert task.src_vocab.decode(torch.tensor(task.src_vocab.encode(ex.src))) == ex.src
    assert len(task.src_vocab) == 4 + 11 and len(task.tgt_vocab) == 4 + 30
    v = Vocab(["a", "b"])
    assert v.encode(["a", "zzz"]) == [4, UNK_ID]
    assert v.decode([1, 4, 0, 5, 2, 4], strip=False) == ["<bos>", "a", "<pad>", "b", "<eos>", "a"]
    assert "a" in v and "zzz" not in v and "Vocab(6 tokens" in repr(v)


def test_generation_is_deterministic_given_the_seed(task):
    assert task.sample(30, seed=7) == task.sample(30, seed=7)
    assert task.sample(30, seed=7) != task.sample(30, seed=8)
    assert task.dataset("test", per_count=5, seed=1) == task.dataset("test", per_count=5, seed=1)
    a, b = task.batches(8, seed=2), task.batches(8, seed=2)
    for _ in range(3):
        x, y = next(a), next(b)
        assert all(torch.equal(u, v) for u, v in zip(x, y))


def test_splits_are_disjoint_and_cover_every_count(task):
    train = {e.numbers for e in task.sample(3000, seed=0)}
    valid = {e.numbers for e in task.dataset("valid", per_count=30, seed=0)}
    test = {e.numbers for e in task.dataset("test", per_count=30, seed=0)}
    assert not train & valid and not train & test and not valid & test
    assert all(split_of(n) == "train" for n in train) and all(split_of(n) == "test" for n in test)
    counts = {n: split_of((n,)) for n in range(1000)}  # K = 1: about 80/10/10
    assert 700 < sum(s == "train" for s in counts.values()) < 900
    assert set(counts.values()) == {"train", "valid", "test"}
    big = task.dataset("test", per_count=150, seed=3)
    assert len(set(big)) == len(big)  # no repeats within a set
    singles = [n for n in range(1000) if split_of((n,)) == "test"]
    assert sorted(e.numbers[0] for e in big if e.count == 1) == singles  # K = 1: all of them
    assert all(sum(e.count == k for e in big) == 150 for k in range(2, 11))
    grouped = group_by(task.dataset("test", per_count=4, seed=2), lambda e: e.count)
    assert list(grouped) == task.counts == list(range(1, 11))
    assert all(len(g) == 4 and all(e.count == k for e in g) for k, g in grouped.items())


def test_digit_counts_follow_the_weights(task):
    numbers = [n for e in task.sample(2000, seed=5) for n in e.numbers]
    share = [sum(len(str(n)) == d for n in numbers) / len(numbers) for d in (1, 2, 3)]
    assert abs(share[0] - 1 / 6) < 0.02 and abs(share[1] - 1 / 6) < 0.02 and abs(share[2] - 2 / 3) < 0.02
    assert set(numbers) >= set(range(10))  # every single digit, 0 included
    only_short = NumberTranslation(digit_weights=(1, 0, 0))
    assert all(n < 10 for e in only_short.sample(50, seed=0) for n in e.numbers)


def test_targets_are_long(task):
    test = task.dataset("test", per_count=50, seed=1)
    longest = max(len(e.tgt) + 1 for e in test if e.count == 10)  # + <eos>
    assert longest >= 40
    assert task.max_target_len == 50 == len(Example((999,) * 10).tgt) + 1
    assert all(len(e.tgt) + 1 <= task.max_target_len for e in test)
    assert max(len(e.src) for e in test) <= 39


def test_collate_pads_and_shifts(task):
    examples = [Example((5,)), Example((12, 907, 40)), Example((100, 3))]
    batch = task.collate(examples)
    assert isinstance(batch, Seq2SeqBatch)
    src, mask, tgt_in, tgt_out = batch
    assert src.shape == mask.shape == (3, 9) and src.dtype == torch.long and mask.dtype == torch.bool
    lengths = torch.tensor([len(e.src) for e in examples])
    assert torch.equal(mask, padding_mask(lengths, 9)) and torch.equal(mask, src == PAD_ID)
    assert tgt_in.shape == tgt_out.shape == (3, 8)
    assert (tgt_in[:, 0] == BOS_ID).all()
    for i, e in enumerate(examples):
        n = len(e.tgt)
        assert task.tgt_vocab.decode(tgt_out[i]) == e.tgt
        assert tgt_out[i, n] == EOS_ID and (tgt_out[i, n + 1 :] == PAD_ID).all()
        assert torch.equal(tgt_in[i, 1 : n + 1], tgt_out[i, :n])  # shifted by one
        assert (tgt_in[i, n + 1 :] == PAD_ID).all()
    assert task.collate(examples, device=torch.device("cpu")).src.device.type == "cpu"


def test_errors(task):
    with pytest.raises(ValueError, match=r"tokens must be unique and not special \(got '<pad>', which is a special"):
        Vocab(["<pad>"])
    with pytest.raises(ValueError, match=r"got 'a', which is repeated"):
        Vocab(["a", "a"])
    with pytest.raises(TypeError, match=r"tokens must be non-empty strings \(got ''\)"):
        Vocab([""])
    with pytest.raises(TypeError, match=r"tokens must be a sequence of tokens, not a string \(got 'ab'\)"):
        task.src_vocab.encode("ab")
    with pytest.raises(ValueError, match=r"ids must be in \[0, 15\) for this vocabulary \(got 99\)"):
        task.src_vocab.decode([99])
    with pytest.raises(ValueError, match=r"ids must be 1-D \(got shape \(1, 2\)\)"):
        task.src_vocab.decode(torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"n must be an int \(got float\)"):
        number_to_words(3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"n must be in \[0, 999\] \(got 1000\)"):
        number_to_words(1000)
    with pytest.raises(ValueError, match=r"need 1 <= min_count <= max_count \(got min_count=3, max_count=2\)"):
        NumberTranslation(max_count=2, min_count=3)
    with pytest.raises(TypeError, match=r"max_count must be an int \(got float\)"):
        NumberTranslation(max_count=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"digit_weights must be three non-negative weights .* \(got \(1, 1\)\)"):
        NumberTranslation(digit_weights=(1, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"not all zero \(got \(0, 0, 0\)\)"):
        NumberTranslation(digit_weights=(0, 0, 0))
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'valid', 'test'\) \(got 'dev'\)"):
        task.sample(3, seed=0, split="dev")
    with pytest.raises(ValueError, match=r"n must be a positive int \(got 0\)"):
        task.sample(0, seed=0)
    with pytest.raises(ValueError, match=r"per_count must be a positive int \(got -1\)"):
        task.dataset("test", per_count=-1, seed=0)
    with pytest.raises(ValueError, match=r"batch_size must be a positive int \(got 0\)"):
        task.batches(0, seed=0)
    with pytest.raises(ValueError, match="examples must not be empty"):
        task.collate([])
    with pytest.raises(TypeError, match=r"examples must be Example objects \(got tuple\)"):
        task.collate([(1, 2)])  # type: ignore[list-item]


def test_bucketed_batches_sort_each_draw_by_length_and_pad_less(task):
    """buckets=4 cuts each draw of 4 batches into batches of similar length: examples from
    the same distribution (every K drawn), in fewer padded positions; buckets=1 is the
    stream the chapters were calibrated on."""
    from attnlib.data import TextToText

    for source, size in ((task, 8), (TextToText(("translate", "reverse")), 16)):
        old, plain = source.batches(size, seed=3), source.batches(size, seed=3, buckets=1)
        assert all(next(old).src.equal(next(plain).src) for _ in range(3))
        plain, bucketed = source.batches(size, seed=3), source.batches(size, seed=3, buckets=4)
        draws_plain = [next(plain) for _ in range(40)]
        draws_bucketed = [next(bucketed) for _ in range(40)]
        assert all(b.src.size(0) == size for b in draws_bucketed)
        padded = lambda bs: sum(b.src.numel() + b.tgt_out.numel() for b in bs)  # noqa: E731
        real = lambda bs: sum(int((b.tgt_out != PAD_ID).sum()) for b in bs)  # noqa: E731
        assert padded(draws_bucketed) < 0.8 * padded(draws_plain)
        assert abs(real(draws_bucketed) - real(draws_plain)) < 0.1 * real(draws_plain)  # same lengths on average
        for start in range(0, 40, 4):   # within one draw, batches do not overlap in source length
            lengths = sorted(((~b.src_key_padding_mask).sum(1).min().item(), (~b.src_key_padding_mask).sum(1).max().item())
                             for b in draws_bucketed[start:start + 4])
            assert all(hi <= lo for (_, hi), (lo, _) in zip(lengths, lengths[1:])), lengths
    with pytest.raises(ValueError, match=r"buckets must be a positive int \(got 0\)"):
        next(task.batches(8, seed=0, buckets=0))


# --- synthetic token tasks (chapter 16) ---------------------------------------------

from attnlib.data import TokenTask, associative_recall, modular_prefix_sum  # noqa: E402


def test_associative_recall_layout_and_answers():
    gen = torch.Generator().manual_seed(0)
    batch = associative_recall(5, 6, num_keys=10, num_values=7, num_queries=4, generator=gen)
    assert isinstance(batch, TokenTask)
    tokens, targets, mask = batch
    assert tokens.shape == targets.shape == mask.shape == (5, 2 * 6 + 4)
    assert mask.dtype == torch.bool and not mask[:, :12].any() and mask[:, 12:].all()
    for b in range(5):
        keys, values = tokens[b, 0:12:2], tokens[b, 1:12:2]
        assert len(set(keys.tolist())) == 6 and ((keys >= 0) & (keys < 10)).all()
        assert ((values >= 10) & (values < 17)).all()
        pairs = dict(zip(keys.tolist(), values.tolist()))
        queries = tokens[b, 12:].tolist()
        assert len(set(queries)) == 4 and all(q in pairs for q in queries)  # asked once each, keys of the sequence
        assert targets[b, 12:].tolist() == [pairs[q] for q in queries]
    assert (targets[~mask] == 0).all()


def test_associative_recall_is_reproducible_and_defaults_to_every_key():
    a = associative_recall(3, 4, generator=torch.Generator().manual_seed(1))
    b = associative_recall(3, 4, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert a.tokens.shape == (3, 12) and int(a.mask.sum()) == 12
    assert sorted(a.tokens[0, 8:].tolist()) == sorted(a.tokens[0, 0:8:2].tolist())


def test_associative_recall_errors():
    with pytest.raises(ValueError, match=r"num_pairs must be at most num_keys=4, the keys are distinct \(got 5\)"):
        associative_recall(2, 5, num_keys=4)
    with pytest.raises(ValueError, match=r"num_queries must be at most num_pairs=3 \(got 4\)"):
        associative_recall(2, 3, num_queries=4)
    with pytest.raises(ValueError, match=r"batch_size must be a positive int \(got 0\)"):
        associative_recall(0, 3)
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None \(got int\)"):
        associative_recall(2, 3, generator=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("modulus", [2, 5])
def test_modular_prefix_sum(modulus):
    tokens, targets, mask = modular_prefix_sum(4, 9, modulus, generator=torch.Generator().manual_seed(0))
    assert tokens.shape == targets.shape == mask.shape == (4, 9) and mask.all()
    assert ((tokens >= 0) & (tokens < modulus)).all()
    state = torch.zeros(4, dtype=torch.long)
    for t in range(9):  # a finite-state machine with `modulus` states
        state = (state + tokens[:, t]) % modulus
        assert torch.equal(targets[:, t], state)


def test_parity_flips_at_every_one():
    tokens, targets, _ = modular_prefix_sum(2, 16, generator=torch.Generator().manual_seed(3))
    flips = torch.cat([targets[:, :1], targets[:, 1:] != targets[:, :-1]], dim=1).long()
    assert torch.equal(flips, tokens)


def test_modular_prefix_sum_errors():
    with pytest.raises(ValueError, match=r"modulus must be an integer >= 2 \(got 1\)"):
        modular_prefix_sum(2, 3, 1)
    with pytest.raises(ValueError, match=r"length must be a positive int \(got 0\)"):
        modular_prefix_sum(2, 0)
