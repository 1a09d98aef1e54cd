"""Tokenizer throughput on ~1 MB of English text, against tiktoken on the same rank file.

    python -m arraygpt.benchmarks.studies.tokenizer_speed [--json benchmarks/results/tokenizer.json]

The text is assembled offline from the docstrings of Python's standard library (English prose with
code mixed in). Ours is timed cold (empty piece cache) and warm; the ids must equal tiktoken's.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import statistics
import time

from arraygpt.engine.errors import ArrayGPTError
from arraygpt.engine.tokenizer import END_OF_TEXT, GPT2_PATTERN, GPT2_RANKS_FILE, Tokenizer

from ..jsonio import write_json_atomic
from ..measure.environment import environment
from ..outputs import check_json_output


def english_corpus(target_bytes: int = 1_000_000) -> str:
    """Docstrings of standard-library modules, classes and functions, in a fixed order."""
    parts, size = [], 0
    skip = ("antigravity", "this", "idlelib", "tkinter", "turtle", "test", "lib2to3", "ensurepip")
    for info in sorted(pkgutil.iter_modules(), key=lambda m: m.name):
        if size >= target_bytes or info.name.startswith("_") or info.name in skip:
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception:
            continue
        if getattr(module, "__file__", "") and "site-packages" in module.__file__:
            continue
        for obj in [module, *vars(module).values()]:
            doc = getattr(obj, "__doc__", None)
            if isinstance(doc, str) and len(doc) > 200:
                parts.append(doc)
                size += len(doc.encode())
    return "\n\n".join(parts)[:target_bytes]


def timed(fn, repeats=5):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if args.json:
        try:  # before any work: an earlier figure file of this study may be replaced, no other file
            check_json_output(args.json, "arraygpt-tokenizer-speed", replace=True)
        except ArrayGPTError as err:
            parser.error(str(err))
    text = english_corpus()
    megabytes = len(text.encode()) / 1e6
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    reference = tiktoken.Encoding(name="gpt2-offline", pat_str=GPT2_PATTERN,
                                  mergeable_ranks=load_tiktoken_bpe(str(GPT2_RANKS_FILE)),
                                  special_tokens={END_OF_TEXT: 50256})
    expected = reference.encode_ordinary(text)
    ours = Tokenizer.gpt2()
    start = time.perf_counter()
    ids = ours.encode_ordinary(text)
    cold = time.perf_counter() - start
    if ids != expected:
        raise SystemExit("ids differ from tiktoken's: not timing a wrong tokenizer")
    rows = {"arraygpt (cold cache)": cold, "arraygpt (warm cache)": timed(lambda: ours.encode_ordinary(text)),
            "tiktoken encode_ordinary": timed(lambda: reference.encode_ordinary(text)),
            "arraygpt decode": timed(lambda: ours.decode(ids)), "tiktoken decode": timed(lambda: reference.decode(ids))}
    print(f"{megabytes:.2f} MB of English, {len(ids):,} tokens (ids equal to tiktoken's)")
    for name, seconds in rows.items():
        print(f"{name:26s} {seconds * 1e3:8.1f} ms  {len(ids) / seconds / 1e6:6.2f} M tokens/s  {megabytes / seconds:6.1f} MB/s")
    if args.json:
        write_json_atomic(args.json, {"kind": "arraygpt-tokenizer-speed", "environment": environment(),
                                      "megabytes": megabytes, "tokens": len(ids),
                                      "seconds": rows})


if __name__ == "__main__":
    main()
