# shellcheck shell=bash
# Shared set-up steps for scripts/test, scripts/demo and scripts/build-agent-image. Sourced, not run.
# Every step checks first and does nothing when its work is already there.

LB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "$(id -u)" = 0 ]; then
  LB_STATE=${LAUNCHBAY_SETUP_STATE:-/var/lib/launchbay-setup}
else
  LB_STATE=${LAUNCHBAY_SETUP_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/launchbay-setup}
fi
LB_BASE_IMAGE=${LAUNCHBAY_BASE_IMAGE:-launchbay-base:bookworm}
LB_DEBIAN_MIRROR=${LAUNCHBAY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$LB_STATE"

lb_step() { printf '\033[1m==>\033[0m %s\n' "$*"; }
lb_die() { printf 'error: %s\n' "$*" >&2; exit 2; }

# lb_apt PKG...: install the Debian packages that are missing (root only).
lb_apt() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || lb_die "missing Debian packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}"
  lb_step "installing ${missing[*]} (apt-get)"
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n1)" ]; then
    apt-get update -qq || lb_die "apt-get update failed"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || lb_die "apt-get install ${missing[*]} failed"
}

# The Debian packages the test suite needs, with the command each puts on PATH: one list, read by
# lb_test_packages (what to install), lb_check_test_packages (what must answer) and tests/conftest.py.
LB_TEST_PACKAGES_FILE="$LB_ROOT/scripts/test-packages.txt"

# lb_test_packages: the package names of scripts/test-packages.txt, one a line.
lb_test_packages() { awk '!/^[[:space:]]*(#|$)/ { print $1 }' "$LB_TEST_PACKAGES_FILE"; }

# lb_check_test_packages: every command of scripts/test-packages.txt is on PATH; else one line naming
# each package whose command is missing, and exit 2.
lb_check_test_packages() {
  local missing
  missing=$(awk '!/^[[:space:]]*(#|$)/ && $2 != "-" { print $1, $2 }' "$LB_TEST_PACKAGES_FILE" \
    | while read -r pkg cmd; do PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || echo "$pkg (no $cmd)"; done | paste -sd, -)
  [ -z "$missing" ] || lb_die "the test suite needs Debian packages that are not installed: ${missing//,/, }"
}

# lb_venv: .venv with launchbay installed editable, with the test extras.
lb_venv() {
  local venv="$LB_ROOT/.venv" stamp
  stamp=$(sha256sum <"$LB_ROOT/pyproject.toml" | cut -c1-16)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.launchbay-stamp" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  lb_step "creating .venv and installing launchbay[test] (pip)"
  python3 -m venv "$venv" || lb_die "python3 -m venv failed; install python3-venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -e "${LB_ROOT}[test]" 2>&1 | grep -v '^WARNING: Location' || true
  "$venv/bin/python" -c "import launchbay.cli.main" || lb_die "installing launchbay into .venv failed"
  echo "$stamp" > "$venv/.launchbay-stamp"
}

# A wedged engine can leave every API call hanging: no check here waits on it for ever.
lb_docker_ok() { timeout 20 docker info >/dev/null 2>&1; }

# lb_dockerd: make DOCKER_HOST point at a working engine; start a private dockerd if none answers.
# Sets LB_STARTED_DOCKERD=1 when it started one (lb_stop_dockerd stops it).
lb_dockerd() {
  LB_STARTED_DOCKERD=0
  if lb_docker_ok; then return 0; fi
  lb_apt docker.io
  if lb_docker_ok; then return 0; fi
  [ "$(id -u)" = 0 ] || lb_die "no Docker engine answers and only root can start one; start dockerd or set DOCKER_HOST"
  local run="$LB_STATE/run"
  mkdir -p "$run" "$LB_STATE/docker"
  export DOCKER_HOST="unix://$run/docker.sock"
  if lb_docker_ok; then return 0; fi
  lb_step "starting a private dockerd ($DOCKER_HOST)"
  lb_start_private_dockerd && LB_STARTED_DOCKERD=1
}

# lb_start_private_dockerd: start dockerd on $LB_STATE/run/docker.sock (DOCKER_HOST must point there)
# and wait until it answers.
lb_start_private_dockerd() {
  local run="$LB_STATE/run" i
  dockerd --host "$DOCKER_HOST" --data-root "$LB_STATE/docker" --exec-root "$run/exec" \
    --pidfile "$run/dockerd.pid" >>"$LB_STATE/dockerd.log" 2>&1 &
  for i in $(seq 1 60); do
    lb_docker_ok && return 0
    sleep 1
  done
  tail -n 20 "$LB_STATE/dockerd.log" >&2
  lb_die "dockerd did not come up in 60 s (log: $LB_STATE/dockerd.log)"
}

# lb_restart_dockerd: stop the private dockerd this set-up started (and the containerd it runs) and
# start it again on the same socket and data. For an engine that wedged: Debian's Docker 20.10 has been
# seen here to stop answering any API call under several parallel `docker run`.
lb_restart_dockerd() {
  local pid
  pid=$(cat "$LB_STATE/run/dockerd.pid" 2>/dev/null) || lb_die "no private dockerd to restart (no pid file)"
  echo "restarting the private dockerd (pid $pid; log $LB_STATE/dockerd.log)" >&2
  pkill -TERM -P "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  pkill -KILL -P "$pid" 2>/dev/null || true
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$LB_STATE/run/dockerd.pid"
  lb_start_private_dockerd
}

# lb_docker_canary IMAGE: one short container, bounded in time. An engine that answers `docker info`
# but cannot run a container (wedged) is restarted when this set-up started it, else named and refused.
lb_docker_canary() {
  local image=$1
  timeout 90 docker run --rm --network none "$image" true >/dev/null 2>&1 && return 0
  if [ "${LB_STARTED_DOCKERD:-0}" = 1 ]; then
    lb_restart_dockerd
    timeout 90 docker run --rm --network none "$image" true >/dev/null 2>&1 && return 0
  fi
  lb_die "the Docker engine at ${DOCKER_HOST:-unix:///var/run/docker.sock} answers but cannot run a container within 90 s (wedged?); restart it and run again"
}

lb_stop_dockerd() {
  [ "${LB_STARTED_DOCKERD:-0}" = 1 ] || return 0
  local pid
  pid=$(cat "$LB_STATE/run/dockerd.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
}

# lb_bookworm_tarball TARBALL PACKAGES WHAT LOG: a Debian bookworm root (minbase + the comma-separated
# PACKAGES) made with debootstrap and kept as TARBALL, unless TARBALL is there already. WHAT names it in
# the progress line; the whole output goes to LOG. Needs root.
lb_bookworm_tarball() {
  local tarball=$1 packages=$2 what=$3 log=$4 rootfs="$1.rootfs" rc
  [ -s "$tarball" ] && return 0
  lb_apt debootstrap
  rm -rf --one-file-system "$rootfs"
  lb_step "debootstrap: Debian bookworm + $what into a folder (a few minutes; log $log)"
  set +e
  debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$LB_DEBIAN_MIRROR" 2>&1 \
    | tee "$log" | lb_phases debootstrap
  rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" = 0 ] || { tail -n 20 "$log" >&2; lb_die "debootstrap failed (log $log)"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
  rm -rf --one-file-system "$rootfs"
}

# lb_base_image: a Debian bookworm image with python3, PyYAML and pip, built with debootstrap and
# `docker import`, so no container registry is needed. The root filesystem tarball is cached, named
# after the package list, which the image carries in its launchbay.base label: one of ours made
# from another list is imported again; an image of that name that we did not make is used as it is.
LB_BASE_PACKAGES=python3,python3-yaml,python3-pip,python3-setuptools,python3-wheel,ca-certificates
lb_base_image() {
  local stamp label
  stamp=$(echo "bookworm $LB_BASE_PACKAGES" | sha256sum | cut -c1-12)
  if label=$(docker image inspect -f '{{index .Config.Labels "launchbay.base"}}' "$LB_BASE_IMAGE" 2>/dev/null); then
    case $label in "$stamp" | "" | "<no value>") return 0 ;; esac
  fi
  local tarball="$LB_STATE/bookworm-python-$stamp.tar"
  [ "$(id -u)" = 0 ] || [ -s "$tarball" ] || lb_die "building the base image $LB_BASE_IMAGE needs root (debootstrap); run this once as root, or set LAUNCHBAY_BASE_IMAGE to a local image with python3 and pip"
  lb_bookworm_tarball "$tarball" "$LB_BASE_PACKAGES" "python3" "$LB_STATE/debootstrap.log"
  lb_step "docker import -> $LB_BASE_IMAGE"
  docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' -c "LABEL launchbay.base=$stamp" "$tarball" "$LB_BASE_IMAGE" >/dev/null \
    || lb_die "docker import failed"
}

# lb_phases NAME: progress for a long step, read from its output. debootstrap ("I: ..." lines): the
# first line of each kind ("Retrieving", "Extracting", ...), and the current one every 10 s. Docker
# builds: each step ("Step 3/7 : ...", BuildKit's "#5 [2/4] ...").
lb_phases() {
  awk -v name="$1" '
    function show(text) { print "    " name ": " substr(text, 1, 110); fflush(); shown = systime() }
    /^I: / { if (!($2 in seen) || systime() - shown >= 10) { seen[$2] = 1; show(substr($0, 4)) } next }
    /^Step [0-9]+\/[0-9]+ :/ || /^#[0-9]+ \[/ { show($0) }'
}

# lb_docker_build TAG CONTEXT [DOCKER BUILD ARGS...]: docker build with one progress line per step;
# the whole output goes to $LB_STATE/logs/build-<tag>.log and its tail is shown when the build fails.
lb_docker_build() {
  local tag=$1 context=$2; shift 2
  local log="$LB_STATE/logs/build-${tag//[^A-Za-z0-9_.-]/_}.log" rc
  mkdir -p "$LB_STATE/logs"
  lb_step "docker build -> $tag (log $log)"
  set +e
  docker build -t "$tag" "$@" "$context" 2>&1 | tee "$log" | lb_phases build
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" != 0 ]; then
    # The classic builder keeps the container of a failed step ("---> Running in ID"): remove it.
    sed -n 's/.*---> Running in \([0-9a-f]\{12,\}\).*/\1/p' "$log" | xargs -r docker rm -f >/dev/null 2>&1 || true
    tail -n 30 "$log" >&2
    lb_die "docker build of $tag failed (log $log)"
  fi
}

# lb_python_base [pull|no-pull]: sets LB_PYTHON_BASE, the image that the job and agent images build
# FROM. $LAUNCHBAY_BASE_IMAGE when it is set (built with lb_base_image if missing; no pull); else
# python:3.12-slim when it is here or can be pulled; else the local base that lb_base_image builds
# (no registry needed). Once a local base exists, later runs use it without trying the registry.
LB_REGISTRY_BASE=${LAUNCHBAY_REGISTRY_BASE:-python:3.12-slim}
LB_PULL_TIMEOUT_S=${LAUNCHBAY_PULL_TIMEOUT_S:-20}
lb_python_base() {
  local mode=${1:-pull}
  if [ -z "${LAUNCHBAY_BASE_IMAGE:-}" ]; then
    if docker image inspect "$LB_REGISTRY_BASE" >/dev/null 2>&1; then
      LB_PYTHON_BASE=$LB_REGISTRY_BASE
      return 0
    fi
    if [ "$mode" = pull ] && ! docker image inspect "$LB_BASE_IMAGE" >/dev/null 2>&1; then
      if lb_try_pull "$LB_REGISTRY_BASE"; then
        LB_PYTHON_BASE=$LB_REGISTRY_BASE
        return 0
      fi
      echo "    building a local base image instead (debootstrap + docker import; no registry needed)"
    fi
  fi
  lb_base_image
  LB_PYTHON_BASE=$LB_BASE_IMAGE
}

# lb_try_pull IMAGE: docker pull, given up when the registry has not answered within
# $LB_PULL_TIMEOUT_S seconds (a pull that is making progress may take up to 15 minutes).
# A progress line every 10 s; returns 1 when there is no image.
lb_try_pull() {
  local image=$1 log="$LB_STATE/logs/pull.log" pid waited=0
  mkdir -p "$LB_STATE/logs"
  lb_step "docker pull $image (given up if the registry does not answer in $LB_PULL_TIMEOUT_S s)"
  docker pull "$image" >"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if { [ "$waited" -ge "$LB_PULL_TIMEOUT_S" ] && ! grep -q -E 'Pulling|Download|Already exists|Digest' "$log"; } \
        || [ "$waited" -ge 900 ]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      echo "    pull: no image after $waited s; giving up"
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
    if [ $((waited % 10)) = 0 ]; then echo "    pull: $(tail -n 1 "$log" | cut -c1-90) ($waited s)"; fi
  done
  if wait "$pid"; then
    echo "    pull: $(tail -n 1 "$log" | cut -c1-100)"
    return 0
  fi
  echo "    pull: failed: $(tail -n 1 "$log" | cut -c1-140)"
  return 1
}

# lb_runtime_deps: launchbay's runtime dependencies as pip requirements, one a line, from pyproject.toml.
lb_runtime_deps() {
  "$LB_ROOT/.venv/bin/python" - "$LB_ROOT/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["dependencies"]))
PY
}

# lb_build_requires: the [build-system] requirements of pyproject.toml, one a line.
lb_build_requires() {
  "$LB_ROOT/.venv/bin/python" - "$LB_ROOT/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))
PY
}

# What `docker build` of the top-level Dockerfile gets from this tree; .dockerignore lets in the same.
LB_IMAGE_SOURCES=(Dockerfile .dockerignore pyproject.toml README.md launchbay sdk queue_config client cli agent ui sweeps prometheus metric_stream redis_connection)

# lb_image_context DIR: a copy of LB_IMAGE_SOURCES in DIR (without Python caches), a build context
# equal to what `docker build .` at the top of this tree sends.
lb_image_context() {
  local dir=$1
  tar -C "$LB_ROOT" --exclude=__pycache__ --exclude='*.pyc' -cf - "${LB_IMAGE_SOURCES[@]}" | tar -C "$dir" -xf -
}

# lb_wheels IMAGE DIR PKG...: wheels for IMAGE's Python in DIR, so a `docker build` FROM IMAGE can
# `pip install --no-index --find-links` with no network. The downloads are cached in
# $LB_STATE/wheels per Python version, machine and package list (a second build needs no index);
# launchbay itself is built from this tree every time.
lb_wheels() {
  local image=$1 dir=$2; shift 2
  local pyfull arch cache log
  pyfull=$(docker run --rm --entrypoint python3 "$image" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') \
    || lb_die "cannot run python3 in $image"
  docker run --rm --entrypoint python3 "$image" -m pip --version >/dev/null 2>&1 \
    || lb_die "$image has no pip (python3 -m pip), which installs the wheels; use an image that has it"
  arch=$(uname -m)
  mkdir -p "$dir" "$LB_STATE/logs"
  log="$LB_STATE/logs/wheels.log"
  rm -f "$dir"/launchbay-*.whl
  "$LB_ROOT/.venv/bin/pip" wheel -q --disable-pip-version-check --no-deps -w "$dir" "$LB_ROOT" >"$log" 2>&1 \
    || { tail -n 20 "$log" >&2; lb_die "building the launchbay wheel failed (log $log)"; }
  [ "$#" -gt 0 ] || return 0
  cache="$LB_STATE/wheels/py$pyfull-$arch-$(printf '%s\n' "$@" | sha256sum | cut -c1-12)"
  if [ ! -e "$cache/.complete" ]; then
    lb_step "downloading wheels for Python $pyfull ($arch): $*"
    rm -rf "$cache" && mkdir -p "$cache"
    cp "$dir"/launchbay-*.whl "$cache"/
    local want=("$@") missing round
    for round in 1 2 3 4 5; do
      "$LB_ROOT/.venv/bin/pip" download -q --disable-pip-version-check --only-binary=:all: \
        --python-version "$pyfull" --platform "manylinux2014_$arch" --platform "manylinux_2_17_$arch" \
        --platform "manylinux_2_28_$arch" --platform any -d "$cache" "${want[@]}" >"$log" 2>&1 \
        || { tail -n 20 "$log" >&2; lb_die "pip download failed (log $log)"; }
      # pip download judges environment markers by this host's Python, not the image's (pip issue
      # 11664): ask the image's own pip what is still missing, and fetch that too.
      missing=$(docker run --rm -v "$cache:/wheels:ro" --entrypoint python3 "$image" -m pip install --dry-run \
          --break-system-packages --no-index --find-links /wheels "$@" 2>&1 \
        | sed -n 's/.*No matching distribution found for \([^;]*\).*/\1/p' | tr -d ' ' || true)
      [ -n "$missing" ] || break
      [ "$round" -lt 5 ] || lb_die "wheels still missing for $image after 5 rounds: $missing"
      want=("$missing")
    done
    rm -f "$cache"/launchbay-*.whl
    touch "$cache/.complete"
  fi
  cp "$cache"/*.whl "$dir"/
}

# lb_rq2_venv: .venv-rq2, launchbay[test] with rq 2.12 (the oldest rq launchbay supports), for
# scripts/test-rq2. pip resolves the rest as for .venv; rebuilt when pyproject.toml changes.
LB_RQ2_PIN='rq==2.12.*'
lb_rq2_venv() {
  local venv="$LB_ROOT/.venv-rq2" stamp
  stamp=$( (cat "$LB_ROOT/pyproject.toml"; echo "$LB_RQ2_PIN") | sha256sum | cut -c1-16)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.launchbay-stamp" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  lb_step "creating .venv-rq2: launchbay[test] with $LB_RQ2_PIN (pip)"
  rm -rf "$venv"
  python3 -m venv "$venv" || lb_die "python3 -m venv failed; install python3-venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -e "${LB_ROOT}[test]" "$LB_RQ2_PIN" 2>&1 \
    | grep -v '^WARNING: Location' || true
  "$venv/bin/python" -c "import launchbay.cli.main" || lb_die "installing launchbay into .venv-rq2 failed"
  echo "$stamp" > "$venv/.launchbay-stamp"
}

# lb_systemd_image: sets LB_SYSTEMD_IMAGE, a Debian bookworm image whose /sbin/init is systemd, with
# launchbay installed from this tree's wheel (for scripts/check-systemd-unit). Its debootstrap root
# is cached in the state folder like lb_base_image's; the launchbay layer is rebuilt every time.
LB_SYSTEMD_PACKAGES=systemd,systemd-sysv,dbus,python3,python3-pip,ca-certificates,procps,redis-server
LB_SYSTEMD_IMAGE=launchbay-systemd:bookworm
lb_systemd_image() {
  local stamp base tarball context
  stamp=$(echo "bookworm $LB_SYSTEMD_PACKAGES" | sha256sum | cut -c1-12)
  base=launchbay-systemd-base:$stamp
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    tarball="$LB_STATE/bookworm-systemd-$stamp.tar"
    [ "$(id -u)" = 0 ] || [ -s "$tarball" ] || lb_die "building the systemd image needs root (debootstrap)"
    lb_bookworm_tarball "$tarball" "$LB_SYSTEMD_PACKAGES" "systemd" "$LB_STATE/debootstrap-systemd.log"
    docker import -c 'CMD ["/sbin/init"]' -c 'ENV container=docker' "$tarball" "$base" >/dev/null \
      || lb_die "docker import failed"
  fi
  context=$(mktemp -d)
  local deps
  mapfile -t deps < <(lb_runtime_deps)
  lb_wheels "$base" "$context/wheels" "${deps[@]}"
  # No login consoles in a container; the unit under test and Redis are all that has to run.
  printf '%s\n' "FROM $base" 'COPY wheels/ /tmp/wheels/' \
    'RUN python3 -m pip install -q --no-cache-dir --break-system-packages --no-index --find-links /tmp/wheels launchbay \' \
    ' && rm -rf /tmp/wheels && systemctl mask getty@tty1.service console-getty.service redis-server.service' \
    'STOPSIGNAL SIGRTMIN+3' >"$context/Dockerfile"
  lb_docker_build "$LB_SYSTEMD_IMAGE" "$context"
  rm -rf "$context"
}
