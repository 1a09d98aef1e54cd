"""arraygpt generate PROMPT ...: continue prompts, streaming tokens as they come."""

from __future__ import annotations

import codecs
import json
import sys
import time

from arraygpt.engine.errors import GenerationError
from arraygpt.engine.prompts import check_seed
from arraygpt.engine.sampling import Sampling

from .options import add_model_options, load_model_with_progress, read_text_arg, seed, stderr, warn_if_synthetic


def add_parser(sub):
    p = sub.add_parser("generate", help="continue one or more prompts",
                       description="Continue one or more prompts with GPT-2. One prompt streams its tokens "
                                   "as they come; several run as one left-padded batch.")
    p.add_argument("prompts", nargs="+", metavar="PROMPT", help="text to continue ('-' reads stdin)")
    p.add_argument("-n", "--max-new-tokens", type=int, default=40, metavar="N", help="tokens to add (default: 40)")
    p.add_argument("--temperature", type=float, default=0.0, metavar="T",
                   help="0 = greedy (default); higher samples more freely")
    p.add_argument("--top-k", type=int, default=None, metavar="K", help="sample from the K likeliest tokens")
    p.add_argument("--top-p", type=float, default=None, metavar="P",
                   help="sample from the smallest set of tokens holding probability P")
    p.add_argument("--seed", type=seed, default=None, help="make sampling reproducible (same on every backend)")
    p.add_argument("--stop-at-eos", action="store_true", help="stop a prompt at <|endoftext|>")
    p.add_argument("--allow-special", action="store_true",
                   help="encode <|endoftext|> in a prompt as its special id instead of refusing it")
    p.add_argument("--json", action="store_true", help="print one JSON object per prompt instead of text")
    add_model_options(p)


def run(args) -> int:
    texts = [read_text_arg(t) for t in args.prompts]
    if any(not t for t in texts):
        raise GenerationError("empty prompt: give some text to continue")
    Sampling(args.temperature, args.top_k, args.top_p)  # bad values fail before a model is loaded
    check_seed(args.seed)
    if args.max_new_tokens < 1:
        raise GenerationError(f"-n/--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    model = load_model_with_progress(args, batch=len(texts))
    tok = model.tokenizer
    prompts = [tok.encode(t, allowed_special="all" if args.allow_special else ()) for t in texts]
    stream = model.stream(prompts, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p, seed=args.seed, stop_at_eos=args.stop_at_eos)
    warn_if_synthetic(model)
    live = len(prompts) == 1 and not args.json
    new = [[] for _ in prompts]
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span tokens
    if live:
        sys.stdout.write(texts[0])
        sys.stdout.flush()
    start = first = time.perf_counter()
    for step_index, step in enumerate(stream):
        if step_index == 0:
            first = time.perf_counter()
        for out, token in zip(new, step):
            if token is not None:
                out.append(token)
        if live and step[0] is not None:
            sys.stdout.write(decoder.decode(tok.decode_bytes([step[0]])))
            sys.stdout.flush()
    elapsed = time.perf_counter() - start
    if live:
        sys.stdout.write(decoder.decode(b"", final=True) + "\n")
    elif args.json:
        for text, ids in zip(texts, new):
            print(json.dumps({"prompt": text, "ids": ids, "text": tok.decode(ids), "random_weights": model.synthetic}))
    else:
        for text, ids in zip(texts, new):
            print(text + tok.decode(ids))
    total = sum(len(ids) for ids in new)
    # decode tokens/s only where tokens were decoded after the first (one new token: no such rate, never "nan")
    decode = (f"; decode {(total - len(new)) / (time.perf_counter() - first):.1f} tokens/s" if total > len(new)
              else "")
    stderr.print(f"[dim]{total} tokens in {elapsed:.2f} s ({total / max(elapsed, 1e-9):.1f} tokens/s{decode}; first "
                 f"token {first - start:.2f} s) on {model.backend.name}"
                 f"{f' over the mesh {model.backend.mesh_label}' if model.backend.mesh_label else ''} "
                 f"{model.dtype_name}{'' if model.weights_dtype == model.dtype_name else ' with ' + model.weights_dtype + ' weights'}[/]")
    return 0
