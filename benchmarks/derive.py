"""What a bench result means beside the rest of its run: % of the machine's roofline, ratios to peers.

The ceilings are the machine's, not one library's: on each device (cpu, gpu:0, ...) the best memory
bandwidth any runner's probe measured in the run, and for each product arithmetic (float32,
float32+tf32, bfloat16, ...) the best matmul rate. A library with a slow probe (XLA's bfloat16 matrix x
vector on a CPU reads 1.9 GB/s) then cannot make its own rows look fast. Each ceiling records which
runner set it. A ratio to a peer compares rows of the same workload, numerics and device.

derive(run) takes a records.Run and returns a new one, with the ceilings, each ok result's Derived
figures and the validity judgement; the Run it was given is left as it was. upgrade() fills in what
schema 1 files (before the precision, weights and device_key fields) did not record: records.Run.from_json
calls it when a file is read, and nothing else does.
"""

from __future__ import annotations

import dataclasses
import re

from engine.config import PRESETS, GPTConfig

from .roofline import allreduce_bytes_per_step, decode_floor_tps, prefill_ceiling_tps
from .records import Derived, Result, Run, as_run
from .runners import PEERS
from .scenarios import numerics_label, product_key, where_label
from .validity import judge

SCHEMA = 2


def _ran_tf32_by_default(runner: str) -> bool:
    """Before schema 2 the JAX adapters ran float32 at JAX's default matmul precision (TF32-like on GPUs)."""
    from backends import BACKENDS
    return runner in BACKENDS and BACKENDS[runner].library == "jax"


def device_key_of(device_name: str | None) -> str:
    """'gpu:0 (NVIDIA H100)', 'cuda:0 (...)', 'cpu:0', 'cpu' -> 'gpu:0' or 'cpu' (schema 1 probes)."""
    match = re.match(r"(gpu|cuda|tpu):?(\d*)", (device_name or "").strip())
    if not match:
        return "cpu"
    kind = "gpu" if match.group(1) == "cuda" else match.group(1)
    return f"{kind}:{match.group(2) or 0}"


def upgrade(doc: dict) -> dict:
    """Fill in a schema 1 file in place: each result's precision, weights, numerics and device_key, and
    probes and parity keyed by numerics. Before schema 2, JAX ran float32 at its default matmul
    precision, which is TF32-like on NVIDIA GPUs: those rows are labelled float32+tf32."""
    if doc.get("schema", 1) >= SCHEMA:
        return doc
    probes, parity = doc.get("probes", {}), doc.get("parity", {})
    label_device = {label: device_key_of(next(iter(by_dtype.values()), {}).get("device"))
                    for label, by_dtype in probes.items()}

    def precision_of(label: str, dtype: str) -> str:
        tf32 = (_ran_tf32_by_default(label.split(":")[0]) and label_device.get(label, "cpu") != "cpu"
                and dtype == "float32")
        return "tf32" if tf32 else "float32"

    for r in doc.get("results", []):
        label = where_label(r["runner"], r.get("device"))
        r.setdefault("device_key", label_device.get(label, "gpu:0" if r.get("device") == "gpu" else "cpu"))
        label_device.setdefault(label, r["device_key"])
        r.setdefault("precision", precision_of(label, r["dtype"]))
        r.setdefault("weights", None)
        r["numerics"] = numerics_label(r["dtype"], r["precision"], r["weights"])
    doc["probes"], doc["parity"] = {}, {}
    for label, by_dtype in probes.items():
        for dtype, p in by_dtype.items():
            precision = precision_of(label, dtype)
            key = product_key(dtype, precision)
            new_label = label + ("+tf32" if precision == "tf32" else "")
            doc["probes"].setdefault(new_label, {})[key] = p | {"key": key, "precision": precision,
                                                                 "device_key": label_device[label]}
    for label, cells in parity.items():
        for key, cell in cells.items():
            model, dtype = key.rsplit("/", 1)
            precision = precision_of(label, dtype)
            new_label = label + ("+tf32" if precision == "tf32" else "")
            doc["parity"].setdefault(new_label, {})[f"{model}/{numerics_label(dtype, precision)}"] = cell
    doc["upgraded_from_schema"] = doc.get("schema", 1)
    doc["schema"] = SCHEMA
    return doc


def machine_ceilings(run: Run) -> dict:
    """device_key -> {"bandwidth": {...}, "matmul": {product key: {...}}}; each {"value", "set_by"}."""
    ceilings: dict = {}
    for label, by_key in run.probes.items():
        for key, p in by_key.items():
            if not p.measured:
                continue
            device = ceilings.setdefault(p.device_key, {"bandwidth": None, "matmul": {}})
            set_by = f"{label} {p.dtype or key}"
            if device["bandwidth"] is None or p.bandwidth_bytes_s > device["bandwidth"]["value"]:
                device["bandwidth"] = {"value": p.bandwidth_bytes_s, "set_by": set_by}
            best = device["matmul"].get(key)
            if best is None or p.matmul_flops_s > best["value"]:
                device["matmul"][key] = {"value": p.matmul_flops_s, "set_by": set_by}
    return ceilings


def model_config(run: Run, spec: str) -> GPTConfig | None:
    """The model's shape: recorded in the file (schema 2), or a preset's."""
    fields = run.models.get(spec)
    if fields:
        return GPTConfig(**fields)
    return PRESETS.get(spec)


def _peer_key(r: Result, numerics: str) -> tuple:
    return (r.model, numerics, r.batch, r.prompt_len, r.new_tokens, r.device_key, r.threads)


def derived_figures(r: Result, run: Run, ceilings: dict, peers: dict) -> Derived:
    """Decode floor and roofline, prefill ceiling and roofline (with the runner that set the ceiling),
    ratios to each peer, parity: for one ok result."""
    m, figures, ratios, against = r.metrics, {}, {}, {}
    config = model_config(run, r.model)
    device = ceilings.get(r.device_key)
    if config is not None and r.mesh:
        # A mesh row: no roofline (the devices of a mesh share one machine's floor only when they are
        # simulated, and then they also share its cores); the traffic its layout implies instead.
        figures["allreduce_bytes_per_step"] = allreduce_bytes_per_step(config, r.dtype, r.batch, r.mesh)
    elif config is not None and device is not None:
        bandwidth = device["bandwidth"]
        if m.decode_tps is not None and bandwidth:
            floor = decode_floor_tps(config, r.dtype, r.batch, r.prompt_len, r.new_tokens, bandwidth["value"], r.weights)
            figures |= {"decode_floor_tps": floor, "decode_roofline": m.decode_tps.median / floor,
                        "bandwidth_set_by": bandwidth["set_by"]}
        matmul = device["matmul"].get(product_key(r.dtype, r.precision, r.weights))
        if matmul and m.prefill_tps is not None:
            ceiling = prefill_ceiling_tps(config, r.batch, r.prompt_len, matmul["value"])
            figures |= {"prefill_ceiling_tps": ceiling, "prefill_roofline": m.prefill_tps.median / ceiling,
                        "matmul_set_by": matmul["set_by"]}
    if not r.is_peer:
        # A mixed row (float32 with bfloat16 weights) is compared with the peer in float32 and, as
        # "_vs_PEER_bfloat16", with the peer all in bfloat16. A peer with the same mixed numerics
        # (llama.cpp reads F16/BF16 weights in float32 arithmetic) is compared first.
        compared = [("", r.numerics), ("", numerics_label(r.dtype, r.precision))]
        if r.weights:
            compared.append((f"_{r.weights}", r.weights))
        for peer in PEERS:
            for suffix, numerics in compared:
                peer_result = peers.get((peer, *_peer_key(r, numerics)))
                for key in ("decode_tps", "prefill_tps"):
                    name = f"{key}_vs_{peer}{suffix}"
                    mine, theirs = m.median(key), peer_result and peer_result.metrics.median(key)
                    if mine is not None and theirs and name not in ratios:
                        ratios[name], against[name] = mine / theirs, peer_result.id
    parity = run.parity.get(r.worker, {}).get(f"{r.model}/{r.numerics}", {})
    return Derived(**figures, parity_relative=parity.get("relative"), token_agreement=parity.get("token_agreement"),
                   ratios=ratios, ratio_peers=against)


def derive(run) -> Run:
    """The run with its ceilings, every ok result's Derived figures and the validity judgement (a new
    Run; a bench file's JSON is read as records.Run first)."""
    run = as_run(run)
    ceilings = machine_ceilings(run)
    peers = {(r.runner, *_peer_key(r, r.numerics)): r for r in run.ok_results if r.is_peer}
    results = [dataclasses.replace(r, derived=derived_figures(r, run, ceilings, peers)) if r.ok else r
               for r in run.results]
    return judge(dataclasses.replace(run, ceilings=ceilings, results=results))
