"""The CLI's host commands: gc, doctor, the state store, per-Space limits, hardware flavors
and GPUs. Each calls one operation and prints its result here, in one place per command."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from spacehooks.cliadmin import pass_ctx, print_restarted
from spacehooks.errors import SpaceError
from spacehooks.results import Check, DoctorReport


@click.command()
@pass_ctx
def gc(ctx):
    """Remove Space images older than the last run.keep_builds builds of each Space."""
    from spacehooks.admin import images
    result = images.gc(ctx.settings)
    for tag, why in result.images:
        click.echo(f"removed {tag}" if why is None else f"kept {tag}: {why}")
    counts = result.counts()
    click.echo(counts[0])
    for path in result.logs:
        click.echo(f"removed {path}")
    click.echo(counts[1])
    for path in result.static:
        click.echo(f"removed {path}")
    click.echo(counts[2])


@click.group()
def limits():
    """Per-Space memory, CPU and process limits (override the hardware flavor)."""


@limits.command("set")
@click.argument("space")
@click.option("--memory-mb", type=click.IntRange(min=16), help="Memory limit in MB (swap included).")
@click.option("--cpus", type=click.FloatRange(min=0.01), help="CPU cores (fractions allowed).")
@click.option("--pids", type=click.IntRange(min=8), help="Most processes the Space may run.")
@click.option("--reset", is_flag=True, help="Drop this Space's overrides first (back to its flavor).")
@pass_ctx
def limits_set(ctx, space, memory_mb, cpus, pids, reset):
    """Set SPACE's limits and restart it if it runs."""
    from spacehooks.admin import limits as mod
    result = mod.set_limits(ctx.settings, space, {"memory_mb": memory_mb, "cpus": cpus, "pids": pids}, reset)
    click.echo(f"{result.space_id}: limits " + (", ".join(f"{k}={v}" for k, v in result.limits.items())
                                                or "from its hardware flavor"))
    print_restarted(result.space_id, result.restarted)


@limits.command("show")
@click.argument("space")
@pass_ctx
def limits_show(ctx, space):
    """Show SPACE's limits and where each comes from."""
    from spacehooks.admin import limits as mod
    for row in mod.show(ctx.settings, space):
        click.echo(f"{row.key:10} {row.value!s:8} ({row.source})")


def _print_check(check: Check) -> None:
    click.echo(f"ok       {check.text}" if check.ok else f"PROBLEM  {check.text}\n  fix: {check.fix}")


def _print_summary(report: DoctorReport) -> None:
    note = f" ({report.note})" if report.note else ""
    click.echo("all checks passed" if not report.problems else f"{report.problems} problem(s) found{note}")


@click.command()
@pass_ctx
def doctor(ctx):
    """Check the configuration, state store, Podman service, runtime, cgroups, ulimits and base
    images; print fixes."""
    from spacehooks.admin import doctor as mod
    try:
        settings = ctx.settings
    except SpaceError as exc:  # a configuration that does not load is the first thing to report
        report = mod.bad_config(exc)
        for check in report.checks:
            _print_check(check)
    else:
        report = mod.doctor(settings, progress=_print_check)  # each check as it is made: some take seconds
    _print_summary(report)
    if report.problems:
        sys.exit(1)


@click.group("state")
def state_group():
    """The state store (SPACEHOOKS_HOME/state.db): check it, rebuild it when it is damaged."""


@state_group.command("check")
@pass_ctx
def state_check(ctx):
    """Run SQLite's quick_check on the store; exit 1 when it is damaged."""
    from spacehooks import state
    state.verify(ctx.settings)
    click.echo(f"{ctx.settings.db_path}: ok (schema version {state.SCHEMA_VERSION})")


@state_group.command("rebuild")
@click.option("--force", is_flag=True, help="Replace a store that is not damaged too (the old one is kept, renamed).")
@pass_ctx
def state_rebuild(ctx, force):
    """Make a new store from the repositories under repo_root and the Space containers' labels.

    Stop serve and worker first. The old files are kept beside as state.db.damaged-<time>.
    Spaces without a running container come back PAUSED; see README "Recovering the state store"."""
    from spacehooks.admin import rebuild
    done = rebuild.rebuild(ctx.settings, click.echo, force=force)
    click.echo(f"state store rebuilt: {len(done)} Space(s); start serve (or worker) again")


@click.group()
def hardware():
    """Hardware flavors: what each gives, and what this host can provide."""


@hardware.command("list")
@pass_ctx
def hardware_list(ctx):
    """Show every flavor with its CPUs, memory, GPUs and availability on this host, then what
    the running Spaces use and what is free (memory, CPUs, disk for storage)."""
    from spacehooks.run import gpu
    from spacehooks.run import capacity
    lines = [("flavor", "cpus", "memory", "gpus", "on this host")]
    for row in gpu.hardware_list(ctx.settings):
        gpus = f"{row.gpus} x {row.gpu_kind}" + (" shared" if row.shared else "") if row.gpus else "-"
        lines.append((row.name, str(row.cpus), f"{row.memory_mb / 1024:g} GB", gpus, row.availability))
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    for line in lines:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) + "  " + line[4])
    click.echo("")
    for line in capacity.room_lines(capacity.room(ctx.settings)):
        click.echo(line)


@hardware.command("set")
@click.argument("space")
@click.argument("flavor")
@pass_ctx
def hardware_set(ctx, space, flavor):
    """Move SPACE (owner/name) to FLAVOR, freeing its old GPUs, and restart it if it runs."""
    from spacehooks.admin import limits
    result = limits.set_hardware(ctx.settings, space, flavor,
                                 on_restart=lambda r: click.echo(f"{r.space_id}: hardware {r.flavor}; restarting"))
    if not result.restarted:
        click.echo(f"{space}: hardware {flavor}; applies when it next starts (now {result.stage})")


@click.group("gpu")
def gpu_group():
    """GPUs through CDI: the specs Podman reads, and who holds which device."""


@gpu_group.command("list")
@pass_ctx
def gpu_list(ctx):
    """List the CDI specs and their devices, with problems that keep Podman from loading them."""
    from spacehooks.run import gpu
    listing = gpu.gpu_list(ctx.settings)
    if not listing.specs:
        click.echo(f"no CDI specs in {', '.join(listing.cdi_dirs)}; Spaces get no GPU")
        click.echo("  NVIDIA GPUs: `spacehooks gpu cdi-generate` writes one")
        return
    for spec in listing.specs:
        status = "loaded by" if spec.loadable else "NOT loaded by"
        click.echo(f"{spec.path}: {spec.kind or '?'} (cdiVersion {spec.version or '?'}), {status} Podman {listing.podman_version}")
        for message, fix in spec.problems:
            click.echo(f"  problem: {message}")
            click.echo(f"  fix: {fix}")
        for device in spec.devices:
            note = "alias of every device" if device.name == "all" else (
                f"in use by {', '.join(device.holders)}" if device.holders else "free")
            click.echo(f"  {spec.kind}={device.name}  {note if spec.loadable else 'unusable'}")


@gpu_group.command("cdi-generate")
@click.option("--dev-root", type=click.Path(file_okay=False), default="/", show_default=True,
              help="Folder whose dev/ holds the nvidia device nodes.")
@click.option("--driver-root", type=click.Path(file_okay=False), default="/", show_default=True,
              help="Folder where the driver's libraries and tools are installed, seen as / in the container.")
@click.option("--output", "-o", default=None,
              help="Spec file to write (default: spacehooks-nvidia.json in the first gpu.cdi_dirs folder); - prints it.")
@click.option("--cdi-version", default=None, help="cdiVersion to write (default: what the local Podman loads, at most 0.5.0).")
@pass_ctx
def gpu_cdi_generate(ctx, dev_root, driver_root, output, cdi_version):
    """Write a CDI spec for the NVIDIA GPUs of this host that the local Podman loads."""
    from spacehooks.run import gpu
    result = gpu.cdi_generate(ctx.settings, Path(dev_root), Path(driver_root), output, cdi_version)
    if result.path is None:
        click.echo(json.dumps(result.spec, indent=2))
        return
    for line in result.ignored:
        click.echo(line)
    click.echo(f"wrote {result.path} (cdiVersion {result.cdi_version}): {', '.join(result.devices)}")
    click.echo(f"  shared device nodes: {', '.join(result.control) or 'none'}; "
               f"{result.driver_files} driver files mounted read-only")


COMMANDS = (gc, limits, doctor, state_group, hardware, gpu_group)
