# syntax=docker/dockerfile:1
# The poe image: one `poe` command per container (a replica, keygen, bench, client, ledger).
#
#   docker build -t poe:local .
#   docker run --rm poe:local --help
#   docker compose -f deploy/compose.yaml up        # 4 replicas + a bench client (docs/operations.md)
#
# Stage 1 compiles the Cython kernels (gcc; the python image carries the headers) into a
# wheel, together with wheels of every dependency. Stage 2 installs them without a compiler
# or a package index and runs as the unprivileged user `poe` (uid/gid 10001). The package is
# the distribution poe-bft; its command is `poe` (also `poe-bft`). Any supported Python:
# --build-arg PYTHON_VERSION=3.12 or 3.13 (3.13 runs the pyblst BLS backend, README "Install").
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# only what the build reads: metadata, the extension list, the package (kernels' sources)
COPY pyproject.toml setup.py MANIFEST.in README.md LICENSE ./
COPY poe ./poe
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels poe-bft \
    && poe --version
RUN groupadd --system --gid 10001 poe \
    && useradd --system --uid 10001 --gid poe --home-dir /var/lib/poe --no-create-home \
       --shell /usr/sbin/nologin poe \
    && install -d -o poe -g poe -m 0700 /etc/poe /var/lib/poe
# /etc/poe: poe.toml, cluster.toml and this host's secret file(s) (mount them, read-only);
# /var/lib/poe: replica.data_dir (the durable store, <data_dir>/replica-<i>/ledger.db).
# A new named volume mounted on either takes this owner and mode (poe, 0700).
VOLUME ["/var/lib/poe"]
WORKDIR /var/lib/poe
USER poe
# replica i of `poe keygen --base-port 7000`: 7000+2i (replicas), 7000+2i+1 (clients);
# replica.metrics_port = 9400: metrics of replica i on 9400+i (0, the default, serves none)
EXPOSE 7000-7007/tcp 9400-9403/tcp
# Healthy while GET $POE_HEALTH_URL (a replica's http://127.0.0.1:<metrics_port+i>/metrics,
# served from start-up until exit) answers 200. Without POE_HEALTH_URL there is nothing to
# probe (keygen, bench, client, ledger, or a replica without a metrics endpoint): healthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; url = os.environ.get('POE_HEALTH_URL'); sys.exit(0 if not url or u.urlopen(url, timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["poe"]
CMD ["--help"]
