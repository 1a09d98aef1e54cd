"""One module per command, each with add_parser(subparsers) and run(args) -> exit code."""

from . import bench, generate, info, init, parity, tokenize

COMMANDS = {
    "bench": bench,
    "generate": generate,
    "tokenize": tokenize,
    "init": init,
    "info": info,
    "parity": parity,
}
