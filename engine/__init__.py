"""arraygpt's engine: GPT-2 and the Llama family written once against the Python array API standard.

    from arraygpt.engine import load_model, Tokenizer
    model = load_model("124M")                 # synthetic weights; or a directory, or a hub id
    tok = Tokenizer.gpt2()
    new_ids = model.generate(tok.encode("Alan Turing theorized"), max_new_tokens=20)
"""

from .config import GPTConfig
from .families import PRESETS
from .llama.config import LlamaConfig
from .errors import (ArrayGPTError, CheckpointError, GenerationError, ModelNotFoundError,
                     TokenizerError)
from .model import Model, load_model
from .tokenizer import Tokenizer

__all__ = ["load_model", "Model", "Tokenizer", "GPTConfig", "LlamaConfig", "PRESETS", "ArrayGPTError", "CheckpointError",
           "GenerationError", "ModelNotFoundError", "TokenizerError"]
