# syntax=docker/dockerfile:1
#
# vllm-chill image: one `deno compile`d binary on a distroless, non-root base.
# The final image has no Deno toolchain and no TypeScript sources: the proxy
# reads its config as JSON (the ConfigMap `vllm-chill-config` rendered by
# `vllm-chill manifests`, mounted at /etc/vllm-chill). See docs/CONFIG_FLOW.md.
#
#   docker build -t ghcr.io/efortin/vllm-chill:0.1.0 .

ARG DENO_VERSION=2.9.6

FROM denoland/deno:${DENO_VERSION} AS builder
WORKDIR /src

# Dependencies first, so a source change does not re-download npm packages.
COPY deno.json deno.lock ./
RUN deno install --frozen

COPY . .
# Type-check and cache the whole graph of the CLI, then compile it. Config
# files are read as JSON/YAML at run time, so nothing dynamic needs --include.
RUN deno cache --frozen main.ts \
  && mkdir -p /out \
  && deno compile -A --frozen --output /out/vllm-chill main.ts \
  && /out/vllm-chill version

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="vllm-chill" \
      org.opencontainers.image.description="OpenAI-compatible proxy that scales vLLM on Kubernetes to zero and back" \
      org.opencontainers.image.source="https://github.com/efortin/vllm-chill"
COPY --from=builder /out/vllm-chill /vllm-chill
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/vllm-chill"]
CMD ["serve", "--config", "/etc/vllm-chill/config.json"]
