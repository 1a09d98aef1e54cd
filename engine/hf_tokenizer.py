"""Text in and out of a Llama-family checkpoint: its tokenizer.json through Hugging Face's tokenizers
library (the same file and library transformers' fast tokenizer uses, so ids agree with it), behind the
interface of engine/tokenizer.py's GPT-2 tokenizer.

Presets have random weights and no tokenizer of their own: write_preset_tokenizer makes a byte-level BPE
tokenizer.json from GPT-2's vocabulary (shipped with arraygpt), cut to the preset's vocabulary size where
that is smaller, so text in and out works offline. Ids above its vocabulary (a preset's larger table) decode
to nothing.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import tokenizers

from .errors import TokenizerError
from .tokenizer import Tokenizer

TOKENIZER_FILE = "tokenizer.json"


class HFTokenizer:
    def __init__(self, tokenizer):
        self._tok = tokenizer

    @classmethod
    def from_dir(cls, directory) -> "HFTokenizer":
        path = Path(directory) / TOKENIZER_FILE
        if not path.is_file():
            raise TokenizerError(f"{path}: missing (a Llama-family checkpoint brings its tokenizer.json)")
        try:
            return cls(tokenizers.Tokenizer.from_file(str(path)))
        except Exception as err:  # the library's own parse errors: one line naming the file
            raise TokenizerError(f"{path}: not a tokenizer the tokenizers library reads ({str(err)[:120]})") from None

    @property
    def n_vocab(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def eot_id(self) -> int | None:
        return None

    def encode(self, text: str, allowed_special=frozenset()) -> list[int]:
        """Ids as transformers' tokenizer of the same file gives them (its special tokens, such as a leading
        <|begin_of_text|>, included). allowed_special is GPT-2's option: special tokens written in the text are
        always recognized here, as transformers recognizes them."""
        return self._tok.encode(text).ids

    def decode(self, ids) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def decode_bytes(self, ids) -> bytes:
        return self.decode(ids).encode("utf-8")


def tokenizer_of(directory=None):
    """A checkpoint directory's tokenizer: GPT-2's BPE from its vocab.json and merges.txt where it has them
    (HF's GPT-2 directories also hold a tokenizer.json: the same vocabulary), else its tokenizer.json through
    the tokenizers library; GPT-2's own without a directory."""

    if directory is None:
        return Tokenizer.gpt2()
    directory = Path(directory)
    if (directory / "vocab.json").exists() or not (directory / TOKENIZER_FILE).exists():
        return Tokenizer.from_dir(directory)  # or its one line naming the missing vocab.json
    return HFTokenizer.from_dir(directory)


def write_preset_tokenizer(directory, vocab_size: int) -> None:
    """A byte-level BPE tokenizer.json from GPT-2's vocabulary, its first min(vocab_size, 50257) ids."""

    with tempfile.TemporaryDirectory() as tmp:
        Tokenizer.gpt2().save_vocab_files(tmp)
        vocab = json.loads(Path(tmp, "vocab.json").read_text(encoding="utf-8"))
        merges = Path(tmp, "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    keep = {token: i for token, i in vocab.items() if i < vocab_size}
    pairs = [tuple(line.split(" ")) for line in merges if line and "".join(line.split(" ")) in keep]
    model = tokenizers.models.BPE(vocab=keep, merges=pairs)
    tok = tokenizers.Tokenizer(model)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    tok.save(str(Path(directory) / TOKENIZER_FILE))
