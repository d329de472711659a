#!/bin/sh
# Set up a spacehooks server on Debian or Ubuntu, from this checkout, in one command:
#
#   sudo contrib/setup.sh
#
# System packages, a venv at /opt/spacehooks/venv, the Podman API service (systemd units,
# or contrib/podman/start-service.sh without systemd), /etc/spacehooks/config.yaml (only if
# absent), /var/lib/spacehooks, the base image, /srv/git with the hooks, a git account for
# pushes over SSH, and `spacehooks serve` running. Safe to run again: it changes only what
# is missing or out of date, and says so.
set -eu

usage() {
    cat <<'EOF'
usage: contrib/setup.sh [options]
  --prefix DIR        install everything below DIR (for tests; no systemd, no packages)
  --python PATH       python used for the venv (default: /usr/bin/python3, the system's: the git
                      account runs the hooks with it, and a python3 under /root is not reachable)
  --git-user NAME     account that receives pushes over SSH (default: git; "" for none)
  --group NAME        group of the git account, which may drop push records into the state folder (default: spacehooks)
  --podman-socket P   Podman API socket (default: /run/spacehooks/podman.sock)
  --listen HOST:PORT  gateway address written to a new config (default: 127.0.0.1:8080)
  --domain NAME       gateway.domain written to a new config (default: localhost)
  --with-nginx        also install nginx (configure it from contrib/nginx/)
  --no-packages       do not install system packages
  --no-podman         do not set up the Podman service
  --no-base-image     do not build the base image
  --no-serve          do not start `spacehooks serve`
  --no-systemd        use background processes with pid files even where systemd runs
EOF
}

here=$(cd "$(dirname "$0")" && pwd)
checkout=$(dirname "$here")
prefix=""; python=/usr/bin/python3; git_user=default; group=spacehooks; socket=/run/spacehooks/podman.sock
listen=""; domain=""; nginx=0; packages=1; podman=1; base_image=1; serve=1; systemd=auto

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=$(mkdir -p "$2" && cd "$2" && pwd); shift ;;
        --python) python=$2; shift ;;
        --git-user) git_user=$2; shift ;;
        --group) group=$2; shift ;;
        --podman-socket) socket=${2#unix://}; shift ;;
        --listen) listen=$2; shift ;;
        --domain) domain=$2; shift ;;
        --with-nginx) nginx=1 ;;
        --no-packages) packages=0 ;;
        --no-podman) podman=0 ;;
        --no-base-image) base_image=0 ;;
        --no-serve) serve=0 ;;
        --no-systemd) systemd=no ;;
        -h|--help) usage; exit 0 ;;
        *) echo "setup.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

venv=$prefix/opt/spacehooks/venv
etc=$prefix/etc/spacehooks
config=$etc/config.yaml
home=$prefix/var/lib/spacehooks
repo_root=$prefix/srv/git
run_dir=$prefix/run/spacehooks
log_dir=$prefix/var/log/spacehooks
bin_dir=$prefix/usr/local/bin
unit_dir=$prefix/etc/systemd/system
template=$etc/git-template
changed=0

step() { echo "-----> $*"; }
note() { echo "       $*"; }
die() { echo " !     $*" >&2; exit 1; }
did() { changed=1; note "$*"; }

if [ -n "$prefix" ]; then
    systemd=no; packages=0
    [ "$git_user" = default ] && git_user=""
else
    [ "$(id -u)" = 0 ] || die "run as root: sudo contrib/setup.sh"
    [ "$git_user" = default ] && git_user=git
fi
if [ "$systemd" = auto ]; then
    if [ -d /run/systemd/system ]; then systemd=yes; else systemd=no; fi
fi
export SPACEHOOKS_CONFIG="$config" SPACEHOOKS_HOME="$home"

# --- system packages ---------------------------------------------------------------------
if [ $packages = 1 ]; then
    step "System packages"
    # iptables: netavark's firewall driver (no container network starts without it); nftables: the fence
    wanted="podman runc git curl mmdebstrap python3 python3-venv ca-certificates openssh-server iptables nftables"
    [ $nginx = 1 ] && wanted="$wanted nginx"
    missing=""
    for pkg in $wanted; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        note "installing:$missing"
        apt-get update -q
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
        changed=1
    else
        note "all present"
    fi
fi

# --- venv with the package from this checkout --------------------------------------------
step "Python environment $venv"
# hook_python_runs: the git account (which runs the hooks at every push) can start the venv's
# python and import spacehooks; a venv from a python under /root (pyenv, mode 0700) cannot
hook_python_runs() {
    [ -z "$git_user" ] || ! id "$git_user" >/dev/null 2>&1 \
        || (cd / && runuser -u "$git_user" -- "$venv/bin/python" -c 'import spacehooks') >/dev/null 2>&1
}
if [ -x "$venv/bin/python" ] && ! hook_python_runs; then
    note "$git_user cannot run $venv/bin/python ($(readlink -f "$venv/bin/python")); making the venv again from $python"
    rm -rf "$venv"
fi
source_hash=$(cd "$checkout" && find spacehooks githooks setup.cfg setup.py pyproject.toml -type f \
                  -not -path '*/__pycache__/*' 2>/dev/null | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
if [ -x "$venv/bin/spacehooks" ] && [ "$(cat "$venv/.spacehooks-source" 2>/dev/null)" = "$source_hash" ]; then
    note "up to date (source $source_hash)"
    venv_changed=0
else
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$checkout"
    # same version number, new code: pip would keep the old files without this
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$checkout"
    echo "$source_hash" > "$venv/.spacehooks-source"
    did "installed spacehooks (source $source_hash)"
    venv_changed=1
fi
"$venv/bin/spacehooks" --version >/dev/null || die "$venv/bin/spacehooks does not run"

# install_file SRC DEST: copy when different; returns 0 when it copied
install_file() {
    if [ -f "$2" ] && cmp -s "$1" "$2"; then return 1; fi
    mkdir -p "$(dirname "$2")"
    cp "$1" "$2.new" && mv "$2.new" "$2"
}

# render_unit NAME: the unit from contrib/systemd with this installation's paths
render_unit() {
    sed -e "s|/etc/spacehooks/|$etc/|g" -e "s|/var/lib/spacehooks|$home|g" \
        -e "s|/opt/spacehooks/venv|$venv|g" -e "s|/run/spacehooks/podman.sock|$socket|g" \
        "$here/systemd/$1" > "$run_dir/$1.rendered"
    if install_file "$run_dir/$1.rendered" "$unit_dir/$1"; then rm -f "$run_dir/$1.rendered"; return 0; fi
    rm -f "$run_dir/$1.rendered"; return 1
}
mkdir -p "$etc" "$run_dir" "$log_dir"

# --- Podman API service -------------------------------------------------------------------
if [ $podman = 1 ]; then
    step "Podman service on $socket"
    if [ $systemd = yes ]; then
        # shellcheck disable=SC3045 # dash and bash both know ulimit -H
        hard=$(ulimit -Hn); nofile=4096
        [ "$hard" != unlimited ] && [ "$hard" -lt 4096 ] && nofile=$hard
        sed "s/nofile=4096:4096/nofile=$nofile:$nofile/" "$here/podman/containers.conf" > "$run_dir/containers.conf"
        install_file "$run_dir/containers.conf" "$etc/containers.conf" && did "wrote $etc/containers.conf (nofile $nofile)"
        rm -f "$run_dir/containers.conf"
        units=0
        for unit in spacehooks-podman.socket spacehooks-podman.service; do
            render_unit "$unit" && { did "installed $unit_dir/$unit"; units=1; }
        done
        [ $units = 1 ] && systemctl daemon-reload && systemctl restart spacehooks-podman.socket
        systemctl is-enabled --quiet spacehooks-podman.socket 2>/dev/null || { systemctl enable --now spacehooks-podman.socket; did "enabled spacehooks-podman.socket"; }
    else
        out=$(SPACEHOOKS_PODMAN_CONF_DIR="$etc" SPACEHOOKS_PODMAN_LOG="$log_dir/podman.log" \
              "$here/podman/start-service.sh" "$socket")
        case "$out" in *"already answering"*) note "$out" ;; *) did "$out" ;; esac
    fi
fi

# --- configuration and state ----------------------------------------------------------------
step "Configuration $config"
if [ -f "$config" ]; then
    note "kept (remove it to get a fresh one)"
else
    {
        echo "# spacehooks server settings; every key with its default: spacehooks config-doc"
        echo "repo_root: $repo_root"
        echo "podman_url: unix://$socket"
        if [ "$group" != spacehooks ]; then echo "home_group: \"$group\""; fi
        if [ -n "$listen$domain" ]; then
            echo "gateway:"
            [ -n "$listen" ] && echo "  listen: \"$listen\""
            [ -n "$domain" ] && echo "  domain: \"$domain\""
        fi
    } > "$config.new"
    mv "$config.new" "$config"
    did "wrote a new one"
fi
"$venv/bin/spacehooks" config-doc >/dev/null || die "$config is not valid; fix it (spacehooks config-doc lists the keys)"

step "State folder $home"
if [ -d "$home" ]; then note "present"; else mkdir -p "$home"; did "created"; fi

# --- container isolation: user namespaces and the network fence -------------------------
if [ -z "$prefix" ]; then
    step "Container isolation"
    out=$("$here/podman/subids.sh")
    if [ -n "$out" ]; then did "$out"; else note "containers has its subordinate ids"; fi
    "$venv/bin/spacehooks" fence >/dev/null || die "the network fence could not be loaded (see above)"
    note "network fence loaded (spacehooks fence --show prints it)"
fi

# --- git account and repositories ---------------------------------------------------------
step "Repositories $repo_root"
if [ -d "$repo_root" ]; then note "present"; else mkdir -p "$repo_root"; did "created"; fi
install_file "$here/ssh/spacehooks-git-shell" "$bin_dir/spacehooks-git-shell" \
    && { chmod 755 "$bin_dir/spacehooks-git-shell"; did "installed $bin_dir/spacehooks-git-shell"; }
if [ -n "$git_user" ]; then
    if ! id "$git_user" >/dev/null 2>&1; then
        useradd --system --user-group --shell /bin/sh --home-dir "$repo_root" "$git_user"
        usermod -p '*' "$git_user"   # no password, but not locked: SSH keys work
        did "created the account $git_user (home $repo_root)"
    fi
    # pushes (hooks) run as this account: it owns the repositories, never the state folder
    if [ "$(stat -c %U "$repo_root")" != "$git_user" ]; then
        chown "$git_user:" "$repo_root"; did "$repo_root now belongs to $git_user"
    fi
    # an older setup.sh gave the state folder to the git account: take it back
    if [ "$(stat -c %u "$home")" != 0 ]; then
        chown root "$home"; did "$home now belongs to root (the git account only hands it push records)"
    fi
    # serve (root) reads what the hooks (git account) drop into $home/incoming, and the hooks
    # read the build logs and serve's answers, through this group; nothing of it is writable
    # by the group but incoming/ (mode 1730: the git account cannot list or touch others' files)
    if [ -n "$group" ]; then
        getent group "$group" >/dev/null || { groupadd --system "$group"; did "created the group $group"; }
        id -nG "$git_user" | tr ' ' '\n' | grep -qx "$group" \
            || { usermod -a -G "$group" "$git_user"; did "added $git_user to the group $group"; }
        if [ "$(stat -c %G "$home")" != "$group" ] || [ -n "$(find "$home" -maxdepth 0 -perm /022)" ] \
                || [ -z "$(find "$home" -maxdepth 0 -perm -2050)" ]; then
            chgrp "$group" "$home"; chmod g-w,o-w,g+rxs "$home"; did "$home is now group $group, setgid, writable by root only"
        fi
        for db in "$home/state.db" "$home/state.db-wal" "$home/state.db-shm"; do
            if [ -f "$db" ] && [ "$(stat -c %u:%a "$db")" != "0:600" ]; then
                chown root "$db"; chmod 600 "$db"; did "$db is now root's alone"
            fi
        done
        # root opening the store once makes the spool (incoming/, pushes/) with its modes
        if [ ! -d "$home/incoming" ]; then
            "$venv/bin/spacehooks" spaces >/dev/null; did "made $home/incoming for the git account's push records"
        fi
    fi
fi
if [ -n "$git_user" ]; then
    hook_python_runs || die "$git_user cannot run $venv/bin/python ($(readlink -f "$venv/bin/python")): every push would fail; run setup again with --python PATH, a python $git_user may run (default /usr/bin/python3)"
    note "$git_user runs the hooks' interpreter $venv/bin/python"
fi
if find "$repo_root" -maxdepth 3 -name HEAD -path '*.git/HEAD' 2>/dev/null | grep -q .; then
    out=$("$venv/bin/spacehooks" install "$repo_root")
    echo "$out" | sed 's/^/       /'
    # install prints "unchanged" for each repository that needed nothing
    echo "$out" | grep -qv ': unchanged (' && changed=1
else
    note "no repositories yet; create one with  spacehooks create OWNER/NAME"
fi

# new repositories (git init --bare) copy their hooks from this template
out=$("$venv/bin/spacehooks" git-template "$template")
case "$out" in *": unchanged") ;; *) did "$out" ;; esac
if [ -n "$git_user" ]; then
    git_home=$(getent passwd "$git_user" | cut -d: -f6)
    gitconfig=$git_home/.gitconfig
    if [ "$(git config --file "$gitconfig" --get init.templateDir 2>/dev/null)" != "$template" ]; then
        git config --file "$gitconfig" init.templateDir "$template"
        chown "$git_user:" "$gitconfig"
        did "$gitconfig: init.templateDir = $template"
    fi
    note "new repositories get the hooks: spacehooks create OWNER/NAME (or git init --bare as $git_user)"
else
    note "new repositories get the hooks: spacehooks create OWNER/NAME (or git init --bare --template=$template)"
fi

# --- base image --------------------------------------------------------------------------
if [ $base_image = 1 ]; then
    step "Base image"
    out=$("$venv/bin/spacehooks" base-image build 2>&1) || { echo "$out" >&2; die "base image build failed"; }
    echo "$out" | sed 's/^/       /'
    echo "$out" | grep -q "up to date\|registry image" || changed=1
fi

# --- spacehooks serve ---------------------------------------------------------------------
if [ $serve = 1 ]; then
    step "spacehooks serve"
    if [ $systemd = yes ]; then
        unit_new=0
        render_unit spacehooks.service && { did "installed $unit_dir/spacehooks.service"; unit_new=1; systemctl daemon-reload; }
        if ! systemctl is-enabled --quiet spacehooks.service 2>/dev/null; then
            systemctl enable --now spacehooks.service; did "enabled and started spacehooks.service"
        elif [ $unit_new = 1 ] || [ $venv_changed = 1 ] || ! systemctl is-active --quiet spacehooks.service; then
            systemctl restart spacehooks.service; did "restarted spacehooks.service"
        else
            note "running (systemctl status spacehooks)"
        fi
    else
        # No systemd: the units are still written (for reference), serve runs in the background.
        render_unit spacehooks.service && note "wrote $unit_dir/spacehooks.service (not used without systemd)"
        pidfile=$run_dir/serve.pid
        pid=$(cat "$pidfile" 2>/dev/null || true)
        running=0
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "spacehooks serve"; then
            running=1
        fi
        if [ $running = 1 ] && [ $venv_changed = 1 ]; then
            kill "$pid"; i=0
            while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
            running=0; note "stopped the old serve (pid $pid) to run the new code"
        fi
        if [ $running = 1 ]; then
            note "running (pid $pid, log $log_dir/serve.log)"
        else
            setsid nohup "$venv/bin/spacehooks" serve >> "$log_dir/serve.log" 2>&1 < /dev/null &
            pid=$!
            echo "$pid" > "$pidfile"
            sleep 2
            kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log_dir/serve.log" >&2; die "spacehooks serve exited; see $log_dir/serve.log"; }
            did "started (pid $pid, pid file $pidfile, log $log_dir/serve.log)"
        fi
    fi
fi

if [ $changed = 0 ]; then
    step "Nothing to change: spacehooks is set up"
else
    step "spacehooks is set up"
fi
note "config: $config   state: $home   repositories: $repo_root"
