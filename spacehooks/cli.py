"""Command-line wiring only: each command parses its options and calls one function."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from spacehooks import config as config_mod
from spacehooks.errors import SpaceError, internal_error_message


class Context:
    def __init__(self):
        self._settings = None

    @property
    def settings(self) -> config_mod.Settings:
        if self._settings is None:
            self._settings = config_mod.load()
        return self._settings


pass_ctx = click.make_pass_decorator(Context, ensure=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="spacehooks")
def cli():
    """Self-hosted Hugging Face Spaces: validate on push, build with Podman, serve."""


# --- gate: install, validate ------------------------------------------------------------

@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--layout", type=click.Choice(["auto", "plain", "gitea", "gitlab", "gitolite"]), default="auto",
              show_default=True, help="Where the server looks for hooks.")
@pass_ctx
def install(ctx, paths, layout):
    """Install the spacehooks hooks into bare repositories (or every one found under PATH)."""
    from spacehooks import install as mod
    mod.install_paths(ctx.settings, [Path(p) for p in paths], layout, echo=click.echo)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--layout", type=click.Choice(["auto", "plain", "gitea", "gitlab", "gitolite"]), default="auto",
              show_default=True)
@pass_ctx
def uninstall(ctx, paths, layout):
    """Remove the spacehooks hooks and restore the hooks that were there before."""
    from spacehooks import install as mod
    mod.uninstall_paths(ctx.settings, [Path(p) for p in paths], layout, echo=click.echo)


@cli.command()
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@pass_ctx
def validate(ctx, directory):
    """Run the push checks on a working copy before you push."""
    from spacehooks import gate
    if not gate.validate_directory(ctx.settings, Path(directory)):
        sys.exit(1)


@cli.command("hook", hidden=True)
@click.argument("name", type=click.Choice(["pre-receive", "post-receive"]))
@click.argument("args", nargs=-1)
def hook(name, args):
    """Entry point of the installed git hooks."""
    from spacehooks import hooks
    sys.exit(hooks.run(name, list(args)))


@cli.command("config-doc")
def config_doc():
    """Print every server setting with its default, as a Markdown table."""
    click.echo(config_mod.markdown_table())


@cli.command("schema-doc")
def schema_doc():
    """Print the README metadata keys and their rules, as a Markdown table."""
    from spacehooks import spaceconfig
    click.echo(spaceconfig.markdown_table())


# --- engine: worker, spaces and their admin commands (issue: build and run) ---------------

@cli.command()
@click.option("--show", is_flag=True, help="Print the nftables rules instead of loading them.")
@pass_ctx
def fence(ctx, show):
    """Load the network fence: host firewall rules (nftables) that keep Spaces and their
    build steps from the host, from each other and from `network.egress_deny`.

    `serve` and `worker` load it at start and whenever it goes missing; run this after
    changing network.* settings, or to see the rules."""
    from spacehooks import netfence
    if show:
        click.echo(netfence.ruleset(ctx.settings), nl=False)
        return
    netfence.apply(ctx.settings)
    click.echo(f"network fence loaded: nftables table inet {netfence.table(ctx.settings)}")


@cli.command()
@pass_ctx
def worker(ctx):
    """Run queued builds and deploy them (blocks; `serve` runs it too)."""
    from spacehooks import images, state, worker as mod
    state.verify(ctx.settings)  # a damaged store stops here, with the way out
    mod.main_loop(ctx.settings, gc=images.gc)


@cli.command()
@pass_ctx
def spaces(ctx):
    """List Spaces with their stage, commit and port."""
    from spacehooks import admin
    admin.spaces(ctx.settings, click.echo)


@cli.command()
@click.argument("space")
@pass_ctx
def status(ctx, space):
    """Show a Space's stage, container, error and recent builds."""
    from spacehooks import admin
    admin.status(ctx.settings, space, click.echo)


@cli.command()
@click.argument("space")
@click.option("--build", "build_log", is_flag=True, help="Show the latest build log instead of the app's log.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines.")
@pass_ctx
def logs(ctx, space, build_log, follow):
    """Print a Space's run log (or its latest build log)."""
    from spacehooks import admin
    admin.logs(ctx.settings, space, build_log, follow, click.echo)


@cli.command()
@click.argument("space")
@click.option("--no-cache", is_flag=True, help="Rebuild every layer (the Hub's factory rebuild).")
@pass_ctx
def rebuild(ctx, space, no_cache):
    """Queue a new build of the Space's deploy branch."""
    from spacehooks import admin
    admin.rebuild(ctx.settings, space, no_cache, click.echo)


@cli.command()
@click.argument("space")
@pass_ctx
def restart(ctx, space):
    """Restart a Space from its current image (blue-green)."""
    from spacehooks import admin
    admin.restart(ctx.settings, space, click.echo)


@cli.command()
@click.argument("space")
@pass_ctx
def pause(ctx, space):
    """Stop a Space until it is resumed."""
    from spacehooks import admin
    admin.pause(ctx.settings, space, click.echo)


@cli.command()
@click.argument("space")
@pass_ctx
def resume(ctx, space):
    """Start a paused or stopped Space again."""
    from spacehooks import admin
    admin.resume(ctx.settings, space, click.echo)


@cli.command()
@click.argument("space")
@click.option("--yes", is_flag=True, help="Do not ask first.")
@pass_ctx
def delete(ctx, space, yes):
    """Remove a Space's containers, images, secrets, storage and state (not its git repository)."""
    from spacehooks import admin, storage_admin
    lost = storage_admin.loss_note(ctx.settings, space)
    if not yes:
        if lost:
            click.echo(f"This also deletes {lost}.")
        click.confirm("Delete the Space's containers, images, secrets" + (", storage" if lost else "")
                      + " and state?", abort=True)
    admin.delete(ctx.settings, space, click.echo)


# --- storage and duplicate ---------------------------------------------------------------

@cli.group()
def storage():
    """Persistent storage: a Space's /data, kept across restarts, rebuilds, sleep and reboots."""


@storage.command("set")
@click.argument("space")
@click.argument("tier")
@pass_ctx
def storage_set(ctx, space, tier):
    """Give SPACE storage of TIER (see storage.tiers: small, medium, large) or grow it; restarts it if it runs."""
    from spacehooks import storage_admin
    storage_admin.set_tier(ctx.settings, space, tier, click.echo)


@storage.command("remove")
@click.argument("space")
@click.option("--yes", is_flag=True, help="Do not ask first.")
@pass_ctx
def storage_remove(ctx, space, yes):
    """Delete SPACE's storage and every file in it; a running Space restarts without /data."""
    from spacehooks import storage_admin
    lost = storage_admin.loss_note(ctx.settings, space)
    if lost and not yes:
        click.echo(f"This deletes {lost}.")
        click.confirm("Remove the storage?", abort=True)
    storage_admin.remove(ctx.settings, space, click.echo)


@storage.command("export")
@click.argument("space")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@pass_ctx
def storage_export(ctx, space, file):
    """Write SPACE's /data as a tar to FILE (a new file; pause the Space first for a consistent copy)."""
    from spacehooks import storage_admin
    storage_admin.export(ctx.settings, space, file, click.echo)


@storage.command("import")
@click.argument("space")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@pass_ctx
def storage_import(ctx, space, file):
    """Unpack a tar FILE into SPACE's /data (files of the same name replaced); restarts it if it runs."""
    from spacehooks import storage_admin
    storage_admin.import_(ctx.settings, space, file, click.echo)


@storage.command("list")
@pass_ctx
def storage_list(ctx):
    """Show each Space's storage: tier, size, used, and what its image takes on the host's disk."""
    from spacehooks import storage_admin
    storage_admin.listing(ctx.settings, click.echo)


@cli.command()
@click.argument("from_id", metavar="FROM")
@click.argument("to_id", metavar="TO")
@click.option("--private", is_flag=True, help="Recorded only: this server has no private Spaces yet.")
@click.option("--hardware", metavar="FLAVOR", help="Flavor of the copy (default: the original's).")
@click.option("--storage", "storage_tier", metavar="TIER", help="Give the copy storage of TIER (empty: not copied).")
@pass_ctx
def duplicate(ctx, from_id, to_id, private, hardware, storage_tier):
    """Copy Space FROM to a new Space TO: repository with history, variables, README with
    duplicated_from; never the secrets (their names are listed for the new owner to set)."""
    from spacehooks import duplicate as mod
    mod.duplicate(ctx.settings, from_id, to_id, private=private, hardware=hardware, storage_tier=storage_tier,
                  echo=click.echo)


@cli.group()
def secrets():
    """Secrets of a Space: environment variables (and Streamlit secrets) never stored in git."""


@secrets.command("set")
@click.argument("space")
@click.argument("key")
@pass_ctx
def secrets_set(ctx, space, key):
    """Set a secret; the value comes from stdin or a hidden prompt, never an argument."""
    from spacehooks import admin
    value = sys.stdin.read().rstrip("\n") if not sys.stdin.isatty() else click.prompt(f"{key}", hide_input=True)
    admin.secret_set(ctx.settings, space, key, value, click.echo)


@secrets.command("list")
@click.argument("space")
@pass_ctx
def secrets_list(ctx, space):
    """List a Space's secret names (never values)."""
    from spacehooks import admin
    admin.secret_list(ctx.settings, space, click.echo)


@secrets.command("delete")
@click.argument("space")
@click.argument("key")
@pass_ctx
def secrets_delete(ctx, space, key):
    """Delete a secret (restarts the Space)."""
    from spacehooks import admin
    admin.secret_delete(ctx.settings, space, key, click.echo)


@cli.group()
def variables():
    """Public variables of a Space, given to the app as environment variables."""


@variables.command("set")
@click.argument("space")
@click.argument("key")
@click.argument("value", required=False)
@pass_ctx
def variables_set(ctx, space, key, value):
    """Set a variable (value from the argument or stdin; restarts the Space)."""
    from spacehooks import admin
    admin.variable_set(ctx.settings, space, key, value if value is not None else sys.stdin.read().rstrip("\n"),
                       click.echo)


@variables.command("list")
@click.argument("space")
@pass_ctx
def variables_list(ctx, space):
    """List a Space's variables with their values."""
    from spacehooks import admin
    admin.variable_list(ctx.settings, space, click.echo)


@variables.command("delete")
@click.argument("space")
@click.argument("key")
@pass_ctx
def variables_delete(ctx, space, key):
    """Delete a variable (restarts the Space)."""
    from spacehooks import admin
    admin.variable_delete(ctx.settings, space, key, click.echo)


@cli.command()
@pass_ctx
def gc(ctx):
    """Remove Space images older than the last run.keep_builds builds of each Space."""
    from spacehooks import images
    images.gc(ctx.settings, click.echo)


@cli.command()
@click.argument("space")
@click.argument("build", type=int, required=False)
@pass_ctx
def rollback(ctx, space, build):
    """Run an earlier build's image again (default: the one before the current)."""
    from spacehooks import images
    images.rollback(ctx.settings, space, build, click.echo)


@cli.group()
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
    from spacehooks import limits as mod
    mod.set_limits(ctx.settings, space, {"memory_mb": memory_mb, "cpus": cpus, "pids": pids}, reset, click.echo)


@limits.command("show")
@click.argument("space")
@pass_ctx
def limits_show(ctx, space):
    """Show SPACE's limits and where each comes from."""
    from spacehooks import limits as mod
    mod.show(ctx.settings, space, click.echo)


@cli.command()
@pass_ctx
def doctor(ctx):
    """Check the configuration, state store, Podman service, runtime, cgroups, ulimits and base
    images; print fixes."""
    from spacehooks import doctor as mod
    from spacehooks.errors import SpaceError
    try:
        settings = ctx.settings
    except SpaceError as exc:  # a configuration that does not load is the first thing to report
        mod.bad_config(exc, click.echo)
        sys.exit(1)
    if not mod.doctor(settings, click.echo):
        sys.exit(1)



@cli.group("state")
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
    from spacehooks import rebuild
    done = rebuild.rebuild(ctx.settings, click.echo, force=force)
    click.echo(f"state store rebuilt: {len(done)} Space(s); start serve (or worker) again")


# --- gpu and hardware -------------------------------------------------------------------

@cli.group()
def hardware():
    """Hardware flavors: what each gives, and what this host can provide."""


@hardware.command("list")
@pass_ctx
def hardware_list(ctx):
    """Show every flavor with its CPUs, memory, GPUs and availability on this host, then what
    the running Spaces use and what is free (memory, CPUs, disk for storage)."""
    from spacehooks import capacity
    capacity.hardware_list(ctx.settings, click.echo)


@hardware.command("set")
@click.argument("space")
@click.argument("flavor")
@pass_ctx
def hardware_set(ctx, space, flavor):
    """Move SPACE (owner/name) to FLAVOR, freeing its old GPUs, and restart it if it runs."""
    from spacehooks import limits
    limits.set_hardware(ctx.settings, space, flavor, click.echo)


@cli.group("gpu")
def gpu_group():
    """GPUs through CDI: the specs Podman reads, and who holds which device."""


@gpu_group.command("list")
@pass_ctx
def gpu_list(ctx):
    """List the CDI specs and their devices, with problems that keep Podman from loading them."""
    from spacehooks import gpu
    gpu.gpu_list(ctx.settings, click.echo)


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
    from spacehooks import gpu
    gpu.cdi_generate(ctx.settings, Path(dev_root), Path(driver_root), output, cdi_version, click.echo)



# --- gateway and serve ------------------------------------------------------------------

@cli.command()
@click.option("--listen", metavar="HOST:PORT", help="Address to listen on (default: the gateway.listen setting).")
@click.option("--no-sleep", is_flag=True, help="Never put idle Spaces to sleep from this process.")
@pass_ctx
def gateway(ctx, listen, no_sleep):
    """Run the gateway alone: Space routing, gallery, Space pages, status API, sleep and wake."""
    from spacehooks.gateway import serve as mod
    mod.run(ctx.settings, listen, with_worker=False, sleep=not no_sleep, echo=click.echo)


@cli.command()
@click.option("--listen", metavar="HOST:PORT", help="Address to listen on (default: the gateway.listen setting).")
@pass_ctx
def serve(ctx, listen):
    """Run the whole server in one process: gateway, build worker and sleeper."""
    from spacehooks import state
    from spacehooks.gateway import serve as mod
    state.verify(ctx.settings)  # a damaged store stops here, with the way out
    mod.run(ctx.settings, listen, with_worker=True, echo=click.echo)


@cli.group("sleep-time")
def sleep_time():
    """Idle time after which a Space sleeps (the next request wakes it)."""


@sleep_time.command("set")
@click.argument("space")
@click.argument("seconds", type=int)
@pass_ctx
def sleep_time_set(ctx, space, seconds):
    """Put SPACE to sleep after SECONDS without requests (-1: never sleep)."""
    from spacehooks.gateway import sleeper
    sleeper.set_sleep_time(ctx.settings, space, seconds, echo=click.echo)



# --- base images ------------------------------------------------------------------------

@cli.group("base-image")
def base_image():
    """Base images per python version (built from the Debian mirror, no registry needed)."""


@base_image.command("build")
@click.option("--python", "pythons", multiple=True, metavar="VERSION",
              help="Python version to build (repeatable; default: every python_versions entry we make).")
@click.option("--force", is_flag=True, help="Rebuild even when the image or its cached copy is up to date.")
@pass_ctx
def base_image_build(ctx, pythons, force):
    """Build base images, or load them from the cache when the recipe matches."""
    from spacehooks import baseimage
    baseimage.build(ctx.settings, list(pythons), force, echo=click.echo)


@base_image.command("list")
@pass_ctx
def base_image_list(ctx):
    """Show each configured python version, its image and whether it is up to date."""
    from spacehooks import baseimage
    for python, reference, state in baseimage.listing(ctx.settings):
        click.echo(f"{python:<6} {reference:<40} {state}")


# --- set-up -----------------------------------------------------------------------------

@cli.command()
@click.argument("space", metavar="OWNER/NAME")
@pass_ctx
def create(ctx, space):
    """Create the bare repository OWNER/NAME under repo_root with the hooks installed."""
    from spacehooks import install as mod
    mod.create_repo(ctx.settings, space, echo=click.echo)


@cli.command("git-template")
@click.argument("folder", type=click.Path(file_okay=False))
@pass_ctx
def git_template(ctx, folder):
    """Write a git template folder (for init.templateDir) whose new repositories get the hooks."""
    from spacehooks import install as mod
    notes = mod.write_git_template(ctx.settings, Path(folder))
    click.echo(f"{folder}: {', '.join(notes) if notes else 'unchanged'}")


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except SpaceError as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # click's own usage errors
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # anything else is a bug: report it with a log path
        click.echo(f"Error: {internal_error_message(exc)}", err=True)
        sys.exit(70)
