"""The gateway: routes `<owner>-<name>.<domain>` to Spaces, serves the gallery, Space pages and
status API, and puts idle Spaces to sleep. `serve.run` starts it (with the build worker)."""
