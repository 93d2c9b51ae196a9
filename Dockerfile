# The bot stack in one container: `supervisor` is PID 1 and runs the bot, hookd and statusd (and
# gatewayd, which holds the bot's Discord session, when GATEWAYD=true: docs/GATEWAY.md).
#
#   docker build -t bot-stack .                                       # small: no Rust toolchain
#   docker build -t bot-stack --build-arg BASE=rust:1-bookworm .      # git-push deploys rebuild the bot
#   docker build -t bot-stack:small --target small .                  # prebuilt releases only (19 MB)
#
# For a Pi, built on an x86 machine (the build stage cross-compiles; rustc is not emulated):
#   docker buildx build --platform linux/arm64 -t bot-stack .          # BuildKit
#   docker build --build-arg TARGETARCH=arm64 --build-arg BASE=arm64v8/debian:bookworm-slim -t bot-stack .
# (`arm` and arm32v7/debian for Pi OS 32-bit). Built on the Pi itself, it compiles natively.
#
# Plain Dockerfile syntax on purpose (no `# syntax=`, heredocs or digest pins): it builds with the
# classic builder and offline mirrors too. See docs/CONTAINER.md for sizes and build times.

ARG BASE=debian:bookworm-slim
# The machine that compiles: BuildKit sets it; for the classic builder "linux" is its own.
ARG BUILDPLATFORM=linux

# ---- build: the workspace, with the dependencies in their own cached layer ----
FROM --platform=$BUILDPLATFORM rust:1-bookworm AS build
# The image's architecture (see deploy/container/compile): empty means the build machine's.
ARG TARGETARCH=""
# Empty: the release profile as Cargo.toml has it (fat LTO). `false` builds without LTO, with 16
# codegen units: larger, slower binaries, built in about half the time (the ARM image's test).
ARG RELEASE_LTO=""
WORKDIR /src
# Extra CA certificates (PEM) for a build behind an intercepting proxy; used only in this stage.
ARG EXTRA_CA_CERTS=""
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
      printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/build-extra.crt \
      && update-ca-certificates >/dev/null; \
    fi
COPY Cargo.toml Cargo.lock ./
COPY supervisor/Cargo.toml supervisor/
COPY supervisor/proto/Cargo.toml supervisor/proto/
COPY supervised/Cargo.toml supervised/
COPY hookd/Cargo.toml hookd/
COPY statusd/Cargo.toml statusd/
COPY gatewayd/Cargo.toml gatewayd/
COPY bot/Cargo.toml bot/
COPY testkit/Cargo.toml testkit/
COPY scripts/cross scripts/cross
COPY deploy/container/compile /usr/local/bin/compile
# Empty crates with the real manifests: this layer compiles only the dependencies, and is reused
# until Cargo.toml or Cargo.lock change.
RUN for c in supervisor supervisor/proto supervised hookd statusd gatewayd bot testkit; do \
      mkdir -p $c/src && echo '' > $c/src/lib.rs && echo 'fn main() {}' > $c/src/main.rs; \
    done \
    && compile \
    && rm -rf /out supervisor/src supervisor/proto/src supervised/src hookd/src statusd/src gatewayd/src bot/src testkit/src
COPY supervisor supervisor
COPY supervised supervised
COPY testkit testkit
COPY hookd hookd
COPY statusd statusd
COPY gatewayd gatewayd
COPY bot bot
# The commit the bot reports in /version (the build context has no .git).
ARG BOT_BUILD_COMMIT=unknown
RUN find supervisor supervised hookd statusd gatewayd bot testkit -name '*.rs' -exec touch {} + \
    && BOT_BUILD_COMMIT="$BOT_BUILD_COMMIT" compile

# ---- runtime ----
FROM ${BASE} AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system control \
    && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --groups control hookd \
    && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --groups control statusd \
    && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --groups control bot \
    && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin gatewayd \
    && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin builder \
    && mkdir -p /app/data
COPY --from=build /out/ /usr/local/bin/
# Called by these names, the supervisor takes supervisord's and supervisorctl's command lines:
# an image that ran supervisord switches by changing its base, not its CMD or health check.
RUN ln -s supervisor /usr/local/bin/supervisord && ln -s supervisor /usr/local/bin/supervisorctl
COPY deploy/container/bot-current /usr/local/bin/bot-current
COPY deploy/container/build-release /usr/local/lib/bot/build-release
COPY deploy/container/supervisor.toml /app/supervisor.toml
WORKDIR /app
ENV SUPERVISOR_CONFIG=/app/supervisor.toml
VOLUME /app/data
# hookd (webhooks) and statusd (status API); nginx in front terminates TLS.
EXPOSE 5000 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/statusd", "health"]
# Exec form: supervisor is PID 1 and gets docker stop's SIGTERM itself.
ENTRYPOINT ["/usr/local/bin/supervisor", "run", "-c", "/app/supervisor.toml"]

# ---- small: the image that is pulled, for prebuilt releases (`--target small`) ----
# No toolchain, no git, no shell, no package manager: the supervisor (static), hookd and
# statusd, the C library they and a bot release link against, CA certificates, and the stack's
# users. The bot itself is not in it: its releases are built and signed by the forge's CI and
# downloaded by deploys (deploy/container/prebuilt.toml, artifact_url).
FROM runtime AS small-files
RUN mkdir -p /small/etc/ssl/certs /small/app/data \
    && cp /etc/passwd /etc/group /small/etc/ \
    && cp /etc/ssl/certs/ca-certificates.crt /small/etc/ssl/certs/ \
    && for lib in $(ldd /usr/local/bin/hookd /usr/local/bin/statusd /usr/local/bin/gatewayd /usr/local/bin/bot \
         | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $2 ~ /^\(0x/ {print $1}' | sort -u); do \
         cp --parents -L "$lib" /small/; \
       done

FROM scratch AS small
COPY --from=small-files /small/ /
COPY --from=build /out/supervisor /out/hookd /out/statusd /out/gatewayd /usr/local/bin/
COPY deploy/container/prebuilt.toml /app/supervisor.toml
WORKDIR /app
ENV SUPERVISOR_CONFIG=/app/supervisor.toml PATH=/usr/local/bin
VOLUME /app/data
EXPOSE 5000 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/statusd", "health"]
ENTRYPOINT ["/usr/local/bin/supervisor", "run", "-c", "/app/supervisor.toml"]

# ---- the default target (a plain `docker build .`): the runtime image above ----
FROM runtime
