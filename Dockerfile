# One image per service, each a target of this file:
#
#   docker build --target auth_service -t video2mp3/auth_service:0.1.0 .
#   docker build --target gateway      -t video2mp3/gateway:0.1.0 .
#   docker build --target converter    -t video2mp3/converter:0.1.0 .
#   docker build --target notification -t video2mp3/notification:0.1.0 .
#
# (docker-compose.yml and the README's Kubernetes section build them the same way.)
# Each image holds the shared package, its own service package and only the
# dependencies of that service's extra in pyproject.toml, as locked in uv.lock. It
# runs as uid 10001 and works with a read-only root filesystem given a writable /tmp
# (and, for the converter, a writable CONVERTER_WORKDIR).

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ---------------------------------------------------------------- build stages
# A venv with exactly the locked dependencies of one extra of pyproject.toml (never
# "all" or a dependency group), each checked against its hash in uv.lock. uv (pinned by
# hash in requirements/uv.txt) only exports the lock; pip installs it. The project's own
# code is copied into the final image as it is, with its data files (templates, static
# files, OpenAPI documents).
FROM base AS builder
WORKDIR /src
COPY requirements/uv.txt pyproject.toml uv.lock ./
RUN pip install --require-hashes -r uv.txt \
    && python -m venv /opt/venv

FROM builder AS build-auth_service
RUN uv export --locked --no-emit-project --no-default-groups --extra auth -o requirements.txt \
    && /opt/venv/bin/pip install --no-deps --require-hashes -r requirements.txt

FROM builder AS build-gateway
RUN uv export --locked --no-emit-project --no-default-groups --extra gateway -o requirements.txt \
    && /opt/venv/bin/pip install --no-deps --require-hashes -r requirements.txt

FROM builder AS build-converter
RUN uv export --locked --no-emit-project --no-default-groups --extra converter -o requirements.txt \
    && /opt/venv/bin/pip install --no-deps --require-hashes -r requirements.txt

FROM builder AS build-notification
RUN uv export --locked --no-emit-project --no-default-groups --extra notification -o requirements.txt \
    && /opt/venv/bin/pip install --no-deps --require-hashes -r requirements.txt

# -------------------------------------------------------------- runtime stages
FROM base AS runtime
RUN groupadd --system --gid 10001 video2mp3 \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin video2mp3
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app
WORKDIR /app
COPY common/ common/

FROM runtime AS auth_service
COPY --from=build-auth_service /opt/venv /opt/venv
COPY auth_service/ auth_service/
# Where `docker compose` keeps the generated signing key (a named volume starts
# with this directory's owner and mode).
RUN mkdir -p /var/lib/video2mp3/jwt && chown 10001:10001 /var/lib/video2mp3/jwt \
    && chmod 0700 /var/lib/video2mp3/jwt
ENV AUTH_PORT=5000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
USER 10001:10001
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/ready', timeout=4)"]
CMD ["python", "-m", "gunicorn", "-c", "python:auth_service.gunicorn_conf", "auth_service:create_app()"]

FROM runtime AS gateway
COPY --from=build-gateway /opt/venv /opt/venv
COPY gateway/ gateway/
ENV GATEWAY_PORT=8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]
CMD ["python", "-m", "gunicorn", "-c", "python:gateway.gunicorn_conf", "gateway:create_app()"]

FROM runtime AS converter
COPY --from=build-converter /opt/venv /opt/venv
COPY converter/ converter/
# The spool for videos and MP3s being converted: a volume in compose, an emptyDir in k8s.
RUN mkdir -p /work && chown 10001:10001 /work && chmod 0700 /work
ENV CONVERTER_PORT=9101 \
    CONVERTER_WORKDIR=/work
USER 10001:10001
EXPOSE 9101
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9101/ready', timeout=4)"]
CMD ["python", "-m", "converter"]

FROM runtime AS notification
COPY --from=build-notification /opt/venv /opt/venv
COPY notification/ notification/
ENV NOTIFICATION_PORT=9102
USER 10001:10001
EXPOSE 9102
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9102/ready', timeout=4)"]
CMD ["python", "-m", "notification"]
