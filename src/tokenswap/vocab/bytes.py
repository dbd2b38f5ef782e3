"""Canonical bytes: every token of a Hugging Face fast tokenizer as the exact bytes it emits.

Vocabularies of different tokenizers can only be compared once their tokens are written in
one alphabet. :class:`ByteVocab` maps every token id to the bytes that token contributes to
decoded text, and keeps special tokens (which contribute no text) in a separate map by
content and by role. Three families are understood, detected from the tokenizer's own JSON
(model type, normalizer, pre-tokenizer, decoder), never from a model name:

- ``BYTE_LEVEL`` (GPT-2, SmolLM2, Llama-3, Qwen): every character of a token stands for one
  byte through GPT-2's ``bytes_to_unicode`` table, so ``'Ġthe'`` emits ``b' the'`` and a token
  may be a partial UTF-8 sequence (``'ä¸'`` emits ``b'\\xe4\\xb8'``).
- ``SENTENCEPIECE`` (Llama-2, Gemma, T5): ``'▁'`` is a space, ``'<0xNN>'`` is the raw byte NN
  (byte fallback), every other character is UTF-8. When the encoder prepends ``'▁'`` to the
  text (Metaspace ``prepend_scheme`` first/always, or a ``Prepend('▁')`` normalizer),
  :attr:`ByteVocab.strip_leading_space` says the first token's space is dropped on decoding.
- ``WORDPIECE`` (BERT): ``'##x'`` emits ``b'x'``, a word-initial ``'x'`` emits ``b' x'`` and the
  first token's space is dropped. This is the WordPiece decoder with ``cleanup=False``, except
  that a leading ``'##x'`` emits ``b'x'`` where the decoder keeps ``'##x'``;
  BERT's default ``cleanup=True`` also removes the space before punctuation and around
  apostrophes (``"a , b"`` -> ``"a, b"``), a text-level rewrite no per-token map can express,
  and BERT's pre-tokenizer splits punctuation off words, so WordPiece round trips are exact
  only for single-space-separated words without punctuation.

Added tokens that are not special emit their content as UTF-8; a ``normalized`` one under
SentencePiece also has ``'▁'`` read as a space, and under WordPiece the decoder's ``##`` and
word-initial-space rule applies to every added token, as the decoder does. Byte-level added
tokens emit their content as UTF-8 - the text they replace in the input - even though the
``tokenizers`` ByteLevel decoder maps a content made only of table characters through the
byte table (it decodes an added ``'ü'`` to the invalid byte ``b'\\xfc'``).

Out of scope: ``Unigram``/``BPE`` models without ``'▁'`` or ``ByteLevel`` (e.g. ``</w>``
suffix BPE), ``WordLevel`` models, and normalizers that rewrite text (lowercasing, NFKC):
:attr:`ByteVocab.token_bytes` is what a token emits, not the input text it came from.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenswap.errors import TokenswapError

ROLES = ("bos", "eos", "pad", "unk", "cls", "sep", "mask")
_SPACE_MARK = "▁"  # U+2581, SentencePiece's space
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


class TokenizerFamily(str, enum.Enum):
    """How a tokenizer writes bytes into token strings."""

    BYTE_LEVEL = "byte_level"
    SENTENCEPIECE = "sentencepiece"
    WORDPIECE = "wordpiece"


class FrozenMap(Mapping):
    """A read-only, hashable, picklable dict (the ``Mapping`` fields of :class:`ByteVocab`)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping | None = None) -> None:
        self._data = dict(data or {})

    def __getstate__(self) -> dict:
        return self._data

    def __setstate__(self, state: dict) -> None:
        self._data = state

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self) -> Iterator:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters.

    Printable Latin-1 bytes map to themselves; the other 68 (controls, space, 0x7F-0xA0, 0xAD)
    map to ``chr(256 + k)`` in byte order.

    >>> table = bytes_to_unicode()
    >>> table[ord("a")], table[ord(" ")], table[ord("\\n")]
    ('a', 'Ġ', 'Ċ')
    """
    keep = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)}
    table: dict[int, str] = {}
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_UNICODE_TO_BYTE = {char: b for b, char in bytes_to_unicode().items()}


def byte_level_bytes(token: str) -> bytes:
    """Bytes of a byte-level BPE token string, as the ``tokenizers`` ByteLevel decoder gives them.

    A token with a character outside the table (only possible for added tokens) is kept as
    UTF-8, like the decoder does.

    >>> byte_level_bytes("Ġthe"), byte_level_bytes("ä¸")
    (b' the', b'\\xe4\\xb8')
    """
    try:
        return bytes(_UNICODE_TO_BYTE[c] for c in token)
    except KeyError:
        return token.encode("utf-8")


@dataclass(frozen=True)
class ByteVocab:
    """Every token id of a tokenizer mapped to the exact bytes it emits.

    Built with :meth:`from_tokenizer`. ``token_bytes[i]`` is ``None`` exactly for special
    tokens (including the unknown-token placeholder); they are listed in ``special_ids``
    (content -> id) and, where the tokenizer names them, in ``roles`` (``"bos"`` -> id). A role
    may point at an ordinary token (some tokenizers pad with a text token); it then keeps its
    bytes. SentencePiece ``'<0xNN>'`` byte-fallback tokens are never special - they emit one
    byte - even when the tokenizer registered them as special added tokens.
    """

    family: TokenizerFamily
    token_bytes: tuple[bytes | None, ...]
    special_ids: Mapping[str, int]
    roles: Mapping[str, int]
    strip_leading_space: bool
    byte_fallback_ids: Mapping[int, int]

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> ByteVocab:
        """Read a transformers fast tokenizer (``PreTrainedTokenizerFast``/``TokenizersBackend``)
        or a raw ``tokenizers.Tokenizer``."""
        backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
        if not hasattr(backend, "to_str"):
            raise TokenswapError(
                f"cannot read a {type(tokenizer).__name__}: tokenswap needs a fast (Rust-backed)"
                " Hugging Face tokenizer; load it with use_fast=True or from tokenizer.json"
            )
        spec = json.loads(backend.to_str())
        model = spec.get("model") or {}
        family = _detect_family(spec)

        vocab = backend.get_vocab(with_added_tokens=True)
        size = max(vocab.values(), default=-1) + 1
        tokens: list[str | None] = [None] * size
        for token, tid in vocab.items():
            tokens[tid] = token
        added = {int(tid): tok for tid, tok in backend.get_added_tokens_decoder().items()}

        byte_fallback = family is TokenizerFamily.SENTENCEPIECE and (
            bool(model.get("byte_fallback"))
            or any(c.get("type") == "ByteFallback" for c in _components(spec.get("decoder")))
        )
        fallback: dict[int, int] = {}
        if byte_fallback:
            for tid, token in enumerate(tokens):
                match = _BYTE_TOKEN.fullmatch(token or "")
                if match:
                    fallback.setdefault(int(match.group(1), 16), tid)
        fallback_ids = set(fallback.values())

        special = {tid for tid, tok in added.items() if tok.special and tid not in fallback_ids}
        unk = _model_unk_id(model, vocab)
        if unk is not None:
            special.add(unk)
        roles = _roles(tokenizer, spec, vocab, size)
        if unk is not None:
            roles.setdefault("unk", unk)
        # transformers may mark extra tokens special without the backend flag (added tokens only:
        # an ordinary vocabulary token named e.g. as pad keeps emitting its text)
        for tid in getattr(tokenizer, "all_special_ids", None) or ():
            if tid in added and tid not in fallback_ids:
                special.add(int(tid))

        prefix = model.get("continuing_subword_prefix") or "##"
        token_bytes: list[bytes | None] = []
        for tid, token in enumerate(tokens):
            if token is None or tid in special:
                token_bytes.append(None)
            elif tid in fallback_ids:
                token_bytes.append(bytes([int(token[3:5], 16)]))
            elif tid in added:
                token_bytes.append(_added_bytes(token, added[tid].normalized, family, prefix))
            else:
                token_bytes.append(_model_bytes(token, family, prefix))

        return cls(
            family=family,
            token_bytes=tuple(token_bytes),
            special_ids=FrozenMap({tokens[i]: i for i in sorted(special)}),
            roles=FrozenMap(roles),
            strip_leading_space=family is TokenizerFamily.WORDPIECE or _prepends_space(spec),
            byte_fallback_ids=FrozenMap(dict(sorted(fallback.items()))),
        )

    def __len__(self) -> int:
        return len(self.token_bytes)

    def exact_ids(self) -> dict[bytes, int]:
        """``bytes -> id`` for every non-special token.

        When several tokens emit the same bytes, an ordinary token wins over a ``'<0xNN>'``
        byte-fallback token, then the lower id wins.
        """
        fallback = set(self.byte_fallback_ids.values())
        out: dict[bytes, int] = {}
        for tid, data in enumerate(self.token_bytes):
            if data is None:
                continue
            held = out.get(data)
            if held is None or (held in fallback and tid not in fallback):
                out[data] = tid
        return out

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """The bytes ``ids`` decode to: token bytes concatenated, special tokens skipped.

        With :attr:`strip_leading_space`, one leading space of the first emitted token is
        dropped, as the decoder does (``skip_special_tokens=True`` semantics).
        """
        size = len(self.token_bytes)
        parts: list[bytes] = []
        for i in ids:
            tid = int(i)
            if not 0 <= tid < size:
                raise IndexError(f"token id {tid} outside the vocabulary of {size}")
            data = self.token_bytes[tid]
            if data is None:
                continue
            if not parts and self.strip_leading_space and data.startswith(b" "):
                data = data[1:]
            parts.append(data)
        return b"".join(parts)

    def missing_bytes(self) -> list[int]:
        """Byte values 0..255 that no single non-special token emits exactly."""
        present = {data[0] for data in self.token_bytes if data is not None and len(data) == 1}
        return [b for b in range(256) if b not in present]


def _components(node: Any) -> Iterator[dict]:
    """Every component dict of a normalizer/pre-tokenizer/decoder tree (Sequences flattened)."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            if isinstance(value, list):
                for item in value:
                    yield from _components(item)
    elif isinstance(node, list):
        for item in node:
            yield from _components(item)


def _detect_family(spec: dict) -> TokenizerFamily:
    model_type = (spec.get("model") or {}).get("type")
    normalizer = list(_components(spec.get("normalizer")))
    pre = list(_components(spec.get("pre_tokenizer")))
    decoder = list(_components(spec.get("decoder")))
    types = {c.get("type") for c in pre + decoder}
    byte_level = "ByteLevel" in types
    space_mark = "Metaspace" in types or any(
        c.get("type") == "Replace" and _SPACE_MARK in (c.get("content"), _pattern(c))
        for c in normalizer + decoder
    )
    if model_type == "WordPiece" and not byte_level:
        return TokenizerFamily.WORDPIECE
    if model_type in ("BPE", "Unigram") and byte_level:
        return TokenizerFamily.BYTE_LEVEL
    if model_type in ("BPE", "Unigram") and space_mark:
        return TokenizerFamily.SENTENCEPIECE
    raise TokenswapError(
        f"unsupported tokenizer layout (model {model_type}, pre-tokenizer {_names(pre)}, decoder"
        f" {_names(decoder)}): tokenswap reads byte-level BPE, SentencePiece ('▁') and WordPiece"
        " ('##') tokenizers"
    )


def _names(components: list[dict]) -> str:
    named = [c.get("type", "?") for c in components if c.get("type") != "Sequence"]
    return "+".join(named) or "none"


def _pattern(component: dict) -> str | None:
    pattern = component.get("pattern")
    return pattern.get("String") if isinstance(pattern, dict) else pattern


def _prepends_space(spec: dict) -> bool:
    """True when encoding prepends '▁' to the text, so decoding drops the first space."""
    for c in _components(spec.get("pre_tokenizer")):
        if c.get("type") == "Metaspace":
            scheme = c.get("prepend_scheme")
            if scheme is None:  # tokenizers < 0.14 wrote add_prefix_space instead
                scheme = "always" if c.get("add_prefix_space", True) else "never"
            if scheme in ("first", "always"):
                return True
    return any(c.get("type") == "Prepend" and c.get("prepend") == _SPACE_MARK
               for c in _components(spec.get("normalizer")))


def _model_unk_id(model: dict, vocab: Mapping[str, int]) -> int | None:
    if model.get("type") == "Unigram":
        unk = model.get("unk_id")
        return int(unk) if unk is not None else None
    unk = model.get("unk_token")
    return vocab.get(unk) if unk else None


def _roles(tokenizer: Any, spec: dict, vocab: Mapping[str, int], size: int) -> dict[str, int]:
    """Role -> id from the transformers wrapper, else from a BERT/RoBERTa post-processor."""
    roles: dict[str, int] = {}
    for role in ROLES:
        tid = getattr(tokenizer, f"{role}_token_id", None)
        if isinstance(tid, int) and 0 <= tid < size:
            roles[role] = tid
    for c in _components(spec.get("post_processor")):
        if c.get("type") in ("BertProcessing", "RobertaProcessing"):
            for role in ("cls", "sep"):
                token = c.get(role)
                if isinstance(token, list) and token[0] in vocab:
                    roles.setdefault(role, vocab[token[0]])
    return roles


def _model_bytes(token: str, family: TokenizerFamily, prefix: str) -> bytes:
    if family is TokenizerFamily.BYTE_LEVEL:
        return byte_level_bytes(token)
    if family is TokenizerFamily.SENTENCEPIECE:
        return token.replace(_SPACE_MARK, " ").encode("utf-8")
    if token.startswith(prefix):
        return token[len(prefix):].encode("utf-8")
    return b" " + token.encode("utf-8")


def _added_bytes(token: str, normalized: bool, family: TokenizerFamily, prefix: str) -> bytes:
    if family is TokenizerFamily.WORDPIECE:
        return _model_bytes(token, family, prefix)
    if family is TokenizerFamily.SENTENCEPIECE and normalized:
        return token.replace(_SPACE_MARK, " ").encode("utf-8")
    return token.encode("utf-8")


__all__ = ["ROLES", "ByteVocab", "FrozenMap", "TokenizerFamily", "byte_level_bytes",
           "bytes_to_unicode"]
