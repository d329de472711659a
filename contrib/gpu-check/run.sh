#!/bin/bash
# GPU host check: runs the project's own `spacehooks gpu cdi-generate`, then a CUDA program in
# a podman container given nvidia.com/gpu=N through the generated spec, and once without it.
# Needs the carry folder from shared/gpu/make-carry.sh (podman, runc, conmon, busybox) and nvcc.
# See README.md beside this file.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

usage() {
    echo "usage: run.sh [--carry DIR] [--out DIR] [--python PY] [--device N] [--dev-root DIR] [--driver-root DIR] [--keep-spec]"
    echo "  --carry DIR   folder made by make-carry.sh (default: $repo/.gpucarry)"
    echo "  --out DIR     work folder, wiped first (default: /tmp/spacehooks-gpucheck)"
    echo "  --python PY   Python 3.9+ to run spacehooks with (default: python3)"
    echo "  --device N    GPU index to give the container (default: 0)"
    echo "  --dev-root DIR  folder whose dev/ holds the nvidia device nodes (default: /)"
    echo "  --driver-root DIR  where the driver's libraries and nvidia-smi are installed, seen as / (default: /)"
    echo "  --keep-spec   leave the generated spec in /etc/cdi afterwards"
}
fail() { echo "run.sh: $1" >&2; [ -n "${2:-}" ] && echo "  fix: $2" >&2; exit 2; }

carry=$repo/.gpucarry out=/tmp/spacehooks-gpucheck python=python3 device=0 keep=0 dev_root=/ driver_root=/
while [ $# -gt 0 ]; do
    case $1 in
        --carry|--out|--python|--device|--dev-root|--driver-root)
            [ $# -ge 2 ] || fail "$1 needs a value" "see run.sh --help"
            case $1 in --carry) carry=$2;; --out) out=$2;; --python) python=$2;; --device) device=$2;;
                       --dev-root) dev_root=$2;; --driver-root) driver_root=$2;; esac
            shift 2;;
        --keep-spec) keep=1; shift;;
        -h|--help) usage; exit 0;;
        *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2;;
    esac
done
case $device in ''|*[!0-9]*) fail "--device must be a GPU index such as 0, found '$device'";; esac
case $out in /|'') fail "--out must be a folder of its own, found '$out'";; esac

[ -x "$carry/bin/podman" ] || fail "no podman in $carry/bin" \
    "make the carry folder on a Debian 12 machine: shared/gpu/make-carry.sh $carry"
dev=${dev_root%/}/dev
ls "$dev"/nvidia[0-9]* >/dev/null 2>&1 || fail "no $dev/nvidia[0-9]* device node: this is not a GPU host" \
    "run it on the GPU host, with the NVIDIA driver loaded"
[ -e "$dev/nvidia$device" ] || fail "no $dev/nvidia$device" "pick an index from: $(ls "$dev"/nvidia[0-9]* | tr '\n' ' ')"
PATH=$PATH:/usr/local/cuda/bin
command -v nvcc >/dev/null || fail "nvcc not found" "put CUDA's bin folder on PATH"
[ "$(id -u)" = 0 ] || fail "must run as root (podman rootful, /etc/cdi)"

export PATH=$carry/bin:$PATH LD_LIBRARY_PATH=$carry/lib
rm -rf "$out"; mkdir -p "$out/home" /etc/containers /etc/cdi
[ -f /etc/containers/policy.json ] || cp "$carry/etc/containers/policy.json" /etc/containers/
hard=$(ulimit -Hn); [ "$hard" = unlimited ] && hard=1048576
P=(podman --storage-driver vfs --root "$out/pstore" --runroot "$out/prun" --runtime "$carry/bin/runc"
   --conmon "$carry/bin/conmon" --cgroup-manager cgroupfs)
# options must come before --rootfs DIR: what follows DIR is the command
RUN=(run --rm --network none --ulimit "nofile=$hard:$hard" --ulimit nproc=4096:4096)
spec=/etc/cdi/spacehooks-nvidia.json

# spacehooks reads the Podman version from a service, as on a real server
sock=$out/podman.sock
"${P[@]}" system service --time=0 "unix://$sock" >"$out/service.log" 2>&1 &
svc=$!
cleanup() { kill "$svc" 2>/dev/null; [ "$keep" = 1 ] || rm -f "$spec"; }
trap cleanup EXIT
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.2; done
[ -S "$sock" ] || { cat "$out/service.log"; fail "podman service did not start"; }
printf 'podman_url: unix://%s\n' "$sock" > "$out/config.yaml"
export SPACEHOOKS_CONFIG=$out/config.yaml SPACEHOOKS_HOME=$out/home

pypath=$repo
if ! "$python" -c 'import click, yaml' 2>/dev/null; then
    ls "$carry"/wheels/*.whl >/dev/null 2>&1 || fail "$python lacks click and pyyaml" \
        "on the Debian machine: pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d $carry/wheels click pyyaml"
    "$python" -c 'import sys, zipfile, glob
for w in glob.glob(sys.argv[1] + "/*.whl"): zipfile.ZipFile(w).extractall(sys.argv[2])' "$carry/wheels" "$out/py"
    pypath=$repo:$out/py
fi
spacehooks() { PYTHONPATH=$pypath "$python" -m spacehooks "$@"; }

echo "== host: $(uname -r), $(ls "$dev"/nvidia* | tr '\n' ' ')"
echo "== $(podman --version), runc $("$carry/bin/runc" --version | head -1)"
echo "== spacehooks gpu cdi-generate"
spacehooks gpu cdi-generate --dev-root "$dev_root" --driver-root "$driver_root" || fail "cdi-generate failed (above)"
echo "== spacehooks gpu list"
spacehooks gpu list
echo "== spacehooks hardware list (GPU flavors)"
spacehooks hardware list | grep -E '^flavor|nvidia' | head -4

echo "== building the container's root folder (busybox + gpucheck)"
rootfs=$out/rootfs
mkdir -p "$rootfs"/{bin,tmp,dev,proc,sys,etc}
cp "$carry/bin/busybox" "$rootfs/bin/"
for applet in sh ls cat env; do ln -sf busybox "$rootfs/bin/$applet"; done
nvcc -O2 -o "$rootfs/gpucheck" "$here/gpucheck.cu" || fail "nvcc failed"
libc=$(ldd "$rootfs/gpucheck" | awk '/libc\.so/ {print $3}')
libs=$(ldd "$rootfs/gpucheck" | awk '/=>/ && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
for extra in libpthread.so.0 libdl.so.2 librt.so.1; do  # the driver's libraries need them
    [ -e "$(dirname "$libc")/$extra" ] && libs="$libs $(dirname "$libc")/$extra"
done
for lib in $libs; do mkdir -p "$rootfs$(dirname "$lib")"; cp -L "$lib" "$rootfs$lib"; done
echo "   $(echo $libs | wc -w) libraries copied"

echo "== container WITH --device nvidia.com/gpu=$device"
"${P[@]}" "${RUN[@]}" --device "nvidia.com/gpu=$device" --rootfs "$rootfs" /gpucheck
rc_with=$?
"${P[@]}" "${RUN[@]}" --device "nvidia.com/gpu=$device" --rootfs "$rootfs" /bin/sh -c \
    'echo "   /dev: $(ls /dev | tr "\n" " ")"; echo "   LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; /usr/local/nvidia/bin/nvidia-smi -L 2>/dev/null || nvidia-smi -L'
echo "== container WITHOUT the device"
"${P[@]}" "${RUN[@]}" --rootfs "$rootfs" /gpucheck
rc_without=$?

echo "== result"
if [ $rc_with = 0 ] && [ $rc_without != 0 ]; then
    echo "PASS: the CUDA kernel ran with nvidia.com/gpu=$device from the spacehooks spec, and no GPU without it"
    exit 0
fi
echo "FAIL: with the device exit $rc_with (want 0), without it exit $rc_without (want non-zero)"
exit 1
