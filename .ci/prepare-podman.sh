#!/bin/sh
# Prepare Podman for the test suite: start the REST service and make the python 3.11 base
# image (loaded from base_image.cache_dir when a saved copy matches the recipe, else built
# from the Debian mirror). Installs nothing: .ci/run installs the Debian packages first.
# Keep base_image.cache_dir (default /var/cache/spacehooks/images) between CI runs to make
# this take seconds instead of minutes.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
now() { date +%s; }
t0=$(now)
"$repo/contrib/podman/start-service.sh"
t1=$(now)
echo "prepare-podman: service ready in $((t1 - t0))s"
"$repo/.venv/bin/spacehooks" base-image build --python 3.11
t2=$(now)
echo "prepare-podman: base image ready in $((t2 - t1))s (total $((t2 - t0))s)"
