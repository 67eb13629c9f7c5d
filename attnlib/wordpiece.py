"""BERT's WordPiece tokenizer: text to the token ids a pretrained BERT expects.

Chapter 13, "A real pretrained transformer", uses it to feed all-MiniLM-L6-v2.
A pretrained model only understands the ids its own tokenizer produced, so this one
reproduces, id for id, the tokenizer shipped with the checkpoint (the ``tokenizers``
package reading its ``tokenizer.json``) on every character that ``tokenizers`` knows;
"Where attnlib differs from tokenizers" below says which characters it does not know.
The tests compare the two on thousands of strings and on each code point. Two stages
(Devlin et al., 2019, section 3; Wu et al., 2016, section 4.1):

1. **Basic tokenization** (:func:`basic_tokenize`): drop control characters, turn
   every kind of whitespace into a space, put spaces around CJK ideographs (each is
   a word of its own), strip accents (decompose, drop the combining marks),
   lower-case, split on whitespace, and make every punctuation character a word.
2. **WordPiece** (:func:`wordpiece`): split each word greedily into the longest
   vocabulary pieces from the left; pieces after the first carry the ``##`` prefix.
   A word that cannot be covered (or is over 100 characters) becomes ``[UNK]``.

The special tokens (``[CLS]``, ``[SEP]``, ``[MASK]``...) written literally in the
text are kept as they are, and :meth:`WordPieceTokenizer.encode` wraps a text as
``[CLS] text [SEP]``. Nothing is padded or truncated unless asked
(:meth:`WordPieceTokenizer.batch_encode` pads a batch to its longest member).

Character classes follow the Rust ``tokenizers`` implementation where it differs
from the original Python BERT code: lower-casing comes after accent stripping, and
whitespace is Unicode's ``White_Space`` property.

**Where attnlib differs from tokenizers.** Each side classifies characters with the
Unicode tables it was built with. ``tokenizers`` (0.23.3, the version tested) reads a
character's category (control, punctuation, nonspacing mark) and its decomposition
from tables of Unicode 8.0 (2015), and lower-cases with Rust's own, newer tables
(Unicode 17). attnlib reads Python's ``unicodedata``, whose version comes with the
interpreter (Unicode 14.0 on Python 3.11, 15.0 on 3.12).

* *Characters assigned in Unicode 9.0 or later* are, for ``tokenizers``, unassigned
  code points, which it keeps inside a word like letters. attnlib classifies them as
  Unicode now does, so where that class matters the two differ, on purpose: attnlib
  drops a new format character (category ``Cf``, e.g. U+0890 ARABIC POUND MARK
  ABOVE), splits off a new punctuation mark (``P*``, e.g. U+2E4F CORNISH VERSE
  DIVIDER: ``"a\\u2e4fb"`` is ``a``, ``[UNK]``, ``b`` here and one ``[UNK]`` there),
  strips a new nonspacing mark with the accents (``Mn``, e.g. U+1ABF COMBINING LATIN
  SMALL LETTER W BELOW) and decomposes U+11938 DIVES AKURU VOWEL SIGN O. On Python
  3.11 that is 498 code points (104 punctuation marks, 380 nonspacing marks, 13
  format characters and U+11938), all assigned in Unicode 9.0 to 14.0; a later Python
  knows more. None of them is in the checkpoint's vocabulary, so ``tokenizers`` turns
  a word that holds one into ``[UNK]``, where attnlib keeps the rest of the word.
  Matching ``tokenizers`` there would mean shipping Unicode 8.0's tables in order to
  misclassify characters that text written since 2016 uses.
* *Characters that both know but Unicode has re-classified since 8.0* follow
  ``tokenizers``, since the model was trained on its output: U+166D CANADIAN
  SYLLABICS CHI SIGN and U+111C9 SHARADA SANDHI MARK are punctuation (``Po`` in 8.0),
  U+1734 HANUNOO SIGN PAMUDPOD is stripped with the accents (``Mn`` in 8.0), and
  U+1885, U+1886 MONGOLIAN LETTER ALI GALI (THREE) BALUDA, U+A9BD JAVANESE CONSONANT
  SIGN KERET and U+111C9 are not (``Lo``, ``Mc``, ``Po`` in 8.0).
* *Capital letters newer than Python's tables* (Unicode 16 and 17: U+1C89, U+A7CB to
  U+A7DC, Garay U+10D50 to U+10D65, U+16EA0 to U+16EB8), which Rust lower-cases,
  are lower-cased through a table here, so they match too.

The tests pin the differences on named characters and sweep the code points (every
one in planes 0 and 1 outside the large uniform blocks, and a deterministic sample of
the rest) to check that these are the only ones.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ._checks import boolean, positive_int

__all__ = [
    "SPECIAL_TOKENS",
    "load_vocab",
    "is_whitespace",
    "is_control",
    "is_punctuation",
    "is_nonspacing_mark",
    "to_lower",
    "is_cjk",
    "basic_tokenize",
    "wordpiece",
    "WordPieceTokenizer",
]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
"""BERT's special tokens, in order padding, unknown, classification, separator and mask."""

# Unicode's White_Space property (what Rust's ``char::is_whitespace`` tests).
_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

# Where tokenizers knows a character but Unicode has re-classified it since 8.0, the
# Unicode of tokenizers' category tables (see the module's docstring): tokenizers' class.
_PUNCTUATION_IN_8_0 = frozenset("\u166d\U000111c9")  # Po in 8.0; So and Mn now
_MARK_IN_8_0 = frozenset("\u1734")  # Mn in 8.0; Mc now
_NOT_MARK_IN_8_0 = frozenset("\u1885\u1886\ua9bd\U000111c9")  # Lo, Lo, Mc, Po in 8.0; Mn now

# Lower case of the capitals of Unicode 16 and 17, which Rust's char::to_lowercase (and
# so tokenizers) knows and Python 3.11's str.lower does not; the same on any Python.
_NEWER_LOWER_CASE: Dict[str, str] = {
    **{chr(cp): chr(cp + 1) for cp in (0x1C89, 0xA7CC, 0xA7CE, 0xA7D2, 0xA7D4, 0xA7DA)},
    "\ua7cb": "\u0264",
    "\ua7dc": "\u019b",
    **{chr(cp): chr(cp + 0x20) for cp in range(0x10D50, 0x10D66)},  # Garay
    **{chr(cp): chr(cp + 0x1B) for cp in range(0x16EA0, 0x16EB9)},  # Beria Erfe
}

# Code-point blocks of CJK ideographs, as in BERT's and the tokenizers package's code.
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


def load_vocab(path: Union[str, "os.PathLike[str]"]) -> Dict[str, int]:
    """Read a ``vocab.txt``: one token a line, its id the line number (from 0).

    Args:
        path: the file.

    Returns:
        the token -> id mapping.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike (got {type(path).__name__})")
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"path must be an existing vocab.txt file (got {str(p)!r})")
    vocab: Dict[str, int] = {}
    with p.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            token = line.rstrip("\n")
            vocab.setdefault(token, i)
    return vocab


# --- character classes -----------------------------------------------------------------


def is_whitespace(ch: str) -> bool:
    """Whether ``ch`` is whitespace (Unicode's ``White_Space`` property)."""
    return ch in _WHITESPACE


def is_control(ch: str) -> bool:
    """Whether ``ch`` is a control, format, private-use or surrogate character.

    Unicode categories ``Cc``, ``Cf``, ``Co``, ``Cs``; unassigned code points (``Cn``)
    are kept (and become [UNK]), as in ``tokenizers``. Tab, newline and carriage
    return count as whitespace, not control.
    """
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs")


def is_punctuation(ch: str) -> bool:
    """Whether ``ch`` is punctuation: any ASCII symbol character or Unicode category ``P*``.

    ASCII ``$ + < = > ^ ` |`` and ``~`` are symbols in Unicode, but BERT splits them too.
    U+166D and U+111C9, punctuation in Unicode 8.0 and re-classified since, count as
    punctuation, as in ``tokenizers`` (see the module's docstring).
    """
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    if ch in _PUNCTUATION_IN_8_0:
        return True
    return unicodedata.category(ch).startswith("P")


def is_nonspacing_mark(ch: str) -> bool:
    """Whether accent stripping drops ``ch``: Unicode category ``Mn`` (a nonspacing mark).

    Four characters re-classified since Unicode 8.0 keep their class of 8.0, as in
    ``tokenizers``: U+1734 is a mark; U+1885, U+1886, U+A9BD and U+111C9 are not.
    """
    if ch in _MARK_IN_8_0:
        return True
    return unicodedata.category(ch) == "Mn" and ch not in _NOT_MARK_IN_8_0


def to_lower(ch: str) -> str:
    """The lower case of one character (``str.lower``, with the capitals of Unicode 16 and 17).

    May be longer than one character (U+0130 becomes ``"i̇"``). There is no
    final-sigma rule, as in Rust's ``char::to_lowercase``.
    """
    return _NEWER_LOWER_CASE.get(ch) or ch.lower()


def is_cjk(ch: str) -> bool:
    """Whether ``ch`` is a CJK ideograph (each one becomes a word of its own)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


# --- the two stages ---------------------------------------------------------------------


def _normalize(text: str, lower_case: bool, strip_accents: bool) -> str:
    """Clean, space out CJK, strip accents, lower-case (the order of ``tokenizers``)."""
    chars = []
    for ch in text:
        if ch == "\x00" or ch == "\ufffd" or is_control(ch):
            continue
        if is_whitespace(ch):
            chars.append(" ")
        elif is_cjk(ch):
            chars.extend((" ", ch, " "))
        else:
            chars.append(ch)
    out = "".join(chars)
    if strip_accents:
        out = "".join(c for c in unicodedata.normalize("NFD", out) if not is_nonspacing_mark(c))
    if lower_case:  # character by character, as Rust does (no final-sigma rule)
        out = "".join(to_lower(c) for c in out)
    return out


def basic_tokenize(text: str, lower_case: bool = True, strip_accents: Optional[bool] = None) -> List[str]:
    """BERT's basic tokenization: normalise the text, then split it into words.

    Args:
        text: any string.
        lower_case: lower-case the text (the "uncased" models).
        strip_accents: drop accents; ``None`` follows ``lower_case`` (as BERT does).

    Returns:
        The words, that is runs of non-space, non-punctuation characters, and
        each punctuation character alone.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str (got {type(text).__name__})")
    strip = lower_case if strip_accents is None else strip_accents
    words: List[str] = []
    current: List[str] = []
    for ch in _normalize(text, lower_case, strip):
        if is_whitespace(ch) or is_punctuation(ch):
            if current:
                words.append("".join(current))
                current = []
            if not is_whitespace(ch):
                words.append(ch)
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    return words


def wordpiece(
    word: str, vocab: Mapping[str, int], unk_token: str = "[UNK]", max_chars: int = 100, prefix: str = "##"
) -> List[str]:
    """Split one word greedily into the longest vocabulary pieces, left to right.

    Wu et al. (2016), section 4.1; Devlin et al. (2019). ``"unaffable"`` becomes
    ``["una", "##ffa", "##ble"]`` with BERT's vocabulary.

    Args:
        word: one word of :func:`basic_tokenize`.
        vocab: the vocabulary (pieces after the first are looked up with ``prefix``).
        unk_token: what a word that cannot be covered becomes.
        max_chars: longer words become ``unk_token`` without trying.
        prefix: the continuation marker.

    Returns:
        the pieces, or ``[unk_token]``.
    """
    if len(word) > max_chars:
        return [unk_token]
    pieces: List[str] = []
    start = 0
    while start < len(word):
        end = len(word)
        piece = None
        while start < end:  # try the longest candidate first, then shorten it
            candidate = word[start:end] if start == 0 else prefix + word[start:end]
            if candidate in vocab:
                piece = candidate
                break
            end -= 1
        if piece is None:
            return [unk_token]
        pieces.append(piece)
        start = end
    return pieces


# --- the tokenizer ------------------------------------------------------------------------


class WordPieceTokenizer:
    """Text to BERT token ids: special tokens, basic tokenization, then WordPiece.

    Args:
        vocab: token -> id (from :func:`load_vocab`); must contain the five
            :data:`SPECIAL_TOKENS`.
        lower_case: lower-case the text (uncased models such as all-MiniLM-L6-v2).
        strip_accents: ``None`` follows ``lower_case``.
        max_chars: longest word WordPiece tries to split.

    Chapter 13.
    """

    def __init__(
        self,
        vocab: Mapping[str, int],
        lower_case: bool = True,
        strip_accents: Optional[bool] = None,
        max_chars: int = 100,
    ) -> None:
        if not isinstance(vocab, Mapping):
            raise TypeError(f"vocab must be a mapping from token to id (got {type(vocab).__name__})")
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"vocab must contain the special tokens {SPECIAL_TOKENS} (missing {missing})")
        boolean("lower_case", lower_case)
        boolean("strip_accents", strip_accents, or_none=True)
        positive_int("max_chars", max_chars)
        self.vocab: Dict[str, int] = dict(vocab)
        self.ids_to_tokens: Dict[int, str] = {i: t for t, i in self.vocab.items()}
        self.lower_case = lower_case
        self.strip_accents = strip_accents
        self.max_chars = max_chars
        self.pad_id = self.vocab["[PAD]"]
        self.unk_id = self.vocab["[UNK]"]
        self.cls_id = self.vocab["[CLS]"]
        self.sep_id = self.vocab["[SEP]"]
        self.mask_id = self.vocab["[MASK]"]
        # Longest first, so that no special token is cut by a shorter one.
        specials = sorted(SPECIAL_TOKENS, key=len, reverse=True)
        self._special_re = re.compile("(" + "|".join(re.escape(s) for s in specials) + ")")

    @classmethod
    def from_file(cls, path: Union[str, "os.PathLike[str]"], **kwargs: object) -> "WordPieceTokenizer":
        """A tokenizer from a ``vocab.txt`` (keyword arguments as in the constructor)."""
        return cls(load_vocab(path), **kwargs)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(vocab_size={len(self)}, lower_case={self.lower_case})"

    def tokenize(self, text: str) -> List[str]:
        """Split ``text`` into WordPiece tokens (no [CLS]/[SEP] added).

        Special tokens written in the text (``"[MASK]"``) are kept whole.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str (got {type(text).__name__})")
        tokens: List[str] = []
        for i, part in enumerate(self._special_re.split(text)):
            if i % 2 == 1:  # a special token, matched on the raw text
                tokens.append(part)
                continue
            for word in basic_tokenize(part, self.lower_case, self.strip_accents):
                tokens.extend(wordpiece(word, self.vocab, "[UNK]", self.max_chars))
        return tokens

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> List[int]:
        """The ids of ``tokens`` (unknown ones get the [UNK] id)."""
        return [self.vocab.get(t, self.unk_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> List[str]:
        """The tokens of ``ids``."""
        out = []
        for i in ids:
            i = int(i)
            if i not in self.ids_to_tokens:
                raise ValueError(f"ids must be in [0, {len(self)}) (got {i})")
            out.append(self.ids_to_tokens[i])
        return out

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        """The ids of ``text``: ``[CLS] tokens [SEP]`` (no padding, no truncation).

        Args:
            text: any string.
            add_special_tokens: wrap the ids in [CLS] ... [SEP].

        Returns:
            the ids as a list.
        """
        ids = self.convert_tokens_to_ids(self.tokenize(text))
        return [self.cls_id, *ids, self.sep_id] if add_special_tokens else ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Ids back to readable text: ``##`` pieces glued to their word.

        Lower-casing and accent stripping cannot be undone, and spaces around
        punctuation are not restored exactly.
        """
        tokens = self.convert_ids_to_tokens(ids)
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in SPECIAL_TOKENS]
        return " ".join(tokens).replace(" ##", "")

    def batch_encode(self, texts: Sequence[str], max_len: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """Encode several texts and pad them to the longest one.

        Args:
            texts: the strings.
            max_len: refuse a text longer than this many ids (a model's position
                table, 512 for BERT); ``None``: no limit.

        Shapes:
            returns two ``(B, T)`` tensors, ``T`` the longest encoding.

        Returns:
            ``(tokens, key_padding_mask)``: ids (long, padded with the [PAD] id) and
            a boolean mask, ``True`` at padding.
        """
        if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
            raise TypeError(f"texts must be a non-empty sequence of str (got {type(texts).__name__})")
        encoded = [self.encode(t) for t in texts]
        longest = max(len(e) for e in encoded)
        if max_len is not None and longest > max_len:
            raise ValueError(f"texts must encode to at most max_len={max_len} ids (got {longest})")
        tokens = torch.full((len(encoded), longest), self.pad_id, dtype=torch.long)
        mask = torch.ones(len(encoded), longest, dtype=torch.bool)
        for row, ids in enumerate(encoded):
            tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[row, : len(ids)] = False
        return tokens, mask
