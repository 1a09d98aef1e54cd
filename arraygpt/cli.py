"""`arraygpt COMMAND ...`: every user error ends in one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import warnings

from arraygpt.backends import BACKENDS, BackendError, BackendUnavailable, usable_backends
from arraygpt.engine.errors import ArrayGPTError, RandomWeightsWarning

from . import __version__
from .commands import COMMANDS

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so every cleanup that Ctrl-C runs runs too (a
    bench ends its worker, keeps its finished rows and removes its temporary files)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum, _frame):
    _hold_further_signals()
    raise Terminated(signum)


def _raise_interrupted(signum, frame):
    _hold_further_signals()
    signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt


_STOPPING = []  # set once a stop signal arrived: the process is ending, its handlers stay as they are


def _hold_further_signals() -> None:
    """After the first stop signal the bench is cleaning up (killing its worker, keeping its rows, removing its
    temporary directory): a second Ctrl-C, SIGTERM or SIGHUP must not cut that short, nor kill the process
    between its last line and its exit code, so they are ignored from then on."""
    _STOPPING.append(True)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(signum, signal.SIG_IGN)
        except (ValueError, OSError):
            pass


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"arraygpt: warning: {message}", file=sys.stderr)


def _line(err) -> str:
    """A message as one line that any stderr can print, whatever a file or an argument put in it (newlines,
    the lone surrogates Python makes of argv bytes that are not UTF-8)."""
    text = " ".join(str(err).split("\n")).replace("\r", " ")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _os_error_line(err: OSError) -> str:
    """An OS error a user can act on (no space, no permission, not a directory), as one line."""
    where = f"{err.filename}: " if err.filename else ""
    hint = {errno.ENOSPC: "; free some space", errno.EDQUOT: "; free some space",
            errno.EACCES: "; check the permissions", errno.EROFS: "; the file system is read-only",
            errno.EFBIG: "; a file size limit (ulimit -f) is below what it needs"}.get(err.errno, "")
    return f"{where}{err.strerror or err}{hint}"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (with where to look) instead of usage + error."""

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="arraygpt",
        description="GPT-2 and Llama-family inference written once against the Python array API standard, "
                    "run and benchmarked on NumPy, JAX, CuPy and PyTorch.",
        epilog="Run 'arraygpt COMMAND --help' for a command's options. Models: a preset (GPT-2: tiny, 124M, "
               "355M, 774M, 1558M; the Llama family: tiny-llama, smollm2-135m, smollm2-360m, qwen2.5-0.5b, "
               "llama3.2-1b, tinyllama-1.1b: synthetic random weights at the real shapes, created once and "
               "cached), a local Hugging Face directory (gpt2, llama, qwen2, mistral), or a hub id such as gpt2 "
               "or Qwen/Qwen2.5-0.5B (needs the 'hub' extra and network).",
    )
    parser.add_argument("--version", action="version", version=f"arraygpt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name, module in COMMANDS.items():
        module.add_parser(sub)
    return parser


def _never_fail_to_encode() -> None:
    """On a terminal or pipe whose encoding cannot show a character (PYTHONIOENCODING=ascii, LC_ALL=C), write it
    as an escape (\\xe9) instead of failing: text and tables still come out whole."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a stream that cannot change now: leave it as it is
                pass


def main(argv: list[str] | None = None) -> int:
    """Run one command; the signal handlers and warning format it sets are put back when it returns (the
    handlers not after a stop signal: the process is ending, and a second signal must not kill it first)."""
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        try:
            if signum == signal.SIGINT:  # Ctrl-C stays KeyboardInterrupt (and ignored where the shell ignores it)
                previous[signum] = signal.getsignal(signum)
                if previous[signum] is signal.default_int_handler:
                    signal.signal(signum, _raise_interrupted)
            else:
                previous[signum] = signal.signal(signum, _raise_terminated)
        except (ValueError, OSError):  # not the main thread (arraygpt called from a library's thread)
            pass
    _never_fail_to_encode()
    try:
        with warnings.catch_warnings():  # the filters and the format are the caller's again afterwards
            warnings.showwarning = _one_line_warning
            # The commands say so in their own words (a note before the text); the bench's rows are speed only.
            warnings.filterwarnings("ignore", category=RandomWeightsWarning)
            return _main(argv)
    finally:
        for signum, handler in previous.items():
            if handler is not None and not _STOPPING:
                signal.signal(signum, handler)


def _device_out_of_memory(err: Exception) -> bool:
    """An array library's own out-of-memory error (XLA's RESOURCE_EXHAUSTED, torch's OutOfMemoryError),
    told by its name and text: the CLI imports no array library."""
    text = str(err)
    return (text.startswith("RESOURCE_EXHAUSTED") or type(err).__name__ == "OutOfMemoryError"
            or text.startswith("DefaultCPUAllocator: can't allocate memory"))


def _main(argv):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a bad argument already reported in one line
        return exit_.code
    except (ArrayGPTError, BackendError) as err:  # an option's own check (a list of integers, a mesh)
        print(f"arraygpt: error: {_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    if args.command is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return COMMANDS[args.command].run(args) or 0
    except BackendUnavailable as err:
        usable = ", ".join(usable_backends(tuple(BACKENDS))) or "none"
        print(f"arraygpt {args.command}: error: {_line(err)} (usable here: {usable})", file=sys.stderr)
        return EXIT_USER_ERROR
    except (ArrayGPTError, BackendError) as err:
        print(f"arraygpt {args.command}: error: {_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Terminated as err:
        print(f"arraygpt {args.command}: terminated by {err}", file=sys.stderr)
        return 128 + err.signum
    except KeyboardInterrupt:
        print(f"arraygpt {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `arraygpt ... | head` closed the pipe: not an error worth a traceback
        sys.stderr.close()
        return 0
    except MemoryError:
        print(f"arraygpt {args.command}: error: out of memory (try a smaller model, batch or context)",
              file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as err:  # no space, no permission, not a directory: the user's machine, not a bug
        print(f"arraygpt {args.command}: error: {_line(_os_error_line(err))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as err:
        if not _device_out_of_memory(err):
            raise
        print(f"arraygpt {args.command}: error: out of memory in {type(err).__name__} ({_line(err)[:120]}); try a "
              "smaller model, batch or context", file=sys.stderr)
        return EXIT_USER_ERROR
