"""The Llama family of decoders (Llama 2/3, Qwen2/2.5, SmolLM2, TinyLlama, Mistral without a sliding window):
its config (config.py), its forward pass (forward.py) and its Hugging Face checkpoints (checkpoint.py)."""
