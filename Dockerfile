# A CI runner image with Go and redis-gocache. Runners set GOCACHEPROG=redis-gocache and
# REDIS_URL (from the Helm chart's Secrets, see docs/kubernetes.md) and share one build cache.
#
#   docker build -t runner-go .
#   docker build --build-arg GO_VERSION=1.25 --build-arg PYTHON_VERSION=3.12 -t runner-go .
#
# GOCACHEPROG is stable from Go 1.24 on.
ARG GO_VERSION=1.25
ARG PYTHON_VERSION=3.12

FROM golang:${GO_VERSION}-bookworm AS go

FROM python:${PYTHON_VERSION}-slim-bookworm
# The Go toolchain, as the official image lays it out.
COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:/home/runner/go/bin:$PATH

# git for modules fetched from VCS, ca-certificates for the module proxy and rediss://.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# The helper, in its own virtualenv so the job's Python (if any) is left alone; with the
# exporter's extra, so the same image runs `redis-gocache exporter` (the chart's exporter).
COPY pyproject.toml README.md /src/redis-gocache/
COPY redis_gocache /src/redis-gocache/redis_gocache
RUN python -m venv /opt/redis-gocache \
    && /opt/redis-gocache/bin/pip install --no-cache-dir "/src/redis-gocache[exporter]" \
    && ln -s /opt/redis-gocache/bin/redis-gocache /usr/local/bin/redis-gocache \
    && rm -rf /src/redis-gocache \
    && redis-gocache --help > /dev/null

# A non-root user; runners check out under /workspace, the same path on every runner so
# that cache hits are shared (the package directory is part of Go's action IDs).
RUN useradd --create-home --uid 1000 runner \
    && mkdir /workspace && chown runner:runner /workspace
USER runner
WORKDIR /workspace

ENV GOCACHEPROG=redis-gocache \
    GOTOOLCHAIN=local \
    GOFLAGS=-trimpath
