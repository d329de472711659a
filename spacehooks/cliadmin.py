"""The CLI's Space commands: list, status, logs, rebuild, restart, pause, resume, delete,
rollback, secrets, variables, sleep time. Each calls one operation and prints its result here,
in one place per command (the operations print nothing: an HTTP API serialises the same results).
"""
from __future__ import annotations

import sys

import click

from spacehooks import config as config_mod
from spacehooks import stages
from spacehooks.errors import SpaceError
from spacehooks.results import KeyChanged, StageResult


class Context:
    def __init__(self):
        self._settings = None

    @property
    def settings(self) -> config_mod.Settings:
        if self._settings is None:
            self._settings = config_mod.load()
        return self._settings


pass_ctx = click.make_pass_decorator(Context, ensure=True)


def print_stage(result: StageResult) -> None:
    """`id: STAGE`; an error after it fails the command (exit 1) with the Space's error."""
    if result.note:
        click.echo(result.note)
    click.echo(f"{result.space_id}: {result.stage}")
    if result.stage == stages.WAITING_CAPACITY:  # not a failure: it starts when room frees
        click.echo(f"  {result.error}")
        return
    if result.error:
        raise SpaceError(f"{result.space_id}: {result.error}")


def print_admitted(result) -> None:
    for started in result.admitted:
        click.echo(f"{started}: started (it was waiting for room)")


def print_restarted(space_id: str, stage: str | None) -> None:
    if stage is not None:
        click.echo(f"{space_id} restarted: {stage}")


def print_key_changed(result: KeyChanged) -> None:
    where = "for" if result.action == "set" else "from"
    click.echo(f"{result.kind} {result.key} {result.action} {where} {result.space_id}")
    print_restarted(result.space_id, result.restarted)


@click.command()
@pass_ctx
def spaces(ctx):
    """List Spaces with their stage, commit and port."""
    from spacehooks.admin import spaces as admin
    rows = admin.spaces(ctx.settings)
    if not rows:
        click.echo("no Spaces yet: push to a repository with the hooks installed")
        return
    click.echo(f"{'SPACE':30} {'STAGE':22} {'COMMIT':12} {'PORT':6} HARDWARE")
    for s in rows:
        click.echo(f"{s.id:30} {s.stage:22} {(s.commit or '-')[:12]:12} {str(s.port or '-'):6} {s.hardware or '-'}")


@click.command()
@click.argument("space")
@pass_ctx
def status(ctx, space):
    """Show a Space's stage, container, error and recent builds."""
    from spacehooks.admin import spaces as admin
    s = admin.status(ctx.settings, space)
    click.echo(f"space:     {s.id}")
    click.echo(f"stage:     {s.stage}")
    click.echo(f"commit:    {s.commit or '-'}")
    click.echo(f"build:     {s.build_id or '-'}")
    click.echo(f"container: {s.container or '-'}")
    click.echo(f"port:      {s.port or '-'}")
    click.echo(f"hardware:  {s.hardware or '-'}")
    if s.podman_down:
        click.echo(f"podman:    DOWN: not reachable at {s.podman_down}; builds wait in the queue,"
                   " app output is not copied, `spacehooks doctor` says more")
    if s.error:
        click.echo("error:     " + s.error.replace("\n", "\n           "))
    for b in s.builds:
        click.echo(f"build #{b.id}: {b.status} {b.commit[:12]} by {b.pusher or '-'}"
                   + (f" ({b.error.splitlines()[0]})" if b.error else ""))


@click.command()
@click.argument("space")
@click.option("--build", "build_log", is_flag=True, help="Show the latest build log instead of the app's log.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines.")
@pass_ctx
def logs(ctx, space, build_log, follow):
    """Print a Space's run log (or its latest build log)."""
    from spacehooks.admin import spaces as admin
    admin.logs(ctx.settings, space, build_log, follow, click.echo)


@click.command()
@click.argument("space")
@click.option("--no-cache", is_flag=True, help="Rebuild every layer (the Hub's factory rebuild).")
@pass_ctx
def rebuild(ctx, space, no_cache):
    """Queue a new build of the Space's deploy branch."""
    from spacehooks.admin import spaces as admin
    result = admin.rebuild(ctx.settings, space, no_cache)
    click.echo(f"build #{result.build_id} queued for {result.space_id}" + (" (no cache)" if result.no_cache else ""))


@click.command()
@click.argument("space")
@pass_ctx
def restart(ctx, space):
    """Restart a Space from its current image (blue-green)."""
    from spacehooks.admin import spaces as admin
    print_stage(admin.restart(ctx.settings, space))


@click.command()
@click.argument("space")
@pass_ctx
def pause(ctx, space):
    """Stop a Space until it is resumed."""
    from spacehooks.admin import spaces as admin
    result = admin.pause(ctx.settings, space)
    click.echo(f"{result.space_id}: {result.stage} (resume with `spacehooks resume {result.space_id}`)")
    print_admitted(result)


@click.command()
@click.argument("space")
@pass_ctx
def resume(ctx, space):
    """Start a paused or stopped Space again."""
    from spacehooks.admin import spaces as admin
    print_stage(admin.resume(ctx.settings, space))


@click.command()
@click.argument("space")
@click.option("--yes", is_flag=True, help="Do not ask first.")
@pass_ctx
def delete(ctx, space, yes):
    """Remove a Space's containers, images, secrets, storage and state (not its git repository)."""
    from spacehooks.admin import spaces as admin
    from spacehooks.admin import storage as storage_admin
    lost = storage_admin.loss_note(ctx.settings, space)
    if not yes:
        if lost:
            click.echo(f"This also deletes {lost}.")
        click.confirm("Delete the Space's containers, images, secrets" + (", storage" if lost else "")
                      + " and state?", abort=True)
    result = admin.delete(ctx.settings, space)
    click.echo(f"{result.space_id} deleted (its git repository {result.repo_path} is left alone)")
    print_admitted(result)


@click.command()
@click.argument("space")
@click.argument("build", type=int, required=False)
@pass_ctx
def rollback(ctx, space, build):
    """Run an earlier build's image again (default: the one before the current)."""
    from spacehooks.admin import images
    print_stage(images.rollback(ctx.settings, space, build))


@click.group()
def secrets():
    """Secrets of a Space: environment variables (and Streamlit secrets) never stored in git."""


@secrets.command("set")
@click.argument("space")
@click.argument("key")
@pass_ctx
def secrets_set(ctx, space, key):
    """Set a secret; the value comes from stdin or a hidden prompt, never an argument."""
    from spacehooks.admin import spaces as admin
    value = sys.stdin.read().rstrip("\n") if not sys.stdin.isatty() else click.prompt(f"{key}", hide_input=True)
    print_key_changed(admin.secret_set(ctx.settings, space, key, value))


@secrets.command("list")
@click.argument("space")
@pass_ctx
def secrets_list(ctx, space):
    """List a Space's secret names (never values)."""
    from spacehooks.admin import spaces as admin
    for key in admin.secret_list(ctx.settings, space):
        click.echo(key)


@secrets.command("delete")
@click.argument("space")
@click.argument("key")
@pass_ctx
def secrets_delete(ctx, space, key):
    """Delete a secret (restarts the Space)."""
    from spacehooks.admin import spaces as admin
    print_key_changed(admin.secret_delete(ctx.settings, space, key))


@click.group()
def variables():
    """Public variables of a Space, given to the app as environment variables."""


@variables.command("set")
@click.argument("space")
@click.argument("key")
@click.argument("value", required=False)
@pass_ctx
def variables_set(ctx, space, key, value):
    """Set a variable (value from the argument or stdin; restarts the Space)."""
    from spacehooks.admin import spaces as admin
    print_key_changed(admin.variable_set(ctx.settings, space, key,
                                         value if value is not None else sys.stdin.read().rstrip("\n")))


@variables.command("list")
@click.argument("space")
@pass_ctx
def variables_list(ctx, space):
    """List a Space's variables with their values."""
    from spacehooks.admin import spaces as admin
    for key, value in admin.variable_list(ctx.settings, space).items():
        click.echo(f"{key}={value}")


@variables.command("delete")
@click.argument("space")
@click.argument("key")
@pass_ctx
def variables_delete(ctx, space, key):
    """Delete a variable (restarts the Space)."""
    from spacehooks.admin import spaces as admin
    print_key_changed(admin.variable_delete(ctx.settings, space, key))


@click.group("sleep-time")
def sleep_time():
    """Idle time after which a Space sleeps (the next request wakes it)."""


@sleep_time.command("set")
@click.argument("space")
@click.argument("seconds", type=int)
@pass_ctx
def sleep_time_set(ctx, space, seconds):
    """Put SPACE to sleep after SECONDS without requests (-1: never sleep)."""
    from spacehooks.gateway import sleeper
    result = sleeper.set_sleep_time(ctx.settings, space, seconds)
    click.echo(f"{result.space_id} never sleeps" if result.seconds == -1
               else f"{result.space_id} sleeps after {result.seconds}s without requests")


COMMANDS = (spaces, status, logs, rebuild, restart, pause, resume, delete, rollback, secrets, variables, sleep_time)
