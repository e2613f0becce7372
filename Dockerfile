# syntax=docker/dockerfile:1.7
# One image for every Codiv service. Each Kubernetes Deployment picks its program with
# `command:` (codiv-gateway, codiv-scheduler, codiv-publisher, codiv-auth, codiv), so the
# image sets no ENTRYPOINT. Build: docker build -t codiv:0.1.0 .
#
# Stage 1 (builder) resolves nothing: it installs exactly what uv.lock pins (--frozen),
# without dev dependencies, into /app/.venv, with the workspace members as real wheels
# (--no-editable) so the runtime stage needs the virtualenv only, not the sources.
# Stage 2 (runtime) is the slim Python image plus that virtualenv: no uv, no compilers,
# no sources, owned by root and run as an unprivileged numeric user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src

# Third-party dependencies first, in their own layer: it only changes with uv.lock.
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/pyproject.toml
COPY libs/pinterest/pyproject.toml libs/pinterest/pyproject.toml
COPY services/gateway/pyproject.toml services/gateway/pyproject.toml
COPY services/scheduler/pyproject.toml services/scheduler/pyproject.toml
COPY services/publisher/pyproject.toml services/publisher/pyproject.toml
COPY services/auth/pyproject.toml services/auth/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --all-packages --no-install-workspace --no-editable

# Then the workspace members themselves, installed as wheels (migrations included).
COPY libs ./libs
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --all-packages --no-editable

FROM ${PYTHON_IMAGE} AS runtime
ARG CODIV_UID=10001
RUN groupadd --system --gid ${CODIV_UID} codiv \
 && useradd --system --uid ${CODIV_UID} --gid ${CODIV_UID} --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin codiv
# Root owns the code; the service user can read and run it but never change it, and the
# pods run with a read-only root filesystem anyway (bytecode is compiled at build time).
COPY --from=builder --chown=root:root /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    VIRTUAL_ENV=/app/.venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    LOG_FORMAT=json
WORKDIR /app
USER 10001:10001
EXPOSE 8080 8081 8082 8083
# No ENTRYPOINT: the program is the Deployment's `command`. Alone, the image prints help.
CMD ["codiv", "--help"]
