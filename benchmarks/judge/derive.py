"""What a bench result means beside the rest of its run: % of the machine's roofline, ratios to peers.

The ceilings are the machine's, not one library's: on each device (cpu, gpu:0, ...) the best memory
bandwidth any runner's probe measured in the run, and for each product arithmetic (float32,
float32+tf32, bfloat16, ...) the best matmul rate. A library with a slow probe (XLA's bfloat16 matrix x
vector on a CPU reads 1.9 GB/s) then cannot make its own rows look fast. Each ceiling records which
runner set it. A ratio to a peer compares rows of the same workload, numerics and device.

derive(run) takes a records.Run and returns a new one, with the ceilings, each ok result's Derived
figures and the validity judgement; the Run it was given is left as it was. (What schema 1 files did not
record is filled in when a file is read: records.schema.upgrade.)
"""

from __future__ import annotations

import dataclasses

from arraygpt.engine.families import PRESETS, config_from_fields

from ..records import Derived, Result, Run, as_run
from ..records.labels import numerics_label, product_key
from ..runners import PEERS
from .roofline import allreduce_bytes_per_step, decode_floor_tps, prefill_ceiling_tps
from .validity import judge


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


def model_config(run: Run, spec: str):
    """The model's shape (GPTConfig or LlamaConfig): recorded in the file (schema 2), or a preset's."""
    fields = run.models.get(spec)
    if fields:
        return config_from_fields(fields)
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
    if r.runner not in PEERS:
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
    peers = {(r.runner, *_peer_key(r, r.numerics)): r for r in run.ok_results if r.runner in PEERS}
    results = [dataclasses.replace(r, derived=derived_figures(r, run, ceilings, peers)) if r.ok else r
               for r in run.results]
    return judge(dataclasses.replace(run, ceilings=ceilings, results=results))
