# syntax=docker/dockerfile:1
#
# Alpha Warehouse image: the project installed exactly as the Makefile does
# (a .venv, pip upgraded, then `pip install -c constraints.txt -e '.[dev]'
# --config-settings editable_mode=compat`). Default command: `alpha --help`.
#
#   docker build -t alpha-warehouse .                          # the app (default target)
#   docker build --target prefect-server -t alpha-prefect .    # the Prefect server, see below
#
# docker-compose.yml builds both; see docs/stack.md.

FROM python:3.11-slim AS app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/app/.venv \
    PATH=/app/.venv/bin:$PATH

WORKDIR /app

# An unprivileged user; named volumes mounted on /data/* inherit its ownership.
RUN useradd --create-home --uid 1000 alpha \
    && mkdir -p /data/alpha /data/prefect /shared/data \
    && chown alpha:alpha /data/alpha /data/prefect

COPY . /app

# The Makefile's $(STAMP) recipe, with the venv at /app/.venv.
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv .venv \
    && .venv/bin/python -m pip install --quiet --upgrade pip \
    && .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[dev]' --config-settings editable_mode=compat \
    && touch .venv/.installed \
    && alpha --help > /dev/null

ENV ALPHA_HOME=/data/alpha \
    ALPHA_LEAN_DATA=/shared/data/quantconnect-lean

USER alpha
CMD ["alpha", "--help"]


# The Prefect server for docker-compose.yml: the same image and install.
# (constraints.txt pins SQLAlchemy 2.0.x: with 2.1 the Prefect 3.8 scheduler
# fails on every loop, "Can't evaluate bulk DML statement", see docs/stack.md.)
FROM app AS prefect-server
ENV PREFECT_HOME=/data/prefect \
    PREFECT_SERVER_API_HOST=0.0.0.0 \
    PREFECT_SERVER_API_PORT=4200 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false
EXPOSE 4200
CMD ["prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200"]


# Default target (last stage): the app image, unchanged.
FROM app AS worker
