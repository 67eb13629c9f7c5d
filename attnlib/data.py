"""The book's running translation task: spell out numbers in English words.

(Also: the help-text corpus of chapters 10 and 11, the text-to-text tasks of chapter 08,
and chapter 16's synthetic token tasks, associative recall and parity, at the end.)

Chapter 02 introduces the task, and every sequence-to-sequence chapter after it
(03 attention, 08 the transformer) trains on it, so their results land in one table.

An example is a sequence of ``K`` integers from 0 to 999. The **source** is its
digits, one character per token (``"12 907 40"``, with a space token between numbers);
the **target** is the English words, with a ``,`` token between numbers::

    source  1 2 _ 9 0 7 _ 4 0                         (9 characters)
    target  twelve , nine hundred seven , forty      (7 words)

Why this task, rather than a toy copy task or a downloaded corpus:

* **It needs alignment.** Each output word depends on a specific span of the input,
  and not always in order: ``17`` becomes ``seventeen`` (two digits, one word),
  ``907`` becomes ``nine hundred seven`` (the middle zero says nothing), ``40``
  becomes ``forty`` and ``45`` ``forty five``. To write the ``k``-th number the
  decoder must find the ``k``-th digit group of the source: the alignment that
  attention (chapter 03) learns and that we can draw.
* **Lengths vary, and accuracy can be read against length.** ``K`` runs from 1 to
  10 (by default), so sources have 1 to 39 characters and targets 2 to 50 tokens
  (with the end-of-sequence token). A model that squeezes the whole source into one
  vector (chapter 02) has more to squeeze as ``K`` grows; grouping the test set by
  ``K`` shows where it fails (the shape of Figure 2 of Bahdanau, Cho and Bengio, 2015).
* **It is generated in code**: no download, exact answers, and as many fresh
  training examples as we like, drawn from a seed.

How numbers are drawn. Each number first draws its count of digits, 1, 2 or 3 with
probabilities 1/6, 1/6 and 2/3 (``digit_weights``), then a value uniformly among the
numbers with that many digits (0-9, 10-99 or 100-999). Drawn uniformly from 0-999, one
number in a hundred would have a single digit and one in eleven two, yet those are the
ones spelled differently (``7``, ``17``, ``70``); a short training run would meet them
too rarely to learn them. Most numbers still have three digits, so at ``K = 10`` the
target has about 40 tokens on average and up to 50.

Splits. Whether a source sequence belongs to the training, validation or test split
is decided by a checksum of its text (CRC-32, the same on every machine and every
run), not by the seed, so the three splits never overlap however many examples are
drawn from each. The seed only decides *which* examples of a split are drawn.

Batches are batch-first :class:`Seq2SeqBatch` tuples: ``src`` ``(B, S)``,
``src_key_padding_mask`` ``(B, S)`` (``True`` at padding, PyTorch's meaning),
``tgt_in`` ``(B, T)`` starting with ``<bos>`` and ``tgt_out`` ``(B, T)`` ending with
``<eos>``: the decoder reads ``tgt_in`` and is trained to predict ``tgt_out``.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Hashable, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Set, Tuple, TypeVar

import torch
from torch import Tensor

from ._checks import fraction, int_type, is_int, non_negative_int, positive_int

__all__ = [
    "PAD",
    "BOS",
    "EOS",
    "UNK",
    "PAD_ID",
    "BOS_ID",
    "EOS_ID",
    "UNK_ID",
    "Vocab",
    "Example",
    "Seq2SeqBatch",
    "NumberTranslation",
    "number_to_words",
    "split_of",
    "group_by",
]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
#: Every :class:`Vocab` starts with the four special tokens, so their ids are fixed.
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIALS: Tuple[str, ...] = (PAD, BOS, EOS, UNK)

SPLITS = ("train", "valid", "test")

T_ = TypeVar("T_")
K_ = TypeVar("K_", bound=Hashable)


class Vocab:
    """A token <-> id map whose first four ids are ``<pad> <bos> <eos> <unk>``.

    Args:
        tokens: the ordinary tokens, in the order their ids should follow the
            specials. Each must be a non-empty string, none repeated, none special.

    Example::

        vocab = Vocab(["a", "b"])
        vocab.encode(["a", "b", "c"], eos=True)   # [4, 5, 3, 2]  (c is unknown)
        vocab.decode([4, 5, 2, 4])                # ['a', 'b']    (stops at <eos>)

    Chapter 02.
    """

    pad_id = PAD_ID
    bos_id = BOS_ID
    eos_id = EOS_ID
    unk_id = UNK_ID

    def __init__(self, tokens: Iterable[str]) -> None:
        tokens = list(tokens)
        self.itos: List[str] = list(SPECIALS)
        self.stoi: Dict[str, int] = {tok: i for i, tok in enumerate(SPECIALS)}
        for tok in tokens:
            if not isinstance(tok, str) or not tok:
                raise TypeError(f"tokens must be non-empty strings (got {tok!r})")
            if tok in self.stoi:
                what = "a special token" if tok in SPECIALS else "repeated"
                raise ValueError(f"tokens must be unique and not special (got {tok!r}, which is {what})")
            self.stoi[tok] = len(self.itos)
            self.itos.append(tok)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {self.itos[4:12]}{'...' if len(self) > 12 else ''})"

    def encode(self, tokens: Sequence[str], bos: bool = False, eos: bool = False) -> List[int]:
        """Map tokens to ids (unknown tokens to ``<unk>``), optionally adding ``<bos>``/``<eos>``."""
        if isinstance(tokens, str):
            raise TypeError(f"tokens must be a sequence of tokens, not a string (got {tokens!r}); use list(text)")
        ids = [self.stoi.get(tok, UNK_ID) for tok in tokens]
        return ([BOS_ID] if bos else []) + ids + ([EOS_ID] if eos else [])

    def decode(self, ids: Iterable[int], strip: bool = True) -> List[str]:
        """Map ids back to tokens.

        Args:
            ids: token ids (a list or a 1-D tensor).
            strip: stop at the first ``<eos>`` and drop ``<pad>`` and ``<bos>``
                (``False``: translate every id, specials included).

        Returns:
            The tokens.
        """
        if isinstance(ids, Tensor):
            if ids.dim() != 1:
                raise ValueError(f"ids must be 1-D (got shape {tuple(ids.shape)})")
            ids = ids.tolist()
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self):
                raise ValueError(f"ids must be in [0, {len(self)}) for this vocabulary (got {i})")
            if strip and i == EOS_ID:
                break
            if strip and i in (PAD_ID, BOS_ID):
                continue
            out.append(self.itos[i])
        return out


_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
SEPARATOR = ","


def number_to_words(n: int) -> List[str]:
    """Spell an integer from 0 to 999 in English words, one word per token.

    ``7 -> [seven]``, ``17 -> [seventeen]``, ``40 -> [forty]``, ``45 -> [forty, five]``,
    ``907 -> [nine, hundred, seven]``, ``999 -> [nine, hundred, ninety, nine]``.
    (No "and", no hyphen: one token per word keeps the vocabulary at 29 words.)

    Args:
        n: the number.

    Returns:
        Between 1 and 4 words.
    """
    int_type("n", n)
    if not 0 <= n <= 999:
        raise ValueError(f"n must be in [0, 999] (got {n})")
    words: List[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [_ONES[hundreds], "hundred"]
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens])
        if ones:
            words.append(_ONES[ones])
    elif rest or not hundreds:
        words.append(_ONES[rest])
    return words


def split_of(numbers: Sequence[int]) -> str:
    """The split a sequence of numbers belongs to: ``"train"``, ``"valid"`` or ``"test"``.

    Decided by the CRC-32 checksum of the source text, so it is the same on every
    machine and never depends on a seed: 80% train, 10% valid, 10% test.
    """
    bucket = zlib.crc32(" ".join(str(n) for n in numbers).encode("ascii")) % 10
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


@dataclass(frozen=True)
class Example:
    """One example of the task: the numbers, and their source and target tokens.

    Attributes:
        numbers: the integers, 0 to 999 each.
    """

    numbers: Tuple[int, ...]

    @property
    def count(self) -> int:
        """``K``, how many numbers: the length bucket of chapters 02, 03 and 08."""
        return len(self.numbers)

    @property
    def src(self) -> List[str]:
        """The source tokens, the characters of ``"12 907 40"``."""
        return list(" ".join(str(n) for n in self.numbers))

    @property
    def tgt(self) -> List[str]:
        """The target tokens, ``twelve , nine hundred seven , forty``."""
        words: List[str] = []
        for i, n in enumerate(self.numbers):
            if i:
                words.append(SEPARATOR)
            words += number_to_words(n)
        return words

    def __str__(self) -> str:
        return f"{''.join(self.src)} -> {' '.join(self.tgt)}"


class Seq2SeqBatch(NamedTuple):
    """A padded batch for any sequence-to-sequence model (batch-first)."""

    src: Tensor
    """Source token ids, ``(B, S)``, padded with ``PAD_ID``."""
    src_key_padding_mask: Tensor
    """``(B, S)`` booleans, ``True`` at padding."""
    tgt_in: Tensor
    """Decoder input ids ``<bos> y1 ... yn``, ``(B, T)``, padded."""
    tgt_out: Tensor
    """Decoder target ids ``y1 ... yn <eos>``, ``(B, T)``, padded."""


def _pad(rows: Sequence[Sequence[int]], device: Optional[torch.device]) -> Tensor:
    longest = max(len(r) for r in rows)
    out = torch.full((len(rows), longest), PAD_ID, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out.to(device) if device is not None else out


def _bucketed(
    draw: Callable[[int], List[Any]],
    collate: Callable[[List[Any]], Seq2SeqBatch],
    batch_size: int,
    buckets: int,
    rng: random.Random,
) -> Iterator[Seq2SeqBatch]:
    """Endless batches from ``draw(n)``; with ``buckets > 1``, batches of similar length.

    ``buckets * batch_size`` examples are drawn at once, sorted by source then target
    length (a stable sort), cut into ``buckets`` batches and yielded in an order
    shuffled by ``rng``. With ``buckets=1`` the stream draws exactly as it always did.
    """
    positive_int("buckets", buckets)
    while True:
        examples = draw(batch_size * buckets)
        if buckets == 1:
            yield collate(examples)
            continue
        examples.sort(key=lambda e: (len(e.src), len(e.tgt)))
        groups = [examples[i * batch_size : (i + 1) * batch_size] for i in range(buckets)]
        rng.shuffle(groups)
        for group in groups:
            yield collate(group)


def _collate(src_vocab: Vocab, tgt_vocab: Vocab, examples: Sequence[Any], device: Optional[torch.device]) -> Seq2SeqBatch:
    """Encode each example's ``src`` and ``tgt`` tokens (an :class:`Example` or a
    :class:`TaskExample`) and pad them into one batch.

    The target is shifted for teacher forcing: ``tgt_in`` starts with BOS and
    ``tgt_out`` ends with EOS.
    """
    src = _pad([src_vocab.encode(e.src) for e in examples], device)
    tgt = [tgt_vocab.encode(e.tgt) for e in examples]
    tgt_in = _pad([[BOS_ID] + t for t in tgt], device)
    tgt_out = _pad([t + [EOS_ID] for t in tgt], device)
    return Seq2SeqBatch(src, src == PAD_ID, tgt_in, tgt_out)


def group_by(items: Iterable[T_], key: Callable[[T_], K_]) -> Dict[K_, List[T_]]:
    """Group items by a key, keys in sorted order: ``group_by(test, lambda e: e.count)``.

    Used to read accuracy against length (number count ``K`` or target length).
    """
    groups: Dict[K_, List[T_]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return {k: groups[k] for k in sorted(groups)}  # type: ignore[type-var]


class NumberTranslation:
    """The running task: digits of ``K`` numbers in, their English words out.

    Args:
        max_count: the largest number count ``K`` (default 10).
        min_count: the smallest ``K`` (default 1).
        digit_weights: relative probabilities of a number having 1, 2 or 3 digits
            (default ``(1, 1, 4)``); the value is then uniform among such numbers.

    Attributes:
        src_vocab: the 11 characters ``0-9`` and space, after the specials.
        tgt_vocab: the 29 number words and ``,``, after the specials.

    Example::

        task = NumberTranslation()
        train = task.batches(batch_size=32, seed=0)      # endless, for attnlib.train.fit
        test = task.dataset("test", per_count=100, seed=1)
        batch = task.collate(test[:4])                   # a Seq2SeqBatch

    Chapter 02 (and chapters 03 and 08).
    """

    def __init__(
        self, max_count: int = 10, min_count: int = 1, digit_weights: Tuple[float, float, float] = (1.0, 1.0, 4.0)
    ) -> None:
        int_type("max_count", max_count)
        int_type("min_count", min_count)
        if not 1 <= min_count <= max_count:
            raise ValueError(f"need 1 <= min_count <= max_count (got min_count={min_count}, max_count={max_count})")
        weights = tuple(float(w) for w in digit_weights)
        if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(
                f"digit_weights must be three non-negative weights for 1, 2 and 3 digits, not all zero (got {digit_weights})"
            )
        self.min_count = min_count
        self.max_count = max_count
        self.digit_weights = weights
        self.src_vocab = Vocab(list("0123456789 "))
        self.tgt_vocab = Vocab(_ONES + _TENS[2:] + ["hundred", SEPARATOR])

    def __repr__(self) -> str:
        return f"NumberTranslation(K in {self.min_count}..{self.max_count}, digit weights {self.digit_weights})"

    @property
    def counts(self) -> List[int]:
        """Every number count ``K`` the task draws."""
        return list(range(self.min_count, self.max_count + 1))

    @property
    def max_target_len(self) -> int:
        """The longest decoder sequence, ``<eos>`` included: 4 words a number, ``K - 1`` commas."""
        return 4 * self.max_count + (self.max_count - 1) + 1

    def _draw_number(self, rng: random.Random) -> int:
        digits = rng.choices((1, 2, 3), weights=self.digit_weights)[0]
        return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)

    def _draw(self, rng: random.Random, split: str, count: int) -> Example:
        while True:  # rejection: about 80% (train) or 10% (valid, test) of draws are kept
            numbers = tuple(self._draw_number(rng) for _ in range(count))
            if split_of(numbers) == split:
                return Example(numbers)

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} (got {split!r})")

    def sample(self, n: int, seed: int, split: str = "train") -> List[Example]:
        """Draw ``n`` examples of one split, ``K`` uniform over :attr:`counts`.

        Args:
            n: how many.
            seed: the random seed (the same seed gives the same examples).
            split: ``"train"``, ``"valid"`` or ``"test"``.

        Returns:
            ``n`` examples (repeats are possible, most likely at ``K = 1``).
        """
        self._check_split(split)
        positive_int("n", n)
        rng = random.Random(f"{split}-{seed}")
        return [self._draw(rng, split, rng.randint(self.min_count, self.max_count)) for _ in range(n)]

    def dataset(self, split: str, per_count: int, seed: int) -> List[Example]:
        """A fixed evaluation set: ``per_count`` distinct examples of one split for every ``K``.

        Equal numbers per ``K`` so that accuracy by length has the same precision in
        every bucket; no example is repeated. One exception: a single number has
        only 1000 possible sources, about a tenth of them in the validation or test
        split, so the ``K = 1`` bucket holds all of them (uniformly, whatever their
        digits) when ``per_count`` asks for more. Ordered by ``K``.

        Args:
            split: ``"valid"`` or ``"test"`` (or ``"train"``, to measure fitting).
            per_count: examples per number count ``K``.
            seed: the random seed.

        Returns:
            ``per_count`` examples for every ``K`` (fewer for ``K = 1``, as above).
        """
        self._check_split(split)
        positive_int("per_count", per_count)
        rng = random.Random(f"{split}-set-{seed}")
        examples: List[Example] = []
        for k in self.counts:
            if k == 1:  # few enough to list: every single number of the split, shuffled
                singles = [Example((n,)) for n in range(1000) if split_of((n,)) == split]
                rng.shuffle(singles)
                examples += singles[:per_count]
                continue
            seen: Set[Example] = set()
            while len(seen) < per_count:
                example = self._draw(rng, split, k)
                if example not in seen:
                    seen.add(example)
                    examples.append(example)
        return examples

    def collate(self, examples: Sequence[Example], device: Optional[torch.device] = None) -> Seq2SeqBatch:
        """Encode and pad examples into one :class:`Seq2SeqBatch`.

        Shapes:
            returns ``src`` and ``src_key_padding_mask`` ``(B, S)``, ``tgt_in`` and
            ``tgt_out`` ``(B, T)``, with ``S`` and ``T`` the longest in the batch.
        """
        if not examples:
            raise ValueError("examples must not be empty")
        if not all(isinstance(e, Example) for e in examples):
            bad = next(e for e in examples if not isinstance(e, Example))
            raise TypeError(f"examples must be Example objects (got {type(bad).__name__})")
        return _collate(self.src_vocab, self.tgt_vocab, examples, device)

    def batches(self, batch_size: int, seed: int, split: str = "train", buckets: int = 1) -> Iterator[Seq2SeqBatch]:
        """Fresh random batches forever: the ``batches`` argument of ``attnlib.train.fit``.

        Args:
            batch_size: examples per batch.
            seed: the random seed of the stream.
            split: the split to draw from (``"train"`` for training).
            buckets: draw ``buckets * batch_size`` examples at a time, sort them by
                length and cut them into ``buckets`` batches of similar length, given in
                random order. The examples come from the same distribution as with
                ``buckets=1`` (not the same draws); a batch is padded to its longest
                example, so similar lengths waste less compute on padding (about a
                third fewer positions with 4 buckets).

        Returns:
            An endless iterator of :class:`Seq2SeqBatch` on the CPU (``fit`` moves
            them to the model's device).
        """
        self._check_split(split)
        positive_int("batch_size", batch_size)
        rng = random.Random(f"{split}-stream-{seed}")

        def draw(n: int) -> List[Example]:
            counts = [rng.randint(self.min_count, self.max_count) for _ in range(n)]
            return [self._draw(rng, split, k) for k in counts]

        return _bucketed(draw, self.collate, batch_size, buckets, rng)


# === Character-level text: tokenizer, corpus and language-model batches ==============
# (chapter 10, GPT; section appended by the GPT work of issue 7)

__all__ += ["CharTokenizer", "load_pydoc_topics", "lm_batches", "pydoc_topics"]


class CharTokenizer:
    """One token per character: the simplest tokenizer, and one without unknown words.

    Chapter 10 trains a character-level GPT with it, as Karpathy's char-rnn and
    nanoGPT do on Shakespeare. Ids are given in sorted character order, so the same
    text always gives the same vocabulary.

    Args:
        chars: the characters of the vocabulary (duplicates are dropped).

    Chapter 10.
    """

    def __init__(self, chars: Iterable[str]) -> None:
        if isinstance(chars, str):
            chars = list(chars)
        unique = sorted(set(chars))
        for c in unique:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"chars must be single characters (got {c!r})")
        if not unique:
            raise ValueError("chars must not be empty")
        self.chars: List[str] = unique
        self.char_to_id: Dict[str, int] = {c: i for i, c in enumerate(unique)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """The tokenizer whose vocabulary is every character that occurs in ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str (got {type(text).__name__})")
        return cls(text)

    @property
    def vocab_size(self) -> int:
        """Number of tokens ``V``."""
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"

    def encode(self, text: str) -> Tensor:
        """Token ids of ``text``.

        Shapes:
            returns ``(N,)`` int64 for a text of ``N`` characters.

        Raises:
            ValueError: a character is not in the vocabulary.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str (got {type(text).__name__})")
        try:
            ids = [self.char_to_id[c] for c in text]
        except KeyError as err:
            raise ValueError(f"text holds the character {err.args[0]!r}, which is not in the vocabulary") from None
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids (a 1-d tensor or a sequence of ints)."""
        if isinstance(ids, Tensor):
            if ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
                raise ValueError(f"ids must be a 1-d integer tensor (got shape {tuple(ids.shape)}, dtype {ids.dtype})")
            ids = ids.tolist()
        out = []
        for i in ids:
            if not is_int(i) or not 0 <= i < self.vocab_size:
                raise ValueError(f"ids must be ints in [0, {self.vocab_size}) (got {i!r})")
            out.append(self.chars[i])
        return "".join(out)


def pydoc_topics() -> Dict[str, str]:
    """The help text of Python's language topics, the same on every Python version.

    A snapshot of ``pydoc_data.topics.topics`` from CPython 3.11.7 (PSF License), shipped
    as package data and checked by its sha256 (``attnlib/_resources/README.md``). The
    module itself changes from one Python release to the next (458,917 characters on
    3.10, 492,155 on 3.12), which would move every figure that chapters 10 and 11
    measure on it; the snapshot keeps the text the book was made with.

    Returns:
        A dict from topic name (``"if"``, ``"with"``, ...) to its help text.

    Chapters 10 and 11.
    """
    import json
    import lzma

    from ._package_data import resource_path

    with lzma.open(resource_path("pydoc_topics.json.xz"), "rt", encoding="ascii") as f:
        topics: Dict[str, str] = json.load(f)
    return topics


def load_pydoc_topics(val_fraction: float = 0.1) -> Tuple[str, str]:
    """The English help text of Python's language topics, split into training and validation.

    :func:`pydoc_topics` holds the text of ``help("if")``, ``help("with")`` and the
    other language topics (about 80 of them, some 465,000 characters): a small corpus
    of technical English that ships with attnlib, so nothing is downloaded, and is the
    same on every Python version (a snapshot of CPython 3.11.7's ``pydoc_data.topics``).
    The topics are joined in sorted order with a blank line between them and the last
    ``val_fraction`` of the characters is the validation text, so the two splits share
    no passage.

    Args:
        val_fraction: the share of characters held out, in ``(0, 1)``.

    Returns:
        ``(train_text, val_text)``.

    Chapter 10.
    """
    fraction("val_fraction", val_fraction, open_low=True)
    topics = pydoc_topics()
    text = "\n\n".join(topics[name].strip() for name in sorted(topics))
    cut = int(round(len(text) * (1 - val_fraction)))
    return text[:cut], text[cut:]


def lm_batches(ids: Tensor, batch_size: int, block_size: int, seed: int) -> Iterator[Tuple[Tensor, Tensor]]:
    """Random windows of a token stream for next-token training, forever.

    Each example is ``block_size + 1`` consecutive tokens from a random offset: the
    input is the first ``block_size``, the target the last ``block_size`` (the input
    shifted left by one). The ``batches`` argument of :func:`attnlib.train.fit`.

    Args:
        ids: the token stream.
        batch_size: windows per batch ``B``.
        block_size: window length ``T``.
        seed: the seed of the stream's own generator.

    Shapes:
        ids: ``(N,)`` with ``N > T``; yields ``(inputs, targets)``, each ``(B, T)``.

    Returns:
        An endless iterator of ``(inputs, targets)`` on ``ids``'s device.

    Chapter 10.
    """
    if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        got = f"shape {tuple(ids.shape)}, dtype {ids.dtype}" if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(f"ids must be a 1-d integer tensor (got {got})")
    positive_int("batch_size", batch_size)
    positive_int("block_size", block_size)
    non_negative_int("seed", seed)
    if ids.numel() <= block_size:
        raise ValueError(f"ids must be longer than block_size={block_size} (got {ids.numel()} tokens)")
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.arange(block_size + 1)

    def stream() -> Iterator[Tuple[Tensor, Tensor]]:
        while True:
            starts = torch.randint(ids.numel() - block_size, (batch_size, 1), generator=gen)
            windows = ids[(starts + offsets).to(ids.device)]  # (B, T + 1)
            yield windows[:, :-1], windows[:, 1:]

    return stream()


# === Multi-task text-to-text data (chapter 08; owner: the chapter 08 helper) ===========
#
# One model, several tasks, told apart by a prefix token in the source: the recipe of
# T5 (Raffel et al., 2020), where every task is "text in, text out". The tasks reuse
# the running task's numbers, splits and batches:
#
#   translate:  "translate: 12 907 40" -> "twelve , nine hundred seven , forty"
#   reverse:    "reverse: 12 907 40"   -> "40 907 12"   (the numbers in reverse order)
#   sort:       "sort: 12 907 40"      -> "12 40 907"   (the numbers in increasing order)

TEXT_TO_TEXT_TASKS: Tuple[str, ...] = ("translate", "reverse", "sort")


@dataclass(frozen=True)
class TaskExample:
    """One example of :class:`TextToText`: a task name and the numbers it works on.

    Attributes:
        task: ``"translate"``, ``"reverse"`` or ``"sort"``.
        numbers: the integers, 0 to 999 each.
    """

    task: str
    numbers: Tuple[int, ...]

    @property
    def count(self) -> int:
        """``K``, how many numbers."""
        return len(self.numbers)

    @property
    def src(self) -> List[str]:
        """The prefix token (``"sort:"``) then the characters of the numbers."""
        return [f"{self.task}:"] + list(" ".join(str(n) for n in self.numbers))

    @property
    def tgt(self) -> List[str]:
        """The words of the numbers (translate), or the characters of the reordered numbers."""
        if self.task == "translate":
            return Example(self.numbers).tgt
        ordered = self.numbers[::-1] if self.task == "reverse" else sorted(self.numbers)
        return list(" ".join(str(n) for n in ordered))

    def __str__(self) -> str:
        target = " ".join(self.tgt) if self.task == "translate" else "".join(self.tgt)  # words, or characters
        return f"{self.src[0]} {''.join(self.src[1:])} -> {target}"


class TextToText:
    """Several tasks over the running task's numbers, one prefix token per task (T5-style).

    The source is a task token (``"translate:"``, ``"reverse:"``, ``"sort:"``) followed
    by the digits of ``K`` numbers; the target is in one shared output vocabulary (the
    number words, ``,``, the digits and the space). Splits follow the numbers
    (:func:`split_of`), so a test sequence of numbers is unseen in training for every
    task. Batches are :class:`Seq2SeqBatch` tuples, so ``attnlib.train.seq2seq_loss``
    and ``attnlib.decoding.translate`` work unchanged.

    Args:
        tasks: the task names to mix, a non-empty subset of ``TEXT_TO_TEXT_TASKS``.
        max_count, min_count, digit_weights: as in :class:`NumberTranslation`.

    Chapter 08 (Raffel et al., 2020).
    """

    def __init__(
        self,
        tasks: Sequence[str] = TEXT_TO_TEXT_TASKS,
        max_count: int = 10,
        min_count: int = 1,
        digit_weights: Tuple[float, float, float] = (1.0, 1.0, 4.0),
    ) -> None:
        tasks = tuple(tasks)
        unknown = [t for t in tasks if t not in TEXT_TO_TEXT_TASKS]
        if not tasks or unknown or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be distinct names from {TEXT_TO_TEXT_TASKS}, at least one (got {tasks})")
        self.tasks = tasks
        self.numbers = NumberTranslation(max_count, min_count, digit_weights)
        digits = list("0123456789 ")
        self.src_vocab = Vocab([f"{t}:" for t in tasks] + digits)
        self.tgt_vocab = Vocab(list(self.numbers.tgt_vocab.itos[len(SPECIALS):]) + digits)

    def __repr__(self) -> str:
        return f"TextToText(tasks {self.tasks}, K in {self.numbers.min_count}..{self.numbers.max_count})"

    @property
    def counts(self) -> List[int]:
        """Every number count ``K`` the tasks draw."""
        return self.numbers.counts

    @property
    def max_target_len(self) -> int:
        """The longest decoder sequence of any task, ``<eos>`` included."""
        K = self.numbers.max_count
        longest_digits = 4 * K  # three digits and a space per number, the last space replaced by <eos>
        return max(self.numbers.max_target_len if "translate" in self.tasks else 0, longest_digits)

    def _check_task(self, task: str) -> None:
        if task not in self.tasks:
            raise ValueError(f"task must be one of {self.tasks} (got {task!r})")

    def sample(self, n: int, seed: int, split: str = "train") -> List[TaskExample]:
        """Draw ``n`` examples, the task uniform over ``tasks`` and ``K`` uniform.

        Returns:
            ``n`` :class:`TaskExample` objects of the split.
        """
        rng = random.Random(f"text-to-text-{seed}")
        numbers = self.numbers.sample(n, seed, split)
        return [TaskExample(rng.choice(self.tasks), e.numbers) for e in numbers]

    def dataset(self, task: str, split: str, per_count: int, seed: int) -> List[TaskExample]:
        """A fixed evaluation set of one task: the numbers of :meth:`NumberTranslation.dataset`.

        Every task gets the same sequences of numbers for the same ``seed``, so the
        per-task scores compare like with like.

        Returns:
            ``per_count`` examples for every ``K`` (fewer at ``K = 1``), ordered by ``K``.
        """
        self._check_task(task)
        return [TaskExample(task, e.numbers) for e in self.numbers.dataset(split, per_count, seed)]

    def collate(self, examples: Sequence[TaskExample], device: Optional[torch.device] = None) -> Seq2SeqBatch:
        """Encode and pad examples into one :class:`Seq2SeqBatch` (see :meth:`NumberTranslation.collate`)."""
        if not examples:
            raise ValueError("examples must not be empty")
        bad = next((e for e in examples if not isinstance(e, TaskExample)), None)
        if bad is not None:
            raise TypeError(f"examples must be TaskExample objects (got {type(bad).__name__})")
        for e in examples:
            self._check_task(e.task)
        return _collate(self.src_vocab, self.tgt_vocab, examples, device)

    def batches(self, batch_size: int, seed: int, split: str = "train", buckets: int = 1) -> Iterator[Seq2SeqBatch]:
        """Fresh random batches of mixed tasks forever (for ``attnlib.train.fit``).

        Args:
            batch_size, seed, split, buckets: as in :meth:`NumberTranslation.batches`.

        Returns:
            An endless iterator of :class:`Seq2SeqBatch` on the CPU.
        """
        positive_int("batch_size", batch_size)
        self.numbers._check_split(split)
        rng = random.Random(f"text-to-text-{split}-stream-{seed}")
        base = self.numbers

        def draw(n: int) -> List[TaskExample]:
            drawn = []
            for _ in range(n):
                numbers = base._draw(rng, split, rng.randint(base.min_count, base.max_count)).numbers
                drawn.append(TaskExample(rng.choice(self.tasks), numbers))
            return drawn

        return _bucketed(draw, self.collate, batch_size, buckets, rng)


__all__ += ["TEXT_TO_TEXT_TASKS", "TaskExample", "TextToText"]


# === Synthetic token tasks for sequence mixers (chapter 16) ===========================
#
# Two controlled tasks that tell the families of sequence models apart:
#
#   associative recall (Zoology):  k1 v1 k2 v2 ... kP vP  q1 q2 ... qQ   -> the value of each q
#   modular prefix sum (parity):   x1 x2 ... xT                           -> (x1 + ... + xt) mod m
#
# Both return a TokenTask: inputs, targets at every position, and a mask of the
# positions that are scored.


class TokenTask(NamedTuple):
    """A batch of a synthetic token task: a causal model reads ``tokens`` and predicts ``targets``.

    Only the positions where ``mask`` is ``True`` are scored (the targets elsewhere are
    0 and carry no meaning). Chapter 16.
    """

    tokens: Tensor
    """``(B, T)`` input token ids."""
    targets: Tensor
    """``(B, T)`` the token id to predict at each position."""
    mask: Tensor
    """``(B, T)`` boolean: ``True`` where the prediction is scored."""


def _task_generator(generator: object) -> Optional[torch.Generator]:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None (got {type(generator).__name__})")
    return generator


def associative_recall(
    batch_size: int,
    num_pairs: int,
    num_keys: int = 64,
    num_values: int = 64,
    num_queries: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
) -> TokenTask:
    """Multi-query associative recall (MQAR; Arora et al., 2023, "Zoology", section 3).

    Each sequence lists ``num_pairs`` key-value pairs, then asks for keys again::

        k1 v1 k2 v2 ... kP vP  q1 q2 ... qQ        target at q_i: the value paired with q_i

    The keys of a sequence are distinct (drawn without replacement from ``num_keys``);
    the values are drawn with replacement from ``num_values``; the queries are keys of
    the sequence, each asked at most once, in random order. Key ``i`` is token ``i``
    and value ``j`` is token ``num_keys + j``, so the vocabulary has
    ``num_keys + num_values`` tokens. A causal model answers query ``q_i`` at its own
    position, so it must have stored every pair it might be asked about: attention
    can look the key up, a recurrent model must hold all ``P`` pairs in its state.

    Args:
        batch_size: sequences ``B``.
        num_pairs: key-value pairs ``P`` per sequence (at most ``num_keys``).
        num_keys: distinct key tokens.
        num_values: distinct value tokens.
        num_queries: queries ``Q`` per sequence (at most ``num_pairs``; ``None``: all ``P``).
        generator: the random generator (PyTorch's global one if ``None``).
        device: where to put the tensors.

    Shapes:
        returns three ``(B, 2P + Q)`` tensors.

    Returns:
        A :class:`TokenTask`; ``mask`` is ``True`` at the ``Q`` query positions.

    Chapter 16.
    """
    positive_int("batch_size", batch_size)
    positive_int("num_pairs", num_pairs)
    positive_int("num_keys", num_keys)
    positive_int("num_values", num_values)
    if num_pairs > num_keys:
        raise ValueError(f"num_pairs must be at most num_keys={num_keys}, the keys are distinct (got {num_pairs})")
    queries = num_pairs if num_queries is None else positive_int("num_queries", num_queries)
    if queries > num_pairs:
        raise ValueError(f"num_queries must be at most num_pairs={num_pairs} (got {queries})")
    gen = _task_generator(generator)
    B, P = batch_size, num_pairs
    keys = torch.rand(B, num_keys, generator=gen).argsort(dim=1)[:, :P]  # (B, P): distinct keys
    values = num_keys + torch.randint(num_values, (B, P), generator=gen)  # (B, P)
    asked = torch.rand(B, P, generator=gen).argsort(dim=1)[:, :queries]  # (B, Q): which pairs are asked
    context = torch.stack([keys, values], dim=2).reshape(B, 2 * P)  # (B, 2P): k1 v1 k2 v2 ...
    tokens = torch.cat([context, keys.gather(1, asked)], dim=1)  # (B, 2P + Q)
    targets = torch.cat([torch.zeros_like(context), values.gather(1, asked)], dim=1)  # (B, 2P + Q)
    mask = torch.zeros(B, 2 * P + queries, dtype=torch.bool)
    mask[:, 2 * P:] = True
    return TokenTask(tokens.to(device), targets.to(device), mask.to(device))


def modular_prefix_sum(
    batch_size: int,
    length: int,
    modulus: int = 2,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
) -> TokenTask:
    """State tracking: the running sum of the tokens modulo ``modulus`` (``modulus=2``: parity).

    ``tokens`` are uniform in ``0 .. modulus - 1``; the target at position ``t`` is
    ``(x_1 + ... + x_t) mod modulus``, scored at every position. A finite-state machine
    with ``modulus`` states solves it at any length, and so does a recurrent network
    that has learned one; Delétang et al. (2023), "Neural networks and the Chomsky
    hierarchy", find that LSTMs generalise to longer inputs on such tasks and
    transformers do not. Train on short lengths, test on long ones.

    Args:
        batch_size: sequences ``B``.
        length: tokens ``T`` per sequence.
        modulus: number of token values and of states ``m`` (at least 2).
        generator: the random generator (PyTorch's global one if ``None``).
        device: where to put the tensors.

    Shapes:
        returns three ``(B, T)`` tensors.

    Returns:
        A :class:`TokenTask` whose ``mask`` is all ``True``.

    Chapter 16.
    """
    positive_int("batch_size", batch_size)
    positive_int("length", length)
    if not is_int(modulus) or modulus < 2:
        raise ValueError(f"modulus must be an integer >= 2 (got {modulus!r})")
    gen = _task_generator(generator)
    tokens = torch.randint(modulus, (batch_size, length), generator=gen)  # (B, T)
    targets = tokens.cumsum(dim=1) % modulus  # (B, T)
    mask = torch.ones(batch_size, length, dtype=torch.bool)
    return TokenTask(tokens.to(device), targets.to(device), mask.to(device))


__all__ += ["TokenTask", "associative_recall", "modular_prefix_sum"]
