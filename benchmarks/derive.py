"""What a bench result means beside the rest of its run: % of the machine's roofline, ratios to peers.

The ceilings are the machine's, not one library's: on each device (cpu, gpu:0, ...) the best memory
bandwidth any runner's probe measured in the run, and for each product arithmetic (float32,
float32+tf32, bfloat16, ...) the best matmul rate. A library with a slow probe (XLA's bfloat16 matrix x
vector on a CPU reads 1.9 GB/s) then cannot make its own rows look fast. Each ceiling records which
runner set it. A ratio to a peer compares rows of the same workload, numerics and device.

derive(doc) works on files of every schema: upgrade() fills in what schema 1 files (before the
precision, weights and device_key fields) did not record.
"""

from __future__ import annotations

import re

from engine.config import PRESETS, GPTConfig

from .roofline import allreduce_bytes_per_step, decode_floor_tps, prefill_ceiling_tps
from .runners import PEERS
from .scenarios import numerics_label, product_key, where_label, worker_label
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


def result_label(r: dict) -> str:
    """The worker a result came from (how probes and parity are keyed)."""
    return worker_label(r["runner"], r.get("device"), r.get("mesh"), r.get("precision", "float32"), r.get("threads"))


def machine_ceilings(doc: dict) -> dict:
    """device_key -> {"bandwidth": {...}, "matmul": {product key: {...}}}; each {"value", "set_by"}."""
    ceilings: dict = {}
    for label, by_key in doc.get("probes", {}).items():
        for key, p in by_key.items():
            if "bandwidth_bytes_s" not in p:
                continue
            device = ceilings.setdefault(p.get("device_key", "cpu"), {"bandwidth": None, "matmul": {}})
            set_by = f"{label} {p.get('dtype', key)}"
            if device["bandwidth"] is None or p["bandwidth_bytes_s"] > device["bandwidth"]["value"]:
                device["bandwidth"] = {"value": p["bandwidth_bytes_s"], "set_by": set_by}
            best = device["matmul"].get(key)
            if best is None or p["matmul_flops_s"] > best["value"]:
                device["matmul"][key] = {"value": p["matmul_flops_s"], "set_by": set_by}
    return ceilings


def model_config(doc: dict, spec: str) -> GPTConfig | None:
    """The model's shape: recorded in the file (schema 2), or a preset's."""
    fields = doc.get("models", {}).get(spec)
    if fields:
        return GPTConfig(**fields)
    return PRESETS.get(spec)


def _peer_key(r: dict, numerics: str) -> tuple:
    return (r["model"], numerics, r["batch"], r["prompt_len"], r["new_tokens"], r.get("device_key", "cpu"),
            r.get("threads"))


def derive(doc: dict) -> None:
    """Set doc["ceilings"] and every ok result's "derived": decode floor and roofline, prefill ceiling
    and roofline (with the runner that set the ceiling), ratios to each peer, parity."""
    upgrade(doc)
    for r in doc.get("results", []):  # a schema 2 record always has it; a hand-made one may not
        if not isinstance(r.get("numerics"), str):
            r["numerics"] = numerics_label(r["dtype"], r.get("precision") or "float32", r.get("weights"))
    ceilings = doc["ceilings"] = machine_ceilings(doc)
    ok = [r for r in doc.get("results", []) if r.get("status") == "ok"]
    peers = {(r["runner"], *_peer_key(r, r["numerics"])): r["metrics"] for r in ok if r["runner"] in PEERS}
    for r in ok:
        m, derived = r["metrics"], {}
        config = model_config(doc, r["model"])
        device = ceilings.get(r.get("device_key", "cpu"))
        if config is not None and r.get("mesh"):
            # A mesh row: no roofline (the devices of a mesh share one machine's floor only when they are
            # simulated, and then they also share its cores); the traffic its layout implies instead.
            derived["allreduce_bytes_per_step"] = allreduce_bytes_per_step(config, r["dtype"], r["batch"], r["mesh"])
        elif config is not None and device is not None:
            bandwidth = device["bandwidth"]
            if "decode_tps" in m and bandwidth:
                floor = decode_floor_tps(config, r["dtype"], r["batch"], r["prompt_len"], r["new_tokens"],
                                         bandwidth["value"], r.get("weights"))
                derived |= {"decode_floor_tps": floor, "decode_roofline": m["decode_tps"]["median"] / floor,
                            "bandwidth_set_by": bandwidth["set_by"]}
            matmul = device["matmul"].get(product_key(r["dtype"], r.get("precision", "float32"), r.get("weights")))
            if matmul and "prefill_tps" in m:
                ceiling = prefill_ceiling_tps(config, r["batch"], r["prompt_len"], matmul["value"])
                derived |= {"prefill_ceiling_tps": ceiling, "prefill_roofline": m["prefill_tps"]["median"] / ceiling,
                            "matmul_set_by": matmul["set_by"]}
        if r["runner"] not in PEERS:
            # A mixed row (float32 with bfloat16 weights) is compared with the peer in float32 and, as
            # "_vs_PEER_bfloat16", with the peer all in bfloat16.
            # A peer with the same mixed numerics (llama.cpp reads F16/BF16 weights in float32 arithmetic)
            # is compared first.
            weights = r.get("weights")
            compared = [("", r["numerics"]), ("", numerics_label(r["dtype"], r.get("precision", "float32")))]
            if weights:
                compared.append((f"_{weights}", weights))
            for peer in PEERS:
                for suffix, numerics in compared:
                    peer_metrics = peers.get((peer, *_peer_key(r, numerics)))
                    for key in ("decode_tps", "prefill_tps"):
                        name = f"{key}_vs_{peer}{suffix}"
                        if peer_metrics and key in m and key in peer_metrics and name not in derived:
                            derived[name] = m[key]["median"] / peer_metrics[key]["median"]
        parity = doc.get("parity", {}).get(result_label(r), {}).get(f"{r['model']}/{r['numerics']}", {})
        if "relative" in parity:
            derived["parity_relative"] = parity["relative"]
        if "token_agreement" in parity:
            derived["token_agreement"] = parity["token_agreement"]
        r["derived"] = derived
    judge(doc)
