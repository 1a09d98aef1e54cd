"""One module per command, each with add_parser(subparsers) and run(args) -> exit code."""

from . import generate, info, init, parity, tokenize

COMMANDS = {
    "generate": generate,
    "tokenize": tokenize,
    "init": init,
    "info": info,
    "parity": parity,
}
