"""GPT-2's byte-level BPE: the original pre-tokenizer regex and rank-based merges.

Ships GPT-2's vocabulary (assets/gpt2.tiktoken, from the MIT-licensed openai-whisper sdist, checked
by hash) and also reads a checkpoint's vocab.json + merges.txt. Merging uses a heap over a linked
list of parts, O(n log n) per piece, so a 20,000-character word is no slower per byte than a short one.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import heapq
import json
from pathlib import Path

import regex

from .config import END_OF_TEXT_ID
from .errors import TokenizerError
from .files import read_text

# The pattern of OpenAI's encoder.py (and tiktoken's r50k_base).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
END_OF_TEXT = "<|endoftext|>"
GPT2_RANKS_FILE = Path(__file__).parent / "assets" / "gpt2.tiktoken"
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
_PIECE_CACHE_SIZE = 1 << 16
_CACHED_PIECE_BYTES = 64


@functools.lru_cache(maxsize=None)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters, used by vocab.json and merges.txt."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def check_unicode(text: str) -> None:
    """Refuse a str that cannot be UTF-8 (lone surrogates: what Python makes of bytes that were not UTF-8)."""
    if not isinstance(text, str):
        raise TokenizerError(f"expected text (str), got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        char = ord(text[err.start])
        what = (f"byte 0x{char - 0xDC00:02x}" if 0xDC80 <= char <= 0xDCFF else f"lone surrogate U+{char:04X}")
        raise TokenizerError(f"the text is not valid UTF-8 ({what} at character {err.start}); "
                             "pass UTF-8 encoded text") from None


class Tokenizer:
    def __init__(self, encoder: dict[bytes, int], merge_priority: dict[bytes, int],
                 special_tokens: dict[str, int]):
        """encoder: token bytes -> id. merge_priority: merged bytes -> priority (lower merges first)."""
        self._encoder = encoder
        self._priority = merge_priority
        self._decoder = {i: b for b, i in encoder.items()}
        self.special_tokens = dict(special_tokens)
        for text, i in self.special_tokens.items():
            self._decoder[i] = text.encode()
        self._pattern = regex.compile(GPT2_PATTERN)
        self._special_pattern = regex.compile("|".join(regex.escape(t) for t in self.special_tokens)) \
            if self.special_tokens else None
        self._piece_cache: dict[bytes, tuple[int, ...]] = {}

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    @functools.lru_cache(maxsize=1)
    def gpt2(cls) -> "Tokenizer":
        """GPT-2's tokenizer from the vocabulary shipped in the package (verified by sha256)."""
        raw = GPT2_RANKS_FILE.read_bytes()
        if hashlib.sha256(raw).hexdigest() != GPT2_RANKS_SHA256:
            raise TokenizerError(f"{GPT2_RANKS_FILE}: sha256 mismatch; the packaged vocabulary is damaged")
        ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in raw.splitlines())}
        return cls(ranks, ranks, {END_OF_TEXT: END_OF_TEXT_ID})

    @classmethod
    def from_dir(cls, directory) -> "Tokenizer":
        """Read a Hugging Face checkpoint's vocab.json and merges.txt."""
        directory = Path(directory)
        byte_of = {c: b for b, c in bytes_to_unicode().items()}
        try:
            vocab = json.loads(read_text(directory / "vocab.json"))
            merge_lines = read_text(directory / "merges.txt").splitlines()
        except (OSError, ValueError, RecursionError) as err:
            raise TokenizerError(f"{directory}: cannot read vocab.json/merges.txt ({err})") from None
        vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
        if not isinstance(vocab, dict):
            raise TokenizerError(f"{vocab_path}: not a JSON object of token -> id")
        bad = next((t for t, i in vocab.items() if not isinstance(i, int) or isinstance(i, bool) or i < 0), None)
        if bad is not None:
            raise TokenizerError(f"{vocab_path}: token {bad!r} has id {vocab[bad]!r}; ids are integers >= 0")
        special = {t: i for t, i in vocab.items() if t == END_OF_TEXT}
        try:
            encoder = {bytes(byte_of[c] for c in token): i for token, i in vocab.items() if token not in special}
        except KeyError as err:
            raise TokenizerError(f"{vocab_path}: character {err.args[0]!r} is not byte-level BPE") from None
        missing = [b for b in range(256) if bytes([b]) not in encoder]
        if missing:  # byte-level BPE encodes any text only if every single byte is a token
            raise TokenizerError(f"{vocab_path}: {len(missing)} of the 256 single bytes have no token (first: byte "
                                 f"{missing[0]}); not a byte-level BPE vocabulary")
        priority = {}
        for rank, (number, line) in enumerate((n, l) for n, l in enumerate(merge_lines, start=1)
                                              if l and not l.startswith("#version")):
            parts = line.split(" ")
            if len(parts) != 2 or not all(parts):
                raise TokenizerError(f"{merges_path}, line {number}: {line[:60]!r} is not two tokens separated by "
                                     "one space")
            try:
                merged = bytes(byte_of[c] for c in parts[0] + parts[1])
            except KeyError as err:
                raise TokenizerError(f"{merges_path}, line {number}: character {err.args[0]!r} is not byte-level "
                                     "BPE") from None
            if merged not in encoder:
                raise TokenizerError(f"{merges_path}, line {number}: merges into {parts[0] + parts[1]!r}, which "
                                     "vocab.json does not have")
            priority.setdefault(merged, rank)
        return cls(encoder, priority, special)

    def save_vocab_files(self, directory) -> None:
        """Write vocab.json and merges.txt as Hugging Face's GPT-2 tokenizer files have them."""
        as_text = bytes_to_unicode()
        text = lambda token: "".join(as_text[b] for b in token)  # noqa: E731
        vocab = {text(token): i for token, i in sorted(self._encoder.items(), key=lambda kv: kv[1])}
        vocab |= self.special_tokens
        merges = ["#version: 0.2"]
        for token, priority in sorted(self._priority.items(), key=lambda kv: kv[1]):
            if len(token) > 1:
                # The pair a token merges from: its own bytes merged with only the earlier merges.
                left, right = self._merge(token, below=priority)
                merges.append(f"{text(left)} {text(right)}")
        Path(directory, "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        Path(directory, "merges.txt").write_text("\n".join(merges) + "\n", encoding="utf-8")

    # -- encoding ---------------------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        return max(self._decoder) + 1

    @property
    def eot_id(self) -> int:
        return self.special_tokens.get(END_OF_TEXT, END_OF_TEXT_ID)

    def encode(self, text: str, allowed_special: "set[str] | str" = frozenset()) -> list[int]:
        """Token ids of text. A special token in the text is an error unless allowed ('all' or a set)."""
        check_unicode(text)
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        if self._special_pattern is None:
            return self.encode_ordinary(text)
        ids, start = [], 0
        for match in self._special_pattern.finditer(text):
            if match.group() not in allowed:
                raise TokenizerError(f"the text contains the special token {match.group()!r}; to encode it as a "
                                     "special token pass --allow-special on the command line (allowed_special="
                                     "'all' or a set in Python)")
            ids += self.encode_ordinary(text[start:match.start()])
            ids.append(self.special_tokens[match.group()])
            start = match.end()
        return ids + self.encode_ordinary(text[start:])

    def encode_ordinary(self, text: str) -> list[int]:
        """Token ids of text, reading special tokens as plain text."""
        check_unicode(text)
        ids = []
        for piece in self._pattern.findall(text):
            ids.extend(self._encode_piece(piece.encode("utf-8")))
        return ids

    def _encode_piece(self, piece: bytes) -> tuple[int, ...]:
        if piece in self._encoder:
            return (self._encoder[piece],)
        cached = self._piece_cache.get(piece)
        if cached is None:
            cached = tuple(self._encoder[part] for part in self._merge(piece))
            if len(piece) <= _CACHED_PIECE_BYTES:
                if len(self._piece_cache) >= _PIECE_CACHE_SIZE:
                    self._piece_cache.clear()
                self._piece_cache[piece] = cached
        return cached

    def _merge(self, piece: bytes, below: int | None = None) -> list[bytes]:
        """Merge the adjacent pair of lowest priority (leftmost on ties) until none is left.

        Parts form a linked list; a heap holds candidate pairs, and an entry is skipped when either
        side has changed since it was pushed. below: consider only merges of lower priority.
        """
        n = len(piece)
        end = list(range(1, n + 1))             # end[i]: end of the part starting at i
        nxt = list(range(1, n)) + [-1]          # next part's start
        prv = list(range(-1, n - 1))            # previous part's start
        alive = [True] * n
        heap: list[tuple[int, int, int]] = []

        def push(i):
            j = nxt[i]
            if j != -1:
                priority = self._priority.get(piece[i:end[j]])
                if priority is not None and (below is None or priority < below):
                    heapq.heappush(heap, (priority, i, end[j]))

        for i in range(n - 1):
            push(i)
        while heap:
            _, i, pair_end = heapq.heappop(heap)
            j = nxt[i]
            if not alive[i] or j == -1 or end[j] != pair_end:
                continue  # stale: one side merged with something else since
            end[i], alive[j], nxt[i] = end[j], False, nxt[j]
            if nxt[j] != -1:
                prv[nxt[j]] = i
            if prv[i] != -1:
                push(prv[i])
            push(i)
        parts, i = [], 0
        while i != -1:
            parts.append(piece[i:end[i]])
            i = nxt[i]
        return parts

    # -- decoding ---------------------------------------------------------------------------------
    def decode_bytes(self, ids) -> bytes:
        try:
            return b"".join(self._decoder[int(i)] for i in ids)
        except KeyError as err:
            raise TokenizerError(f"token id {err.args[0]} is not in the vocabulary (0..{self.n_vocab - 1})") from None

    def decode(self, ids) -> str:
        """Text of ids; a byte sequence cut inside a UTF-8 character shows as U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")
