"""Errors a user can act on. The CLI prints their message as one line, without a traceback."""


class ArrayGPTError(Exception):
    """Base class for every error that is the user's input, not a bug in arraygpt."""


class CheckpointError(ArrayGPTError):
    """A checkpoint directory or file is missing, unreadable or inconsistent."""


class ModelNotFoundError(ArrayGPTError):
    """A model spec is neither a preset, nor a local directory, nor reachable on the hub."""


class GenerationError(ArrayGPTError, ValueError):
    """Bad generation arguments: empty prompt, too long for the context, bad sampling values."""


class TokenizerError(ArrayGPTError, ValueError):
    """Text the tokenizer refuses, such as a special token in ordinary text."""


class SlowPathWarning(UserWarning):
    """A dtype the backend declares far slower than float32 here: it runs, at the measured cost the warning names."""


class RandomWeightsWarning(UserWarning):
    """A model loaded from a preset: GPT-2's shapes with random weights, so its speed is real and its text is
    noise. Warned once per place in the caller's code (the CLI says it in its own words)."""
