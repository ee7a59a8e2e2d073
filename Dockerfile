# Small non-root image; the default command runs the bot (console monitor when no Discord token is set).
# Layers go from what changes least to what changes most: the hash-locked runtime dependencies install before
# any code is copied, so a change in bot/ or cogs/ rebuilds only the project wheel and its install, and the
# build arguments of the labels come last, so a new commit does not reinstall anything either.
# `make image` passes VERSION, REVISION and SOURCE; pin PYTHON_IMAGE to a digest for a byte-identical base.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The project as a wheel. setuptools comes from its own lock, not from whatever the base image ships.
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY requirements/build.txt requirements/
RUN pip install --require-hashes -r requirements/build.txt
COPY pyproject.toml ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /dist .

FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --home /app pgrstops \
 && mkdir -p /app/data && chown pgrstops /app/data
# Runtime dependencies only (the test tools are in requirements/test.txt, never here); every file is
# checked against its hash and an unpinned dependency fails the build.
COPY requirements/runtime.txt /tmp/requirements/
RUN pip install --require-hashes -r /tmp/requirements/runtime.txt && rm -rf /tmp/requirements
# The code: only this and what follows are rebuilt after a change in bot/ or cogs/.
COPY --from=wheel /dist/ /tmp/dist/
RUN pip install --no-deps /tmp/dist/*.whl && pip check && rm -rf /tmp/dist
COPY config.example.yaml /app/config.example.yaml
# The SQLite store must survive the container: set incidents.store_path: /app/data/pgrst-ops.db and mount it.
VOLUME ["/app/data"]
WORKDIR /app/data
ENV PGRST_OPS_CONFIG=/app/config.yaml
# /healthz on the metrics server (config `metrics: {host, port}`, default port 9464) answers while the event
# loop does. No curl in slim images: urllib raises on a refused connection or a non-2xx status, exit 1.
# Set PGRST_OPS_HEALTH_URL when metrics.port is changed.
ENV PGRST_OPS_HEALTH_URL=http://127.0.0.1:9464/healthz
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['PGRST_OPS_HEALTH_URL'], timeout=4)"]
USER pgrstops
ENTRYPOINT ["python", "-m", "bot"]

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=
ARG LICENSES=NOASSERTION
LABEL org.opencontainers.image.title="pgrst-ops" \
      org.opencontainers.image.description="Chat-ops bot and CLI that keeps PostgREST / Supabase schema caches healthy" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="${LICENSES}"
