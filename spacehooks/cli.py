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


# --- gpu and hardware -------------------------------------------------------------------


# --- gateway and serve ------------------------------------------------------------------


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


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
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
