"""The CLI's storage and duplicate commands: `storage set/remove/export/import/list` and
`duplicate`. Each calls one operation (storage_admin.py, duplicate.py) and prints its result
here; removing storage (and `delete`, in cliadmin.py) asks first, saying what is lost."""
from __future__ import annotations

import click

from spacehooks.cliadmin import pass_ctx, print_restarted


@click.group()
def storage():
    """Persistent storage: a Space's /data, kept across restarts, rebuilds, sleep and reboots."""


@storage.command("set")
@click.argument("space")
@click.argument("tier")
@pass_ctx
def storage_set(ctx, space, tier):
    """Give SPACE storage of TIER (see storage.tiers: small, medium, large) or grow it; restarts it if it runs."""
    from spacehooks.run import storage as storage_mod
    from spacehooks.admin import storage as storage_admin
    result = storage_admin.set_tier(ctx.settings, space, tier)
    click.echo(f"{space}: {tier} storage ({storage_mod.describe_mb(result.size_mb)}) mounted at {storage_mod.TARGET}")
    print_restarted(space, result.restarted)


@storage.command("remove")
@click.argument("space")
@click.option("--yes", is_flag=True, help="Do not ask first.")
@pass_ctx
def storage_remove(ctx, space, yes):
    """Delete SPACE's storage and every file in it; a running Space restarts without /data."""
    from spacehooks.admin import storage as storage_admin
    lost = storage_admin.loss_note(ctx.settings, space)
    if lost and not yes:
        click.echo(f"This deletes {lost}.")
        click.confirm("Remove the storage?", abort=True)
    result = storage_admin.remove(ctx.settings, space)
    print_restarted(space, result.restarted)
    click.echo(f"{space}: storage removed")


@storage.command("export")
@click.argument("space")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@pass_ctx
def storage_export(ctx, space, file):
    """Write SPACE's /data as a tar to FILE (a new file; pause the Space first for a consistent copy)."""
    from spacehooks.run import storage as storage_mod
    from spacehooks.admin import storage as storage_admin
    result = storage_admin.export(ctx.settings, space, file)
    click.echo(f"{space}: {storage_mod.TARGET} written to {result.file} ({result.bytes / storage_mod.MB:.1f} MB)")
    if result.changed_while_read:
        click.echo("  note: files changed while they were read (the Space was writing); for a consistent "
                   f"copy pause it first (`spacehooks pause {space}`)")


@storage.command("import")
@click.argument("space")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@pass_ctx
def storage_import(ctx, space, file):
    """Unpack a tar FILE into SPACE's /data (files of the same name replaced); restarts it if it runs."""
    from spacehooks.run import storage as storage_mod
    from spacehooks.admin import storage as storage_admin
    result = storage_admin.import_(ctx.settings, space, file)
    click.echo(f"{space}: {result.file} unpacked into {storage_mod.TARGET}")
    print_restarted(space, result.restarted)


@storage.command("list")
@pass_ctx
def storage_list(ctx):
    """Show each Space's storage: tier, size, used, and what its image takes on the host's disk."""
    from spacehooks.run import storage as storage_mod
    from spacehooks.admin import storage as storage_admin
    rows = storage_admin.listing(ctx.settings)
    if not rows:
        click.echo("no Space has storage (give one with `spacehooks storage set SPACE TIER`)")
        return
    click.echo(f"{'SPACE':30} {'TIER':8} {'SIZE':>8} {'USED':>10} {'ON DISK':>10}")
    for row in rows:
        used = f"{row.used_mb:.1f} MB" if row.used_mb is not None else "unmounted"
        click.echo(f"{row.space_id:30} {row.tier:8} {storage_mod.describe_mb(row.size_mb):>8} "
                   f"{used:>10} {row.allocated_mb:>7.1f} MB")


@click.command()
@click.argument("from_id", metavar="FROM")
@click.argument("to_id", metavar="TO")
@click.option("--private", is_flag=True, help="Record the copy as private before its first push (only its owner's members see it).")
@click.option("--hardware", metavar="FLAVOR", help="Flavor of the copy (default: the original's).")
@click.option("--storage", "storage_tier", metavar="TIER", help="Give the copy storage of TIER (empty: not copied).")
@pass_ctx
def duplicate(ctx, from_id, to_id, private, hardware, storage_tier):
    """Copy Space FROM to a new Space TO: repository with history, variables, README with
    duplicated_from; never the secrets (their names are listed for the new owner to set)."""
    from spacehooks.admin import duplicate as mod
    result = mod.duplicate(ctx.settings, from_id, to_id, private=private, hardware=hardware, storage_tier=storage_tier)
    for line in result.output:
        click.echo(line)
    click.echo(f"{to_id}: copy of {from_id} at {result.repo} (commit {result.commit[:12]} sets duplicated_from)")
    if result.variables:
        click.echo(f"  variables copied: {', '.join(result.variables)}")
    if result.secrets_to_set:
        click.echo("  secrets NOT copied; set them: " + ", ".join(
            f"spacehooks secrets set {to_id} {name}" for name in result.secrets_to_set))
    if private:
        click.echo(f"  {to_id} is private: only its owner's members see it")
    if result.storage:
        click.echo(f"  storage: {result.storage} (empty; the original's files are not copied)")


COMMANDS = (storage, duplicate)
