# syntax=docker/dockerfile:1
#
# One image per program, from one build of the module:
#
#   docker build --target sessionsvc --build-arg VERSION=0.1.0 -t ghcr.io/sessionmon/sessionsvc:0.1.0 .
#   docker build --target detector   -t ghcr.io/sessionmon/detector:0.1.0 .
#   docker build --target alerter    -t ghcr.io/sessionmon/alerter:0.1.0 .
#   docker build --target auditor    -t ghcr.io/sessionmon/auditor:0.1.0 .
#
# Static binaries (CGO_ENABLED=0) on distroless static, as the nonroot user
# (65532); no shell, no package manager. deploy/k8s runs them with a
# read-only root filesystem. Multi-arch: docker buildx build --platform
# linux/amd64,linux/arm64 (the build runs natively and cross-compiles).

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG TARGETOS TARGETARCH
# The version sessionmon_build_info and -version report (docker build
# --build-arg VERSION=v0.1.0); the VCS revision comes from .git when the
# build context has it.
ARG VERSION=dev
# All four at once: they share most of their packages, and each target
# below takes its own binary from this one stage.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -ldflags="-s -w -buildid= -X github.com/sessionmon/sessionmon/internal/buildinfo.version=${VERSION}" -o /out/ \
      ./cmd/sessionsvc ./cmd/detector ./cmd/alerter ./cmd/auditor

FROM gcr.io/distroless/static-debian13:nonroot AS runtime
LABEL org.opencontainers.image.source="https://github.com/sessionmon/sessionmon"
USER 65532:65532

# The session service: HTTP API, /metrics, /healthz, /readyz on
# SESSIONSVC_LISTEN (set it to 0.0.0.0:8080 in a container).
FROM runtime AS sessionsvc
COPY --from=build /out/sessionsvc /usr/local/bin/sessionsvc
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sessionsvc"]

# The detector: `detector run` (the default) or `detector replay`.
FROM runtime AS detector
COPY --from=build /out/detector /usr/local/bin/detector
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/detector"]
CMD ["run"]

# The alerter and its review console.
FROM runtime AS alerter
COPY --from=build /out/alerter /usr/local/bin/alerter
EXPOSE 8090
ENTRYPOINT ["/usr/local/bin/alerter"]

# The audit writer: `auditor serve` (the default), or its compliance
# commands (migrate, export, check-endings, events).
FROM runtime AS auditor
COPY --from=build /out/auditor /usr/local/bin/auditor
EXPOSE 8082
ENTRYPOINT ["/usr/local/bin/auditor"]
CMD ["serve"]
