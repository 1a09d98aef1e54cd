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


def run(args) -> int:
    from backends import backend_status
    from benchmarks.environment import library_versions, machine_info
    from engine.source import cache_dir

    backends = [{"backend": name, "usable": ok, "detail": detail} for name, ok, detail in backend_status()]
    if args.json:
        print(json.dumps({"machine": machine_info(), "versions": library_versions(), "backends": backends,
                          "cache_dir": str(cache_dir())}, indent=2))
        return 0
    console = Console()
    machine = machine_info()
    console.print(f"[bold]machine[/] {machine['cpu']}, {machine['cores']} cores, "
                  f"{(machine['memory_bytes'] or 0) / 2**30:.0f} GiB, {machine['os']}, Python {machine['python']}")
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
    return 0
