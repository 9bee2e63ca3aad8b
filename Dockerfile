# provider-gateway container image (the distribution `provider-gateway-server`; the command stays
# `provider-gateway`).
#
#   docker build -t provider-gateway .
#   docker run --rm -p 50051:50051 provider-gateway                       # mock provider only
#   docker run --rm -p 50051:50051 -v "$PWD/gateway.toml:/etc/provider-gateway/gateway.toml:ro" \
#     -e OPENAI_API_KEY provider-gateway serve --config /etc/provider-gateway/gateway.toml --host 0.0.0.0
#
# Stage 1 generates the protobuf code from proto/ (the committed generated files are excluded by
# .dockerignore, so the image never depends on them) and builds a virtualenv with the locked
# runtime dependencies and the gateway. Stage 2 is the slim runtime: that virtualenv, a non-root
# user, no compilers, no uv, no grpcio-tools.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Keep in step with scripts/setup.sh and uv.lock (tests/test_dockerfile.py checks both).
ARG UV_VERSION=0.13.9
ARG GRPCIO_TOOLS_VERSION=1.85.1
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
    && uv venv /opt/protoc \
    && uv pip install --no-cache --python /opt/protoc "grpcio-tools==${GRPCIO_TOOLS_VERSION}"
WORKDIR /src
# Dependencies first, so that a code change does not reinstall them.
COPY pyproject.toml uv.lock README.md ./
COPY clients/python/pyproject.toml clients/python/pyproject.toml
RUN uv sync --frozen --no-dev --no-install-workspace --no-cache
COPY proto proto
COPY scripts/gen_proto.py scripts/gen_proto.py
COPY service service
RUN /opt/protoc/bin/python scripts/gen_proto.py \
    && uv sync --frozen --no-dev --no-editable --no-cache \
    && /src/.venv/bin/python -c "import provider_gateway.v1.provider_service_pb2_grpc"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="provider-gateway" \
      org.opencontainers.image.description="AI providers behind one typed, streaming gRPC API" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --create-home --home-dir /home/gateway \
       --shell /usr/sbin/nologin gateway
# The virtualenv keeps its build path, so its scripts' shebangs stay valid.
COPY --from=build /src/.venv /src/.venv
ENV PATH=/src/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /home/gateway
EXPOSE 50051
# The standard gRPC health service, entry of the gateway's API: NOT_SERVING while draining or
# when no provider is healthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["provider-gateway", "health", "--target", "127.0.0.1:50051", "--timeout", "3", "--service", "provider_gateway.v1.ProviderService"]
ENTRYPOINT ["provider-gateway"]
# 0.0.0.0: reachable from outside the container (the gateway's own default is loopback only).
# --workers auto: one server process per usable core (the container's CPU limit counts), sharing the port.
CMD ["serve", "--host", "0.0.0.0", "--port", "50051", "--workers", "auto"]
