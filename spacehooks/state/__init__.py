"""SQLite state under SPACEHOOKS_HOME: spaces, builds, variables, GPU allocations, containers
waiting for removal. All of spacehooks' SQL is in this package (tests/test_architecture.py).

Several processes of the server's account share the file (the worker, the gateway, admin
commands): WAL mode and a busy timeout let them take turns; each opens its own connection.
The git account never opens it: it hands push records over (spool.py).
"""
# secrets live in files of their own, never in the database; callers reach them through here
from spacehooks.state.secretstore import SECRET_KEY, delete_secret, read_secrets, secrets_dir, write_secret  # noqa: F401
# build statuses are follow.py's: post-receive on the git account reads them without SQLite
from spacehooks.follow import CANCELLED, FAILED, FINAL, QUEUED, RUNNING, SUCCEEDED, SUPERSEDED  # noqa: F401
# stage names and the moves between them are stages.py's; stages.change writes through here
from spacehooks.stages import ANSWERING, STAGES, STARTED  # noqa: F401
from spacehooks.state.store import (  # noqa: F401
    MIGRATIONS, RECOVERY_HINT, SCHEMA, SCHEMA_VERSION, State, damaged, integrity_problems, is_damage, open,
    schema_version, space_ages, verify)
