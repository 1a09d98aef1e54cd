"""One module per command, each with add_parser(subparsers) and run(args) -> exit code."""

from . import bench, compare, generate, info, init, parity, plot, report, tokenize

COMMANDS = {
    "bench": bench,
    "compare": compare,
    "plot": plot,
    "report": report,
    "generate": generate,
    "tokenize": tokenize,
    "init": init,
    "info": info,
    "parity": parity,
}
