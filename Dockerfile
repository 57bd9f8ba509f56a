# holdfast image: Debian bookworm build stage, minimal bookworm-slim runtime stage.
#   docker build -t ghcr.io/holdfast/holdfast:0.1.0 .
# The runtime stage installs exactly the packages of the shared libraries holdfast links
# (tests/chart/test_image.py checks this list against `ldd build/holdfast`), plus CA certificates.

FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential meson ninja-build pkg-config \
      libevent-dev node-llhttp libcurl4-openssl-dev libcjson-dev libpcre2-dev libyaml-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN meson setup /build --buildtype=release -Dtests=false \
 && meson compile -C /build holdfast \
 && install -D -m 0755 /build/holdfast /out/usr/local/bin/holdfast

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates libevent-core-2.1-7 libevent-pthreads-2.1-7 libevent-2.1-7 libcurl4 libcjson1 libpcre2-8-0 libyaml-0-2 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/usr/local/bin/holdfast /usr/local/bin/holdfast
USER 65532:65532
EXPOSE 8012 8013
ENTRYPOINT ["/usr/local/bin/holdfast"]
CMD ["run"]
