"""Tests for the character-level text section of attnlib.data (chapter 10)."""

from __future__ import annotations

import glob
import hashlib
import subprocess
import sys

import pytest
import torch

import attnlib.data as data
from attnlib._package_data import RESOURCES, SHA256, resource_path
from attnlib.data import CharTokenizer, lm_batches, load_pydoc_topics, pydoc_topics


def test_char_tokenizer_round_trip_and_sorted_ids():
    tok = CharTokenizer.from_text("hello, world")
    assert tok.chars == sorted(set("hello, world"))
    assert tok.vocab_size == len(tok) == 9
    ids = tok.encode("world, hello")
    assert ids.dtype == torch.long and ids.shape == (12,)
    assert tok.decode(ids) == "world, hello"
    assert tok.decode([0, 1]) == " ,"
    assert tok.encode("").shape == (0,)
    assert repr(tok) == "CharTokenizer(vocab_size=9)"
    assert {"CharTokenizer", "load_pydoc_topics", "lm_batches", "pydoc_topics"} <= set(data.__all__)


def test_char_tokenizer_errors():
    tok = CharTokenizer("abc")
    with pytest.raises(ValueError, match=r"text holds the character 'z', which is not in the vocabulary"):
        tok.encode("abz")
    with pytest.raises(TypeError, match=r"text must be a str \(got int\)"):
        tok.encode(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ids must be ints in \[0, 3\) \(got 3\)"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match=r"ids must be a 1-d integer tensor \(got shape \(1, 2\)"):
        tok.decode(torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"chars must be single characters \(got 'ab'\)"):
        CharTokenizer(["ab"])
    with pytest.raises(ValueError, match=r"chars must not be empty"):
        CharTokenizer("")
    with pytest.raises(TypeError, match=r"text must be a str \(got list\)"):
        CharTokenizer.from_text(["a"])  # type: ignore[arg-type]


def test_pydoc_topics_split_is_contiguous_and_disjoint():
    train, val = load_pydoc_topics(0.1)
    whole = train + val
    assert len(whole) > 100_000
    assert abs(len(val) / len(whole) - 0.1) < 1e-3
    assert "if" in whole and "\n\n" in whole
    train2, val2 = load_pydoc_topics(0.2)
    assert train2 + val2 == whole  # the same text, cut elsewhere
    tok = CharTokenizer.from_text(whole)
    assert 60 <= tok.vocab_size <= 200
    for bad in (0, 1, 1.5, "0.1", True):
        with pytest.raises(ValueError, match=r"val_fraction must be a number in \(0, 1\)"):
            load_pydoc_topics(bad)  # type: ignore[arg-type]


def test_lm_batches_are_shifted_windows_reproducible_by_seed():
    ids = torch.arange(100)
    inputs, targets = next(lm_batches(ids, 4, 10, seed=0))
    assert inputs.shape == targets.shape == (4, 10)
    assert torch.equal(targets, inputs + 1)  # the next token of a counting stream
    assert int(targets.max()) <= 99
    a, b = lm_batches(ids, 4, 10, seed=3), lm_batches(ids, 4, 10, seed=3)
    for _ in range(3):
        assert torch.equal(next(a)[0], next(b)[0])
    starts = torch.cat([next(lm_batches(ids, 64, 10, seed=s))[0][:, 0] for s in range(5)])
    assert starts.min() == 0 and starts.max() == 89  # every offset can be drawn, none overflows


def test_lm_batches_errors():
    ids = torch.arange(10)
    with pytest.raises(ValueError, match=r"ids must be a 1-d integer tensor \(got shape \(10,\), dtype torch.float32\)"):
        lm_batches(ids.float(), 2, 3, 0)
    with pytest.raises(ValueError, match=r"batch_size must be a positive int \(got 0\)"):
        lm_batches(ids, 0, 3, 0)
    with pytest.raises(ValueError, match=r"block_size must be a positive int \(got 2.0\)"):
        lm_batches(ids, 2, 2.0, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"seed must be a non-negative int \(got -1\)"):
        lm_batches(ids, 2, 3, -1)
    with pytest.raises(ValueError, match=r"ids must be longer than block_size=10 \(got 10 tokens\)"):
        lm_batches(ids, 2, 10, 0)


# The corpus of chapters 10 and 11: attnlib's snapshot of CPython 3.11.7's pydoc_data.topics,
# joined as load_pydoc_topics joins it. Its sha256 must be the same on every Python.
CORPUS_SHA256 = "d9dc35bce5ab1a24ed7f4c3c9b7c22450410e9d68279e3426db458c6be371621"
# What each interpreter runs: only the standard library (json, lzma, hashlib), no attnlib.
_HASH_CORPUS = """
import hashlib, json, lzma, sys
with lzma.open(sys.argv[1], "rt", encoding="ascii") as f:
    topics = json.load(f)
text = "\\n\\n".join(topics[name].strip() for name in sorted(topics))
print(hashlib.sha256(text.encode("utf-8")).hexdigest())
"""
PYTHONS = sorted(glob.glob("/root/.pyenv/versions/3.1[0-3].*/bin/python"))


def test_corpus_is_the_pinned_snapshot():
    train, val = load_pydoc_topics(0.1)
    assert hashlib.sha256((train + val).encode("utf-8")).hexdigest() == CORPUS_SHA256
    assert len(train + val) == 465_047 and len(set(train + val)) == 103


@pytest.mark.skipif(sys.version_info[:3] != (3, 11, 7), reason="the snapshot is CPython 3.11.7's text")
def test_snapshot_equals_this_pythons_pydoc_data_on_3_11_7():
    from pydoc_data.topics import topics

    assert pydoc_topics() == topics
    assert list(pydoc_topics()) == list(topics)  # the same order too (chapter 11's tokenizer joins the values)


@pytest.mark.skipif(not PYTHONS, reason="no Python 3.10-3.13 under /root/.pyenv/versions")
def test_corpus_has_one_sha256_under_every_python_found():
    path = resource_path("pydoc_topics.json.xz")
    digests = {python: subprocess.run([python, "-I", "-c", _HASH_CORPUS, str(path)], capture_output=True,
                                      text=True, check=True).stdout.strip() for python in PYTHONS}
    assert set(digests.values()) == {CORPUS_SHA256}, digests


def test_every_package_data_file_is_pinned_and_intact():
    shipped = {p.name for p in RESOURCES.iterdir() if p.name != "README.md"}
    assert shipped == set(SHA256), f"unpinned: {shipped - set(SHA256)}; missing: {set(SHA256) - shipped}"
    for name in SHA256:
        assert resource_path(name).is_file()
    with pytest.raises(ValueError, match=r"name must be one of .* \(got 'nope'\)"):
        resource_path("nope")
