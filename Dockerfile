# The launchbay agent's image: `launchbay agent` in a container, starting jobs as sibling containers
# on the host's Docker engine.
#
#   docker build -t launchbay-agent .     # the first stage builds launchbay's wheel (and its dependencies' from PyPI)
#   scripts/build-agent-image             # the same image on a host without a registry: the script puts
#                                         # the dependency wheels in the build context's wheels/ folder
#
# Build arguments: BASE_IMAGE (default python:3.12-slim; any image with python3 >= 3.9 and pip).
# A wheels/ folder in the build context (.dockerignore lets only it and the sources in) makes the
# build use those wheels and no index: `pip download -d wheels launchbay's dependencies setuptools
# wheel` on a machine that has the index, then `docker build .` on one that does not.
#
#   sudo install -d -o 10001 -g 10001 /var/lib/launchbay
#   docker run -d --name launchbay-agent --restart unless-stopped --hostname "$(hostname)" \
#     -v /var/run/docker.sock:/var/run/docker.sock --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -v /var/lib/launchbay:/var/lib/launchbay \
#     -e LAUNCHBAY_REDIS_URL=redis://:PASSWORD@redis-host:6379/0 \
#     launchbay-agent -q gpu
#
# - The state folder has the same path inside and outside: the agent asks the host's engine to
#   bind-mount each job's payload folder from it. It must be writable by uid 10001.
# - --hostname: the agent id (and the host recorded on jobs) defaults to the host name; the same id
#   after a restart lets the new container adopt the jobs the old one left running.
# - Non-root: the agent runs as user `launchbay` (uid 10001); --group-add gives it the socket's group
#   (`docker`, or gid 0 where the socket is root:root 660, which works too). A socket only its owner
#   may use (mode 600, e.g. rootless Docker) needs --user "$(stat -c %u SOCKET)".
# - Settings: give them as env (LAUNCHBAY_REDIS_URL, LAUNCHBAY_AGENT_QUEUES=gpu,cpu, ...) rather than
#   flags where you can: the HEALTHCHECK below runs without the container's flags.
# - NVIDIA GPUs (host with the NVIDIA Container Toolkit): add `--gpus all`. That puts nvidia-smi in the
#   container so the agent sees the GPUs; the agent uses none itself, and jobs get theirs from the
#   engine as the queue's docker.gpu_mode says. Without the toolkit, mount the host's nvidia-smi and
#   libnvidia-ml.so.1 and pass --device /dev/nvidiactl --device /dev/nvidia0 (one per GPU).
# - Stop: `docker stop` sends SIGTERM and kills the agent 10 s later; job containers keep running for
#   the next start to adopt. To drain instead (wait for the running jobs, as the systemd unit does),
#   add `-e LAUNCHBAY_AGENT_DRAIN=true --stop-timeout N`, N the longest max_runtime of its queues + 70 s.
# - HEALTHCHECK: `launchbay agent --check` exits 1 when Redis or the Docker engine does not answer,
#   so `docker ps` shows the container unhealthy.
ARG BASE_IMAGE=python:3.12-slim

# -- stage 1: launchbay's wheel, built from these sources, and the wheels of its dependencies ----------
FROM ${BASE_IMAGE} AS wheels
WORKDIR /src
COPY . /src/
RUN if ls /src/wheels/*.whl >/dev/null 2>&1; then set -- --no-index --find-links /src/wheels; fi \
 && python3 -m pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels "$@" /src \
 && rm -rf /src/build

# -- stage 2: the agent ------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
COPY --from=wheels /wheels/ /tmp/wheels/
RUN python3 -m pip install --no-cache-dir --disable-pip-version-check --break-system-packages --no-index \
      --find-links /tmp/wheels launchbay \
 && rm -rf /tmp/wheels \
 && groupadd --system --gid 10001 launchbay \
 && useradd --system --uid 10001 --gid launchbay --home-dir /var/lib/launchbay --shell /usr/sbin/nologin launchbay \
 && install -d -o launchbay -g launchbay /var/lib/launchbay

USER launchbay
ENV LAUNCHBAY_AGENT_STATE_DIR=/var/lib/launchbay \
    PYTHONUNBUFFERED=1
HEALTHCHECK --interval=30s --timeout=15s --start-period=10s --retries=3 CMD ["launchbay", "agent", "--check"]
ENTRYPOINT ["launchbay", "agent"]
