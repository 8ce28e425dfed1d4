# Shared set-up steps for scripts/test and scripts/demo. Sourced, not run.
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

# lb_venv: .venv with launchbay installed editable, with the test extras.
lb_venv() {
  local venv="$LB_ROOT/.venv" stamp
  stamp=$(cat "$LB_ROOT/pyproject.toml" | sha256sum | cut -c1-16)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.launchbay-stamp" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  lb_step "creating .venv and installing launchbay[test] (pip)"
  python3 -m venv "$venv" || lb_die "python3 -m venv failed; install python3-venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -e "$LB_ROOT[test]" 2>&1 | grep -v '^WARNING: Location' || true
  "$venv/bin/python" -c "import launchbay.cli.main" || lb_die "installing launchbay into .venv failed"
  echo "$stamp" > "$venv/.launchbay-stamp"
}

lb_docker_ok() { docker info >/dev/null 2>&1; }

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
  dockerd --host "$DOCKER_HOST" --data-root "$LB_STATE/docker" --exec-root "$run/exec" \
    --pidfile "$run/dockerd.pid" >"$LB_STATE/dockerd.log" 2>&1 &
  local i
  for i in $(seq 1 60); do
    lb_docker_ok && { LB_STARTED_DOCKERD=1; return 0; }
    sleep 1
  done
  tail -n 20 "$LB_STATE/dockerd.log" >&2
  lb_die "dockerd did not come up in 60 s (log: $LB_STATE/dockerd.log)"
}

lb_stop_dockerd() {
  [ "${LB_STARTED_DOCKERD:-0}" = 1 ] || return 0
  local pid
  pid=$(cat "$LB_STATE/run/dockerd.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
}

# lb_base_image: a Debian bookworm image with python3, PyYAML and pip, built with debootstrap and
# `docker import`, so no container registry is needed. The root filesystem tarball is cached.
lb_base_image() {
  if docker image inspect "$LB_BASE_IMAGE" >/dev/null 2>&1; then return 0; fi
  local tarball="$LB_STATE/bookworm-python.tar"
  if [ ! -s "$tarball" ]; then
    lb_apt debootstrap
    local rootfs="$LB_STATE/rootfs.tmp"
    rm -rf "$rootfs"
    lb_step "debootstrap: Debian bookworm + python3 into a folder (about a minute; log $LB_STATE/debootstrap.log)"
    debootstrap --variant=minbase --include=python3,python3-yaml,python3-pip,python3-setuptools,python3-wheel,ca-certificates \
      bookworm "$rootfs" "$LB_DEBIAN_MIRROR" >"$LB_STATE/debootstrap.log" 2>&1 \
      || { tail -n 20 "$LB_STATE/debootstrap.log" >&2; lb_die "debootstrap failed"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
  lb_step "docker import -> $LB_BASE_IMAGE"
  docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' "$tarball" "$LB_BASE_IMAGE" >/dev/null \
    || lb_die "docker import failed"
}
