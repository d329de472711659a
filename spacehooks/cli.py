"""Command-line wiring only: each command parses its options and calls one function. The Space
commands are in cliadmin.py, the host's (gc, doctor, state, limits, hardware, gpu) in clihost.py,
those on people and access (users, orgs, tokens, visibility, audit) in clipeople.py, storage and
duplicate in clistorage.py."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from spacehooks import cliadmin, clihost, clipeople, clistorage
from spacehooks import config as config_mod
from spacehooks.cliadmin import pass_ctx
from spacehooks.errors import SpaceError, internal_error_message


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="spacehooks")
def cli():
    """Self-hosted Hugging Face Spaces: validate on push, build with Podman, serve."""


for _command in (*cliadmin.COMMANDS, *clihost.COMMANDS, *clipeople.COMMANDS, *clistorage.COMMANDS):
    cli.add_command(_command)


# --- gate: install, validate ------------------------------------------------------------

@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--layout", type=click.Choice(["auto", "plain", "gitea", "gitlab", "gitolite"]), default="auto",
              show_default=True, help="Where the server looks for hooks.")
@pass_ctx
def install(ctx, paths, layout):
    """Install the spacehooks hooks into bare repositories (or every one found under PATH)."""
    from spacehooks.admin import install as mod
    mod.install_paths(ctx.settings, [Path(p) for p in paths], layout, echo=click.echo)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--layout", type=click.Choice(["auto", "plain", "gitea", "gitlab", "gitolite"]), default="auto",
              show_default=True)
@pass_ctx
def uninstall(ctx, paths, layout):
    """Remove the spacehooks hooks and restore the hooks that were there before."""
    from spacehooks.admin import install as mod
    mod.uninstall_paths(ctx.settings, [Path(p) for p in paths], layout, echo=click.echo)


@cli.command()
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@pass_ctx
def validate(ctx, directory):
    """Run the push checks on a working copy before you push."""
    from spacehooks.push import gate
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
    from spacehooks.push import spaceconfig
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
    from spacehooks.engine import netfence
    if show:
        click.echo(netfence.ruleset(ctx.settings), nl=False)
        return
    netfence.apply(ctx.settings)
    click.echo(f"network fence loaded: nftables table inet {netfence.table(ctx.settings)}")


@cli.command()
@pass_ctx
def worker(ctx):
    """Run queued builds and deploy them (blocks; `serve` runs it too)."""
    from spacehooks import state
    from spacehooks.admin import images
    from spacehooks.run import worker as mod
    state.verify(ctx.settings)  # a damaged store stops here, with the way out
    mod.main_loop(ctx.settings, gc=images.gc)



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



# --- base images ------------------------------------------------------------------------

@cli.group("base-image")
def base_image():
    """Base images per python version (built from the Debian mirror, no registry needed)."""


@base_image.command("build")
@click.option("--python", "pythons", multiple=True, metavar="VERSION",
              help="Python version to build (repeatable; default: every python_versions entry we make).")
@click.option("--force", is_flag=True, help="Rebuild even when the image or its cached copy is up to date.")
@click.option("--compat", "compat", multiple=True, metavar="VERSION",
              help="Also make localhost/spacehooks/python-compat:VERSION from that base image: a stand-in for "
                   "the official python:VERSION image (python and pip on PATH, useradd, uid 1000 free, pip "
                   "install allowed) for docker Spaces, through build.image_aliases (repeatable).")
@pass_ctx
def base_image_build(ctx, pythons, force, compat):
    """Build base images, or load them from the cache when the recipe matches."""
    from spacehooks.build import baseimage
    baseimage.build(ctx.settings, sorted(set(pythons) | set(compat)), force, echo=click.echo)
    if compat:
        from spacehooks.build import compatimage
        for python in compat:
            compatimage.build(ctx.settings, python, force, echo=click.echo)


@base_image.command("list")
@pass_ctx
def base_image_list(ctx):
    """Show each configured python version, its image and whether it is up to date."""
    from spacehooks.build import baseimage
    for python, reference, state in baseimage.listing(ctx.settings):
        click.echo(f"{python:<6} {reference:<40} {state}")


# --- set-up -----------------------------------------------------------------------------

@cli.command()
@click.argument("space", metavar="OWNER/NAME")
@click.option("--private", is_flag=True, help="Only members of OWNER see the Space (gallery, lists, its address, logs).")
@pass_ctx
def create(ctx, space, private):
    """Create the bare repository OWNER/NAME under repo_root with the hooks installed."""
    from spacehooks.admin import people
    people.create(ctx.settings, space, private, echo=click.echo)


@cli.command("git-template")
@click.argument("folder", type=click.Path(file_okay=False))
@pass_ctx
def git_template(ctx, folder):
    """Write a git template folder (for init.templateDir) whose new repositories get the hooks."""
    from spacehooks.admin import install as mod
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
