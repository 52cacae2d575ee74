# Images of the operator, the hello-world worker and the HTTP starter: one Python environment,
# three entry points.
#
#   docker build --target operator -t ghcr.io/temporal-mtls-operator/operator:0.1.0 .
#   docker build --target worker   -t ghcr.io/temporal-mtls-operator/worker:0.1.0 .
#   docker build --target starter  -t ghcr.io/temporal-mtls-operator/starter:0.1.0 .
#
# `make images` builds all three without Docker (buildah) and without network access during the
# build: it passes a base built from Debian's packages as BASE_IMAGE and a build context that holds
# only wheelhouse/ (the project's and its dependencies' wheels, built on the host). With the
# repository as context (the case above) the wheels are built here, from PyPI.

# Any Debian-like image with python3 (3.11+) and sh works as a base.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /src
# The repository (filtered by .dockerignore) or make images' context (wheelhouse/ only).
COPY . .
# The environment lives in /opt/tmo: a virtualenv without pip, holding only runtime packages.
# pip runs from its wheel, so the runtime image carries no installer.
RUN set -eu; \
    if ! ls wheelhouse/*.whl >/dev/null 2>&1; then \
        python3 -m pip wheel --no-cache-dir --wheel-dir wheelhouse pip . ; \
    fi; \
    python3 -m venv --without-pip /opt/tmo; \
    pip_wheel=$(ls wheelhouse/pip-*.whl | head -n 1); \
    /opt/tmo/bin/python "$pip_wheel/pip" install --no-cache-dir --no-index --find-links wheelhouse \
        --disable-pip-version-check temporal-mtls-operator; \
    rm -rf /opt/tmo/lib/python3*/site-packages/localkube /opt/tmo/bin/localkube; \
    /opt/tmo/bin/python -m compileall -q -f --invalidation-mode unchecked-hash /opt/tmo/lib >/dev/null
# (localkube, the local-cluster tooling, ships in the same distribution but is not runtime code.
# Bytecode is compiled once, unchecked, so a read-only root never makes Python recompile at start.)

FROM ${BASE_IMAGE} AS runtime
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE_URL=https://github.com/temporal-mtls-operator/temporal-mtls-operator
# A fixed non-root user (the charts run as 1000:1000); written directly so no useradd is needed.
RUN echo 'tmo:x:1000:1000:temporal-mtls-operator:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'tmo:x:1000:' >> /etc/group
COPY --from=build /opt/tmo /opt/tmo
# Read-only root filesystem: no bytecode writes (compiled above), unbuffered logs, HOME outside /.
ENV PATH=/opt/tmo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 1000:1000
WORKDIR /tmp
LABEL org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="temporal-mtls-operator" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

FROM runtime AS worker
LABEL org.opencontainers.image.title="temporal-hello-worker" \
      org.opencontainers.image.description="Hello-world Temporal worker connecting with mTLS"
ENTRYPOINT ["/opt/tmo/bin/python", "-m", "temporal_hello_worker"]

FROM runtime AS starter
LABEL org.opencontainers.image.title="temporal-hello-starter" \
      org.opencontainers.image.description="HTTP starter of hello-world Temporal workflows (port 8000), mTLS client"
EXPOSE 8000
ENTRYPOINT ["/opt/tmo/bin/python", "-m", "temporal_hello_starter"]

# Last, so a plain `docker build .` gives the operator.
FROM runtime AS operator
LABEL org.opencontainers.image.title="temporal-mtls-operator" \
      org.opencontainers.image.description="Kubernetes operator that runs Temporal with mutual TLS"
EXPOSE 8080
ENTRYPOINT ["/opt/tmo/bin/python", "-m", "temporal_mtls_operator"]
