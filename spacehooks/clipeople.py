"""The CLI's commands on people and access (issue 13): users, organisations and members,
tokens, SSH keys, a Space's visibility, the audit log. Each calls one function of people.py."""
from __future__ import annotations

from pathlib import Path

import click

from spacehooks.cliadmin import pass_ctx


@click.group()
def users():
    """Users: the names pushes and tokens act as (they manage their own Spaces)."""


@users.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May manage every Space and read the audit log's subjects.")
@pass_ctx
def users_add(ctx, name, admin):
    """Add user NAME (the name the git server reports as pusher)."""
    from spacehooks.admin import people
    people.users_add(ctx.settings, name, admin, click.echo)


@users.command("list")
@pass_ctx
def users_list(ctx):
    """Users and organisations, with memberships."""
    from spacehooks.admin import people
    people.users_list(ctx.settings, click.echo)


@users.command("remove")
@click.argument("name")
@pass_ctx
def users_remove(ctx, name):
    """Remove user or organisation NAME and revoke its tokens (its Spaces stay)."""
    from spacehooks.admin import people
    people.remove(ctx.settings, name, click.echo)


@users.group("ssh-key")
def users_ssh_key():
    """SSH keys of the plain SSH server."""


@users_ssh_key.command("add")
@click.argument("user")
@click.argument("keyfile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--authorized-keys", type=click.Path(dir_okay=False, path_type=Path),
              help="File to add the line to (default: the git account's ~/.ssh/authorized_keys).")
@pass_ctx
def users_ssh_key_add(ctx, user, keyfile, authorized_keys):
    """Let KEYFILE push and clone as USER, within the owner rules."""
    from spacehooks.admin import people
    people.ssh_key_add(ctx.settings, user, keyfile, authorized_keys, click.echo)


@click.group()
def orgs():
    """Organisations: their members manage the organisation's Spaces."""


@orgs.command("add")
@click.argument("name")
@pass_ctx
def orgs_add(ctx, name):
    """Add organisation NAME."""
    from spacehooks.admin import people
    people.orgs_add(ctx.settings, name, click.echo)


@orgs.group("member")
def orgs_member():
    """Members of an organisation."""


@orgs_member.command("add")
@click.argument("org")
@click.argument("user")
@pass_ctx
def orgs_member_add(ctx, org, user):
    """Make USER a member of ORG."""
    from spacehooks.admin import people
    people.member(ctx.settings, org, user, True, click.echo)


@orgs_member.command("remove")
@click.argument("org")
@click.argument("user")
@pass_ctx
def orgs_member_remove(ctx, org, user):
    """Remove USER from ORG."""
    from spacehooks.admin import people
    people.member(ctx.settings, org, user, False, click.echo)


@click.group()
def tokens():
    """API tokens for the Hub-compatible API and private Spaces (HF_TOKEN)."""


@tokens.command("create")
@click.argument("user")
@click.option("--scope", type=click.Choice(["read", "write"]), default="read", show_default=True)
@click.option("--expires", metavar="DURATION", help="Lifetime, e.g. 30d, 12h, 90m (default: until revoked).")
@click.option("--name", default="", help="A note to tell tokens apart.")
@pass_ctx
def tokens_create(ctx, user, scope, expires, name):
    """Create a token for USER; it is printed once and stored only as a hash."""
    from spacehooks.admin import people
    people.tokens_create(ctx.settings, user, scope, expires, name, click.echo)


@tokens.command("list")
@click.option("--user", help="Only this user's tokens.")
@pass_ctx
def tokens_list(ctx, user):
    """Tokens (ids, never the tokens themselves)."""
    from spacehooks.admin import people
    people.tokens_list(ctx.settings, user, click.echo)


@tokens.command("revoke")
@click.argument("token_id")
@pass_ctx
def tokens_revoke(ctx, token_id):
    """Revoke token TOKEN_ID at once."""
    from spacehooks.admin import people
    people.tokens_revoke(ctx.settings, token_id, click.echo)


@click.command()
@click.argument("space", metavar="OWNER/NAME")
@click.argument("which", type=click.Choice(["private", "public"]))
@pass_ctx
def visibility(ctx, space, which):
    """Make SPACE private (members only) or public."""
    from spacehooks.admin import people
    people.visibility(ctx.settings, space, which == "private", click.echo)


@click.command()
@click.option("--space", help="Only this Space.")
@click.option("--user", help="Only this user's actions.")
@click.option("--limit", type=int, default=100, show_default=True)
@pass_ctx
def audit(ctx, space, user, limit):
    """Who changed what and when (user and token id or key, action, Space)."""
    from spacehooks.admin import people
    people.audit(ctx.settings, space, user, limit, click.echo)


COMMANDS = (users, orgs, tokens, visibility, audit)
