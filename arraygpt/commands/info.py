"""arraygpt info: versions, backends (usable or why not) and devices."""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def add_parser(sub):
    p = sub.add_parser("info", help="versions, backends and devices",
                       description="Show the machine, library versions, and every backend with whether it is "
                                   "usable here (and why not).")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def jax_devices() -> list[dict]:
    """Each platform JAX sees, its device count, and the meshes (--mesh) those devices allow."""
    try:
        import jax
    except ImportError:
        return []
    from arraygpt.backends.mesh import meshes_for
    rows = []
    for platform in dict.fromkeys(d.platform for d in jax.devices()):
        count = len(jax.devices(platform))
        rows.append({"platform": platform, "devices": count, "processes": jax.process_count(),
                     "meshes": [m.label for m in meshes_for(count) if m.size > 1]})
    for other in ("cpu", "gpu", "tpu"):
        if other not in {r["platform"] for r in rows}:
            try:
                count = len(jax.devices(other))
            except RuntimeError:
                continue
            rows.append({"platform": other, "devices": count, "processes": jax.process_count(),
                         "meshes": [m.label for m in meshes_for(count) if m.size > 1]})
    return rows


def run(args) -> int:
    from arraygpt.backends import backend_status
    from arraygpt.benchmarks.measure.environment import kernel_settings, library_versions, machine_info
    from arraygpt.benchmarks.records import settings_line
    from arraygpt.engine.source import cache_dir

    from arraygpt.benchmarks.runners import peer_status

    backends = [{"backend": name, "usable": ok, "detail": detail} for name, ok, detail in backend_status()]
    peers = [{"peer": name, "installed": ok, "detail": detail} for name, ok, detail in peer_status()]
    devices = jax_devices()
    if args.json:
        print(json.dumps({"machine": machine_info(), "kernel_settings": kernel_settings(),
                          "versions": library_versions(), "backends": backends,
                          "peers": peers, "jax_devices": devices, "cache_dir": str(cache_dir())}, indent=2))
        return 0
    console = Console()
    machine = machine_info()
    cpu_id = f" ({machine['cpu_id']})" if machine["cpu_id"] else ""
    console.print(f"[bold]machine[/] {machine['cpu']}{cpu_id}, {machine['cores']} cores, "
                  f"{(machine['memory_bytes'] or 0) / 2**30:.0f} GiB, {machine['os']}, Python {machine['python']}")
    if machine["cpu_features"]:  # what picks among the libraries' kernels (a bench run records it too)
        console.print(f"[bold]cpu features[/] {' '.join(machine['cpu_features'])}")
    if settings := settings_line(kernel_settings()):
        console.print(f"[bold yellow]kernel settings[/] {escape(settings)} "
                      "(recorded with every bench run)")
    for gpu in machine["gpus"]:
        console.print(f"[bold]gpu[/] {gpu['name']} ({gpu['memory']}, driver {gpu['driver']})")
    console.print(f"[bold]cache[/] {cache_dir()}")
    versions = Table(title="libraries", title_justify="left")
    versions.add_column("package")
    versions.add_column("version")
    for name, v in library_versions().items():
        versions.add_row(name, v)
    console.print(versions)
    table = Table(title="backends", title_justify="left")
    table.add_column("backend")
    table.add_column("usable")
    table.add_column("device, or why not")
    for row in backends:
        table.add_row(row["backend"], "[green]yes[/]" if row["usable"] else "[red]no[/]", escape(row["detail"]))
    console.print(table)
    peer_table = Table(title="peers (bench --peer)", title_justify="left")
    for column in ("peer", "installed", "what it is, or what it needs"):
        peer_table.add_column(column)
    for row in peers:
        peer_table.add_row(row["peer"], "[green]yes[/]" if row["installed"] else "[red]no[/]", escape(row["detail"]))
    console.print(peer_table)
    if devices:
        meshes = Table(title="JAX devices and meshes (--mesh)", title_justify="left")
        for column in ("platform", "devices", "meshes"):
            meshes.add_column(column)
        for row in devices:
            meshes.add_row(row["platform"], str(row["devices"]), escape(", ".join(row["meshes"]) or "one device: none"))
        console.print(meshes)
        console.print("[dim]XLA_FLAGS=--xla_force_host_platform_device_count=8 makes 8 simulated CPU devices[/]")
    return 0
