"""Byte-level BPE: the tokenizer of GPT-2 and of most modern decoders, SmolLM2's included.

Chapter 15, "The modern decoder with a real small chat model", feeds
SmolLM2-135M-Instruct with it. Byte-pair encoding was brought to text by Sennrich et al.
(2016); GPT-2 (Radford et al., 2019, section 2.2) made it *byte-level*, so that any
string, in any script, can be encoded without an unknown token. Karpathy's ``minbpe`` is
a readable reference; this module is written the same way and reproduces, id for id,
the tokenizer that Hugging Face ``transformers`` builds from SmolLM2's GGUF file. Four
steps take a text to ids:

1. **Special tokens** (``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>``...) written
   in the text are cut out first and become their own ids; the chat format relies on it.
2. **Pre-tokenization** (:func:`pre_tokenize`): GPT-2's regular expression splits the
   rest into words -- a letter run with at most one space before it, a number, a run of
   punctuation, whitespace, or an English contraction's ``'s``, ``'t``... -- so that no
   token ever spans two of them.
3. **Bytes as characters** (:func:`bytes_to_unicode`): each word becomes its UTF-8
   bytes, each byte spelled as one printable character (a space is ``Ġ``, a newline
   ``Ċ``); the vocabulary is written in that alphabet.
4. **Merges** (:func:`bpe`): starting from single bytes, the adjacent pair that was
   learned earliest (lowest rank in the merge list) is joined, again and again, until
   no adjacent pair is in the list. The pieces left are the tokens.

Decoding (:meth:`ByteLevelBPETokenizer.decode`) runs backwards: ids to tokens, tokens
to bytes, bytes to text (a sequence that is not valid UTF-8, such as half of an emoji,
becomes U+FFFD).

**Two readings of the file's pre-tokenizer.** The GGUF file names its pre-tokenizer
``smollm``. llama.cpp, and the ``tokenizer.json`` that SmolLM2 was trained with (a
``Digits(individual_digits=True)`` step before GPT-2's ``ByteLevel``), first cut every
numeral (``\\p{N}``) out as a word of its own, then split the rest with GPT-2's
expression. ``transformers`` (5.x) has no split of its own for the name ``smollm``
and uses GPT-2's expression alone, as its ``GPT2Tokenizer`` does. The two differ where
a number follows several spaces or a newline and a space (``"x    4"``:
``ĠĠĠ`` ``Ġ`` ``4`` here, ``ĠĠĠĠ`` ``4`` in SmolLM2's own tokenizer), and on
numerals such as ``½`` after a space; a number after one space (``"is 4"``) is split
alike.
:class:`ByteLevelBPETokenizer` follows ``transformers`` by default, so that its ids can
be checked against it; ``split_digits=True`` gives SmolLM2's own split (both are
tested against the Rust ``tokenizers``).

21 of the 256 bytes have no token in SmolLM2's vocabulary (bytes that never occur in
UTF-8, such as 0xFF, the lead bytes of the unassigned planes 4 to 11, and six control
characters: U+0004, U+0006, U+0013, U+0014, U+0016, U+001D). The Rust tokenizer drops
such a byte from its word before merging, without a warning, and so does this one:
``"(\\x04)"`` encodes as ``"()"`` would, and ``"a\\x04b"`` as ``a``, ``b`` (the
control character still ends the word ``a``). Everything else round-trips:
``decode(encode(text)) == text``.

Special tokens are the GGUF's *control* tokens (token type 3). As in ``transformers``,
they are recognised anywhere in the text, also inside a user's message: a message that
contains ``<|im_end|>`` closes its turn. ``split_special_tokens=True`` encodes them as
plain text instead.

Characters assigned in Unicode 17.0 (2025) or later are letters for the ``regex``
package that :func:`pre_tokenize` uses, and unknown to the regex engine of
``tokenizers`` 0.23 (Oniguruma, Unicode 16), so the two can split text that holds them
differently (the tests sweep the code points: these are the only differences).

Two optional packages are needed, both installed with ``transformers``: ``regex`` (for
``\\p{L}``, "any letter", which Python's ``re`` lacks) and ``jinja2`` (to render the
chat template); and ``gguf`` to read the file.
"""

from __future__ import annotations

import functools
import operator
import os
import re
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ._checks import boolean, is_index

if TYPE_CHECKING:  # gguf is optional: imported where it is used
    from gguf import GGUFReader

__all__ = [
    "GPT2_SPLIT_PATTERN",
    "bytes_to_unicode",
    "pre_tokenize",
    "merge_ranks",
    "bpe",
    "ByteLevelBPETokenizer",
]

GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
"""The pre-tokenizer of GPT-2 (Radford et al., 2019). It splits off contractions, letters,
numbers, other symbols (each with at most one space in front), then whitespace. ``\\s+(?!\\S)`` leaves
the last space of a run to the word that follows it."""

_INSTALL = 'pip install "attnlib[pretrained]"'

Merge = Tuple[str, str]
"""A merge: the pair of adjacent tokens it joins, such as ``("Ġ", "t")``."""

_NEVER = float("inf")  # the rank of a pair that is not a merge


# --- the three pieces ---------------------------------------------------------------------


def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's table from each of the 256 byte values to one printable character.

    Printable Latin-1 bytes (``!`` to ``~``, ``¡`` to ``¬``, ``®`` to ``ÿ``) stand for
    themselves; the other 68 (controls, space, soft hyphen...) are moved to U+0100 and
    up, in order, so that a space is ``Ġ`` (U+0120) and a newline ``Ċ`` (U+010A). Token
    strings in the vocabulary are written in these characters. From GPT-2's
    ``encoder.py`` (Radford et al., 2019).

    Returns:
        byte value (0 to 255) -> character.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return dict(sorted(table.items()))


@functools.lru_cache(maxsize=None)
def _compile(pattern: str) -> Any:
    """``pattern`` compiled with the ``regex`` package (which knows ``\\p{L}``)."""
    try:
        import regex  # type: ignore[import-untyped]
    except ImportError as err:  # pragma: no cover - regex comes with transformers
        raise ImportError(
            f"the byte-level BPE pre-tokenizer needs the package regex (for \\p{{L}}), which is not "
            f"installed; install attnlib's pretrained extra: `{_INSTALL}`"
        ) from err
    return regex.compile(pattern)


def pre_tokenize(text: str, split_digits: bool = False) -> List[str]:
    """Split ``text`` into the words BPE works on, with GPT-2's regular expression.

    ``"Hello  world's 42!"`` becomes ``["Hello", " ", " world", "'s", " 42", "!"]``:
    a space belongs to the word after it, and no token will cross a word's border.

    Args:
        text: any string (without special tokens; the tokenizer cuts those out first).
        split_digits: first cut out every numeral as a word of its own, then split
            the text between them (SmolLM2's own tokenizer, llama.cpp's ``smollm``):
            ``[..., " ", "4", "2", "!"]`` above.

    Returns:
        the words, in order; joined, they give ``text`` back.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str (got {type(text).__name__})")
    boolean("split_digits", split_digits)
    gpt2 = _compile(GPT2_SPLIT_PATTERN)
    if not split_digits:
        words: List[str] = gpt2.findall(text)
        return words
    pieces = _compile(r"(\p{N})").split(text)  # odd positions: one numeral each
    return [word for piece in pieces if piece for word in gpt2.findall(piece)]


def merge_ranks(merges: Iterable[Merge]) -> Dict[Merge, int]:
    """Each merge's rank: its position in the merge list, the order training learned it.

    Args:
        merges: pairs ``(left, right)``, earliest first.

    Returns:
        ``(left, right) -> rank``; a lower rank is merged first.
    """
    return {pair: rank for rank, pair in enumerate(merges)}


def bpe(symbols: Sequence[str], ranks: Mapping[Merge, int]) -> List[str]:
    """Merge adjacent symbols, best-ranked pair first, until no pair can be merged.

    Sennrich et al. (2016), section 3.2, applied to one word, in the loop of GPT-2's
    ``encoder.py`` and of ``minbpe``: find the adjacent pair with the lowest rank, join
    every occurrence of it, left to right; repeat. ``["h", "e", "l", "l", "o"]``
    becomes ``["he", "l", "l", "o"]``, then ``["he", "ll", "o"]``, then ``["hello"]``.

    The Rust ``tokenizers`` package joins one pair at a time, the lowest-ranked and
    then leftmost. The tokens are the same for a merge list learned by training: each
    merge only joins tokens that earlier merges made, so joining a pair never creates
    a pair ranked lower than itself (the tests check this of SmolLM2's list).

    Args:
        symbols: one word, as a list of byte characters (:func:`bytes_to_unicode`).
        ranks: from :func:`merge_ranks`.

    Returns:
        the word's tokens.
    """
    parts = list(symbols)
    while len(parts) > 1:
        pairs = set(zip(parts, parts[1:]))
        best = min(pairs, key=lambda pair: ranks.get(pair, _NEVER))
        if best not in ranks:  # no adjacent pair can be merged: done
            break
        parts = _join(parts, best)
    return parts


def _join(parts: List[str], pair: Merge) -> List[str]:
    """``parts`` with every occurrence of ``pair`` joined into one symbol, left to right."""
    joined: List[str] = []
    i = 0
    while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
            joined.append(parts[i] + parts[i + 1])
            i += 2
        else:
            joined.append(parts[i])
            i += 1
    return joined


# --- the tokenizer ------------------------------------------------------------------------


class ByteLevelBPETokenizer:
    """Text to token ids with byte-level BPE, special tokens and a chat template.

    Build it from a GGUF file with :meth:`from_gguf`. Radford et al. (2019); chapter 15.

    Args:
        tokens: the vocabulary, spelled in :func:`bytes_to_unicode`'s alphabet; a
            token's id is its position.
        merges: the merge list, pairs of tokens, earliest first; each pair and its
            concatenation must be tokens.
        special_tokens: tokens matched whole in the text before anything else
            (``<|im_start|>``...); :meth:`decode` can skip them.
        bos_token, eos_token, pad_token: which special tokens start and end a sequence
            and pad a batch (SmolLM2: ``<|im_start|>``, ``<|im_end|>``, ``<|im_end|>``);
            their ids are :attr:`bos_id`, :attr:`eos_id`, :attr:`pad_id`.
        chat_template: a Jinja template that writes a conversation as one string
            (:meth:`apply_chat_template`).
        split_digits: cut every numeral out before GPT-2's split, as SmolLM2's own
            tokenizer does; ``False`` splits as ``transformers`` reads the GGUF file
            (:func:`pre_tokenize`; the module's docstring says where they differ).
    """

    def __init__(
        self,
        tokens: Sequence[str],
        merges: Sequence[Merge],
        special_tokens: Sequence[str] = (),
        bos_token: Optional[str] = None,
        eos_token: Optional[str] = None,
        pad_token: Optional[str] = None,
        chat_template: Optional[str] = None,
        split_digits: bool = False,
    ) -> None:
        if isinstance(tokens, str) or not isinstance(tokens, Sequence) or not all(isinstance(t, str) for t in tokens):
            raise TypeError(f"tokens must be a sequence of str (got {type(tokens).__name__})")
        self.vocab: Dict[str, int] = {}
        for i, token in enumerate(tokens):
            if token in self.vocab:
                raise ValueError(f"tokens must be distinct (got {token!r} at ids {self.vocab[token]} and {i})")
            self.vocab[token] = i
        self.id_to_token: List[str] = list(tokens)
        for pair in merges:
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(p in self.vocab for p in pair)):
                raise ValueError(f"merges must be pairs of tokens (got {pair!r})")
            if pair[0] + pair[1] not in self.vocab:
                raise ValueError(f"merges must make tokens (got {pair!r}, and {pair[0] + pair[1]!r} is not a token)")
        self.ranks: Dict[Merge, int] = merge_ranks(merges)
        unknown = [t for t in special_tokens if t not in self.vocab]
        if isinstance(special_tokens, str) or unknown:
            raise ValueError(f"special_tokens must be tokens of the vocabulary (got {special_tokens!r})")
        self.special_tokens: Tuple[str, ...] = tuple(special_tokens)
        for name, value in (("bos_token", bos_token), ("eos_token", eos_token), ("pad_token", pad_token)):
            if value is not None and value not in self.special_tokens:
                raise ValueError(f"{name} must be one of the special tokens (got {value!r})")
        if chat_template is not None and not isinstance(chat_template, str):
            raise TypeError(f"chat_template must be a str or None (got {type(chat_template).__name__})")
        self.bos_token, self.eos_token, self.pad_token = bos_token, eos_token, pad_token
        boolean("split_digits", split_digits)
        self.split_digits = split_digits
        self.chat_template = chat_template
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {ch: b for b, ch in self.byte_encoder.items()}
        # Longest first, so that a special token is never cut by a shorter one it contains.
        specials = sorted(self.special_tokens, key=len, reverse=True)
        self._special_re = re.compile("(" + "|".join(map(re.escape, specials)) + ")") if specials else None
        self._cache: Dict[str, List[int]] = {}  # word -> ids: words repeat, merging is slow

    @property
    def bos_id(self) -> Optional[int]:
        """The id of ``bos_token`` (``None`` if there is none)."""
        return None if self.bos_token is None else self.vocab[self.bos_token]

    @property
    def eos_id(self) -> Optional[int]:
        """The id of ``eos_token``: generation stops when the model writes it."""
        return None if self.eos_token is None else self.vocab[self.eos_token]

    @property
    def pad_id(self) -> Optional[int]:
        """The id of ``pad_token``."""
        return None if self.pad_token is None else self.vocab[self.pad_token]

    def __len__(self) -> int:
        return len(self.id_to_token)

    def __repr__(self) -> str:
        return (
            f"ByteLevelBPETokenizer(vocab_size={len(self)}, merges={len(self.ranks)}, "
            f"special_tokens={len(self.special_tokens)}, split_digits={self.split_digits})"
        )

    @classmethod
    def from_gguf(
        cls, source: Union[GGUFReader, str, os.PathLike[str]], split_digits: bool = False
    ) -> "ByteLevelBPETokenizer":
        """The tokenizer stored in a GGUF file's metadata (llama.cpp's format).

        Reads ``tokenizer.ggml.tokens``, ``.merges`` (``"left right"`` strings),
        ``.token_type`` (3 marks a control token: a special token here), the bos, eos
        and padding ids, and ``tokenizer.chat_template``. Only GPT-2's byte-level
        tokenizer is read (``tokenizer.ggml.model`` ``"gpt2"``, pre-tokenizer ``"smollm"``
        or ``"gpt-2"``), and no BOS or EOS is added to an encoding (as the file asks).

        Args:
            source: an open ``gguf.GGUFReader``, or the file's path.
            split_digits: as in the constructor: ``False`` (the default) gives the ids of
                ``transformers``' tokenizer for the file, ``True`` those of SmolLM2's
                own ``tokenizer.json`` (llama.cpp's ``smollm`` split is the same, by
                its source; not tested here).

        Returns:
            the tokenizer.

        Raises:
            ImportError: ``gguf`` is not installed (``pip install "attnlib[pretrained]"``).
        """
        reader = _open_gguf(source)

        def field(key: str, default: Any = None) -> Any:
            if key in reader.fields:
                return _gguf_value(reader.fields[key])
            if default is None:
                raise ValueError(f"source must be a GGUF file with a tokenizer (it has no metadata key {key!r})")
            return default

        model, pre = field("tokenizer.ggml.model"), field("tokenizer.ggml.pre", "gpt-2")
        if model != "gpt2" or pre not in ("gpt-2", "smollm"):
            raise ValueError(
                "source must hold a byte-level BPE tokenizer split by GPT-2's pattern (tokenizer.ggml.model 'gpt2', "
                f"tokenizer.ggml.pre 'gpt-2' or 'smollm'; got {model!r} and {pre!r})"
            )
        if field("tokenizer.ggml.add_bos_token", False) or field("tokenizer.ggml.add_eos_token", False):
            raise ValueError(
                "source must not ask for BOS/EOS to be added to every encoding (add_bos_token/add_eos_token)"
            )
        tokens: List[str] = field("tokenizer.ggml.tokens")
        types: List[int] = field("tokenizer.ggml.token_type")
        if 4 in types:  # user-defined tokens: matched whole but not special; SmolLM2 has none
            raise ValueError("source must not have user-defined tokens (token type 4); they are not supported")
        merges: List[Merge] = [_split_merge(m) for m in field("tokenizer.ggml.merges")]  # "Ġ t" -> ("Ġ", "t")

        def token_of(key: str) -> Optional[str]:
            return tokens[field(key)] if key in reader.fields else None

        return cls(
            tokens,
            merges,
            special_tokens=[t for t, kind in zip(tokens, types) if kind == 3],
            bos_token=token_of("tokenizer.ggml.bos_token_id"),
            eos_token=token_of("tokenizer.ggml.eos_token_id"),
            pad_token=token_of("tokenizer.ggml.padding_token_id"),
            chat_template=field("tokenizer.chat_template", "") or None,
            split_digits=split_digits,
        )

    # --- encoding ---------------------------------------------------------------------------

    def _split_special(self, text: str) -> List[Tuple[str, bool]]:
        """Cut ``text`` at special tokens: ``(piece, is_special)`` in order."""
        if self._special_re is None:
            return [(text, False)]
        pieces = self._special_re.split(text)  # odd positions are the matched special tokens
        return [(piece, i % 2 == 1) for i, piece in enumerate(pieces) if piece]

    def _encode_word(self, word: str) -> List[int]:
        """One pre-token to ids: bytes, byte characters, merges (cached by word)."""
        ids = self._cache.get(word)
        if ids is None:
            symbols = [self.byte_encoder[b] for b in word.encode("utf-8")]
            symbols = [s for s in symbols if s in self.vocab]  # bytes without a token are dropped
            ids = [self.vocab[token] for token in bpe(symbols, self.ranks)]
            if len(self._cache) >= 100_000:
                self._cache.clear()
            self._cache[word] = ids
        return ids

    def encode(self, text: str, split_special_tokens: bool = False) -> List[int]:
        """The token ids of ``text``. Nothing is added (no BOS, no EOS, no padding).

        Args:
            text: any string.
            split_special_tokens: encode special tokens written in the text as plain
                text (``"<|im_end|>"`` as ``<``, ``|``, ``im``...) instead of their ids,
                as ``transformers``' ``split_special_tokens=True`` does.

        Returns:
            the ids.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str (got {type(text).__name__})")
        boolean("split_special_tokens", split_special_tokens)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:  # a lone surrogate, such as "\ud800", has no UTF-8 bytes
            raise ValueError(
                f"text must be valid Unicode (got the lone surrogate {text[err.start]!r} at position {err.start})"
            ) from None
        pieces = [(text, False)] if split_special_tokens else self._split_special(text)
        ids: List[int] = []
        for piece, is_special in pieces:
            if is_special:
                ids.append(self.vocab[piece])
            else:
                for word in pre_tokenize(piece, self.split_digits):
                    ids.extend(self._encode_word(word))
        return ids

    def tokenize(self, text: str) -> List[str]:
        """The tokens of ``text``, as the vocabulary spells them (``"Ġworld"``)."""
        return [self.id_to_token[i] for i in self.encode(text)]

    # --- decoding ---------------------------------------------------------------------------

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> List[str]:
        """The tokens of ``ids``; an id outside the vocabulary is an error (``transformers`` skips it)."""
        tokens = []
        for i in ids:
            if not is_index(i):  # an int, or an int tensor or array element
                raise TypeError(f"ids must be ints (got {type(i).__name__})")
            i = operator.index(i)
            if not 0 <= i < len(self):
                raise ValueError(f"ids must be in [0, {len(self)}) (got {i})")
            tokens.append(self.id_to_token[i])
        return tokens

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Ids back to text: tokens, their bytes, UTF-8 (invalid bytes become U+FFFD).

        Args:
            ids: token ids (a list, or a 1-D integer tensor).
            skip_special_tokens: leave the special tokens out.

        Returns:
            the text.
        """
        boolean("skip_special_tokens", skip_special_tokens)
        tokens = self.convert_ids_to_tokens(ids)
        if skip_special_tokens:
            special = set(self.special_tokens)
            tokens = [t for t in tokens if t not in special]
        return b"".join(self._token_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    def _token_bytes(self, token: str) -> bytes:
        """A token's bytes; one with a character outside the byte alphabet stands for itself."""
        if all(ch in self.byte_decoder for ch in token):
            return bytes(self.byte_decoder[ch] for ch in token)
        return token.encode("utf-8")

    # --- chat -------------------------------------------------------------------------------

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
        """A conversation written as the one string the model was fine-tuned on.

        SmolLM2's template is ChatML: each message becomes
        ``<|im_start|>{role}\\n{content}<|im_end|>\\n``, a default system message comes
        first when there is none, and ``add_generation_prompt`` ends the string with
        ``<|im_start|>assistant\\n`` so that the model writes the answer. Rendered as
        ``transformers``' ``apply_chat_template`` renders it: in Jinja's sandbox, with
        ``trim_blocks`` and ``lstrip_blocks``, the loop controls and ``raise_exception``.

        Args:
            messages: ``{"role": ..., "content": ...}`` dicts, roles ``"system"``,
                ``"user"`` or ``"assistant"``.
            add_generation_prompt: end with the opening of an assistant turn.

        Returns:
            the string; :meth:`encode_chat` gives its ids.
        """
        if self.chat_template is None:
            raise ValueError("apply_chat_template needs a chat_template (this tokenizer has none)")
        if isinstance(messages, (str, Mapping)) or not isinstance(messages, Sequence):
            raise TypeError(f"messages must be a sequence of dicts (got {type(messages).__name__})")
        if len(messages) == 0:  # as transformers
            raise ValueError("messages must hold at least one message (got an empty sequence)")
        for m in messages:
            if not (isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                raise ValueError(f"messages must be dicts with str 'role' and 'content' (got {m!r})")
        boolean("add_generation_prompt", add_generation_prompt)
        return _compile_template(self.chat_template).render(
            messages=[dict(m) for m in messages],
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            pad_token=self.pad_token,
        )

    def encode_chat(self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> List[int]:
        """The ids of :meth:`apply_chat_template`'s string (the model's prompt)."""
        return self.encode(self.apply_chat_template(messages, add_generation_prompt))


# --- helpers ----------------------------------------------------------------------------------


def _open_gguf(source: Union[GGUFReader, str, os.PathLike[str]]) -> "GGUFReader":
    """``source`` if it is a reader, else the GGUF file at that path, opened."""
    try:
        from gguf import GGUFReader
    except ImportError as err:  # pragma: no cover - gguf is in the pretrained extra
        raise ImportError(
            f"ByteLevelBPETokenizer.from_gguf reads GGUF files with the package gguf, which is not installed; "
            f"install attnlib's pretrained extra: `{_INSTALL}`"
        ) from err
    if isinstance(source, GGUFReader):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a gguf.GGUFReader or a path (got {type(source).__name__})")
    if not os.path.isfile(source):
        raise ValueError(f"source must be an existing GGUF file (got {os.fspath(source)!r})")
    try:
        return GGUFReader(source)
    except ValueError as err:  # gguf checks the magic number first
        raise ValueError(f"source must be a GGUF file (got {os.fspath(source)!r}: {err})") from err


def _gguf_value(field: Any) -> Any:
    """A GGUF metadata value as Python: a str, a number, or a list of them.

    ``field.parts`` holds the raw pieces of the entry and ``field.data`` the indices of
    those that are values (a string's bytes, or a number).
    """
    values = [field.parts[i] for i in field.data]
    if field.types[-1].name == "STRING":
        items = [bytes(v).decode("utf-8") for v in values]
    else:
        items = [x for v in values for x in v.tolist()]
    return items if field.types[0].name == "ARRAY" else items[0]


def _split_merge(merge: str) -> Merge:
    """A merge as GGUF files write it, ``"left right"``, as a pair."""
    left, _, right = merge.partition(" ")
    return left, right


@functools.lru_cache(maxsize=8)
def _compile_template(template: str) -> Any:
    """A chat template compiled as ``transformers`` compiles it."""
    try:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as err:  # pragma: no cover - jinja2 comes with transformers
        raise ImportError(
            f"apply_chat_template renders the template with the package jinja2, which is not installed; "
            f"install attnlib's pretrained extra: `{_INSTALL}`"
        ) from err

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)
