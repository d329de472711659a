"""spacehooks: self-hosted Hugging Face Spaces as git hooks.

The data flows one way: push -> gate -> queue -> build -> run -> route, and the
modules follow it: config/spaceconfig/gitrepo -> gate -> install -> state/queue
-> podman/builder/runner/gpu -> gateway.
"""

__version__ = "0.1.0"
