"""arraygpt tokenize TEXT: token ids as JSON (GPT-2's, or a checkpoint's own tokenizer)."""

from __future__ import annotations

import json

from .options import read_text_arg


def add_parser(sub):
    p = sub.add_parser("tokenize", help="print the token ids of a text as JSON",
                       description="Print the token ids of TEXT as a JSON list (GPT-2 byte-level BPE, or with "
                                   "--model DIR the checkpoint's own tokenizer).")
    p.add_argument("text", metavar="TEXT", help="text to encode ('-' reads stdin)")
    p.add_argument("--model", default=None, metavar="DIR",
                   help="use this checkpoint directory's tokenizer: its vocab.json/merges.txt (GPT-2), or its "
                        "tokenizer.json (the Llama family, through the tokenizers library) (default: GPT-2's)")
    p.add_argument("--allow-special", action="store_true",
                   help="encode <|endoftext|> as its special id 50256 instead of refusing it")
    p.add_argument("--decode", action="store_true", help="the reverse: TEXT is a JSON list of ids; print its text")


def run(args) -> int:
    from arraygpt.engine.errors import TokenizerError
    from arraygpt.engine.hf_tokenizer import tokenizer_of

    tok = tokenizer_of(args.model)
    text = read_text_arg(args.text)
    if args.decode:
        try:
            ids = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: brackets nested too deeply to parse
            raise TokenizerError("--decode takes a JSON list of token ids, such as [15496, 995]") from None
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise TokenizerError("--decode takes a JSON list of token ids, such as [15496, 995]")
        print(tok.decode(ids))
    else:
        print(json.dumps(tok.encode(text, allowed_special="all" if args.allow_special else ())))
    return 0
