#!/bin/sh
# Start the Podman REST service spacehooks talks to, if it is not answering already.
# Usage: start-service.sh [SOCKET]   (default /run/spacehooks/podman.sock)
# Works without systemd (CI, containers); contrib/systemd has the unit for real servers.
set -eu
sock=${1:-/run/spacehooks/podman.sock}
here=$(cd "$(dirname "$0")" && pwd)
conf_dir=${SPACEHOOKS_PODMAN_CONF_DIR:-/etc/spacehooks}
log=${SPACEHOOKS_PODMAN_LOG:-/var/log/spacehooks-podman.log}

# Space containers run in user namespaces carved from this range (read at each container start)
"$here/subids.sh"
if curl -sf --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; then
    echo "podman service already answering on $sock"; exit 0
fi
mkdir -p "$(dirname "$sock")" "$conf_dir" "$(dirname "$log")"
# shellcheck disable=SC3045 # dash and bash both know ulimit -H
hard=$(ulimit -Hn)
nofile=4096; [ "$hard" != unlimited ] && [ "$hard" -lt 4096 ] && nofile=$hard
sed "s/nofile=4096:4096/nofile=$nofile:$nofile/" "$here/containers.conf" > "$conf_dir/containers.conf.new"
if ! cmp -s "$conf_dir/containers.conf.new" "$conf_dir/containers.conf" 2>/dev/null; then
    mv "$conf_dir/containers.conf.new" "$conf_dir/containers.conf"
else
    rm -f "$conf_dir/containers.conf.new"
fi
rm -f "$sock"
CONTAINERS_CONF="$conf_dir/containers.conf" setsid nohup podman system service --time=0 "unix://$sock" >>"$log" 2>&1 < /dev/null &
i=0
while [ $i -lt 50 ]; do
    # Space containers run in user namespaces carved from this range (read at each container start)
"$here/subids.sh"
if curl -sf --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; then
        echo "podman service started on $sock (log: $log)"; exit 0
    fi
    i=$((i + 1)); sleep 0.2
done
echo "podman service did not answer on $sock within 10s; see $log" >&2
exit 1
