#!/bin/sh
# Give Podman's `containers` user a subordinate id range for user namespaces: each Space
# container gets 65536 ids from it (userns=auto), so its uid 1000 is a host id no account
# has. The range starts near 2^31, above any account or login-user range useradd hands out.
# Idempotent: an existing `containers` entry is kept as it is.
set -eu
for file in /etc/subuid /etc/subgid; do
    [ -f "$file" ] || { touch "$file"; chmod 644 "$file"; }
    if ! grep -q '^containers:' "$file"; then
        echo "containers:2147483647:2147483648" >> "$file"
        echo "added containers:2147483647:2147483648 to $file"
    fi
done
