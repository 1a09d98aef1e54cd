"""Timing one scenario: warm-up runs, timed repeats, the device synchronized before each clock read.

Three runners produce the same record: our engine on a backend, Hugging Face transformers (the peer
users would pick instead), and picoGPT's loop (the seed). Each repeat generates exactly new_tokens
tokens (no early stop) from a fixed random prompt and records the time of every token.
"""

from __future__ import annotations

import resource
import threading
import time

import numpy as np

PARITY_PROMPT_LEN = 16


class PeakRSS:
    """Samples this process's resident memory in a thread: the peak during a block of work."""

    def __init__(self, interval=0.005):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()

    @staticmethod
    def current() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak = self.current()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def fixed_prompts(batch: int, prompt_len: int, vocab_size: int, seed: int = 0) -> list[list[int]]:
    return np.random.default_rng(seed).integers(0, vocab_size, size=(batch, prompt_len)).tolist()


def summarize_run(token_times: list[float], start: float, batch: int, prompt_len: int,
                  decoded_in_one_call: bool = False) -> dict:
    """One repeat: token_times[i] is the clock when token i of every row was on the host.

    decoded_in_one_call: tokens after the first arrived together (jax-loop), so each step is
    credited the mean step time; per-token latency percentiles then describe that mean only."""
    ttft = token_times[0] - start
    steps = np.diff(token_times)
    if decoded_in_one_call and len(steps):
        steps = np.full(len(steps), (token_times[-1] - token_times[0]) / len(steps))
    record = {"ttft_s": ttft, "prefill_tps": batch * prompt_len / ttft, "e2e_s": token_times[-1] - start,
              "step_s": steps.tolist()}
    if len(steps):
        record["decode_tps"] = batch * len(steps) / (token_times[-1] - token_times[0])
    return record


def aggregate(repeats: list[dict]) -> dict:
    """Median and spread over repeats, and per-token latency percentiles over every decode step."""
    out = {}
    for key in ("prefill_tps", "ttft_s", "decode_tps", "e2e_s"):
        values = [r[key] for r in repeats if key in r]
        if values:
            q1, median, q3 = np.percentile(values, [25, 50, 75])
            out[key] = {"median": float(median), "iqr": float(q3 - q1), "min": float(min(values)),
                        "max": float(max(values)), "n": len(values)}
    steps = np.concatenate([r["step_s"] for r in repeats]) if repeats else np.array([])
    if steps.size:
        p50, p90, p99 = np.percentile(steps, [50, 90, 99])
        out["token_latency_s"] = {"p50": float(p50), "p90": float(p90), "p99": float(p99)}
    return out


def run_repeats(one_run, scenario) -> dict:
    """Warm-up runs (the first one kept as first_call_s: it includes compilation), then timed repeats."""
    first = None
    for _ in range(scenario["warmup"]):
        run = one_run()
        first = first if first is not None else run
    with PeakRSS() as rss:
        repeats = [one_run() for _ in range(scenario["repeats"])]
    metrics = aggregate(repeats)
    if first is not None:
        metrics["first_call_s"] = first["e2e_s"]
        metrics["compile_s"] = max(0.0, first["e2e_s"] - metrics["e2e_s"]["median"])
    metrics["rss_peak_bytes"] = rss.peak
    for r in repeats:
        r["step_s"] = [round(s, 7) for s in r["step_s"]]
    return {"metrics": metrics, "repeats": repeats}


# -- our engine ------------------------------------------------------------------------------------

class EngineRunner:
    def __init__(self, backend):
        self.backend, self._models = backend, {}

    def model(self, spec, dtype):
        from engine import load_model
        key = (spec, dtype)
        if key not in self._models:
            self._models.clear()  # one model at a time: memory figures stay per model
            self._models[key] = load_model(spec, backend=self.backend, dtype=dtype)
        return self._models[key]

    def measure(self, scenario) -> dict:
        model = self.model(scenario["model"], scenario["dtype"])
        prompts = fixed_prompts(scenario["batch"], scenario["prompt_len"], model.config.vocab_size)

        def one_run():
            self.backend.synchronize()
            start = time.perf_counter()
            times = [time.perf_counter() for _ in model.stream(prompts, max_new_tokens=scenario["new_tokens"])]
            return summarize_run(times, start, scenario["batch"], scenario["prompt_len"],
                                 decoded_in_one_call=model.decode_loop is not None)

        result = run_repeats(one_run, scenario)
        result["metrics"]["device_bytes"] = self.backend.memory_in_use()
        return result

    def parity_logits(self, spec, dtype, prompt):
        model = self.model(spec, dtype)
        return np.asarray(self.backend.to_host(model.logits(prompt)), dtype=np.float64)


# -- Hugging Face transformers (PyTorch eager) -------------------------------------------------------

class HFRunner:
    """GPT2LMHeadModel on the same checkpoint: a prefill forward, then one forward per token with
    past_key_values, greedy, exactly as its generate() does without the wrapper's bookkeeping."""

    def __init__(self, device=None):
        import torch
        self.torch = torch
        self.device = torch.device("cuda" if device in ("gpu", "cuda") else "cpu")
        torch.set_grad_enabled(False)
        self._models = {}

    def model(self, spec, dtype):
        from transformers import GPT2LMHeadModel

        from engine.source import resolve_model
        key = (spec, dtype)
        if key not in self._models:
            self._models.clear()
            directory = resolve_model(spec).directory
            model = GPT2LMHeadModel.from_pretrained(directory, dtype=getattr(self.torch, dtype))
            self._models[key] = model.to(self.device).eval()
        return self._models[key]

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def measure(self, scenario) -> dict:
        torch = self.torch
        model = self.model(scenario["model"], scenario["dtype"])
        prompts = torch.tensor(fixed_prompts(scenario["batch"], scenario["prompt_len"], model.config.vocab_size),
                               device=self.device)

        def one_run():
            self.sync()
            start = time.perf_counter()
            out = model(prompts, use_cache=True)
            token = out.logits[:, -1, :].argmax(-1).cpu()
            times = [time.perf_counter()]
            for _ in range(scenario["new_tokens"] - 1):
                out = model(token[:, None].to(self.device), past_key_values=out.past_key_values, use_cache=True)
                token = out.logits[:, -1, :].argmax(-1).cpu()
                times.append(time.perf_counter())
            return summarize_run(times, start, scenario["batch"], scenario["prompt_len"])

        return run_repeats(one_run, scenario)

    def parity_logits(self, spec, dtype, prompt):
        model = self.model(spec, dtype)
        return model(self.torch.tensor(prompt, device=self.device)).logits.double().cpu().numpy()


# -- picoGPT (the seed) ------------------------------------------------------------------------------

class PicoGPTRunner:
    def __init__(self):
        self._params = None

    def params(self, spec):
        from engine.checkpoint import load_checkpoint, nest_params
        from engine.source import resolve_model
        if self._params is None or self._params[0] != spec:
            config, tensors = load_checkpoint(resolve_model(spec).directory)
            flat = {name: np.asarray(t.data) for name, t in tensors.items()}
            self._params = (spec, config, nest_params(flat, config.n_layer))
        return self._params[1], self._params[2]

    def measure(self, scenario) -> dict:
        from . import picogpt
        config, params = self.params(scenario["model"])
        prompt = fixed_prompts(1, scenario["prompt_len"], config.vocab_size)[0]

        def one_run():
            inputs, times = list(prompt), []
            start = time.perf_counter()
            for _ in range(scenario["new_tokens"]):  # picoGPT's loop, with a clock read per token
                logits = picogpt.gpt2(inputs, **params, n_head=config.n_head)
                inputs.append(int(np.argmax(logits[-1])))
                times.append(time.perf_counter())
            return summarize_run(times, start, 1, scenario["prompt_len"])

        return run_repeats(one_run, scenario)

    def parity_logits(self, spec, dtype, prompt):
        from . import picogpt
        config, params = self.params(spec)
        return np.stack([picogpt.gpt2(list(row), **params, n_head=config.n_head) for row in prompt]).astype(np.float64)

