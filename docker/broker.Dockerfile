# The Rivulet broker image. Build from the repository root:
#   docker build -f docker/broker.Dockerfile -t rivulet/broker:0.1.0 .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p rivulet-server --bin rivulet \
    && cp target/release/rivulet /rivulet

# Small runtime with a libc and CA certificates, no shell needed; runs as
# the non-root uid the operator's pod security context expects.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /rivulet /usr/local/bin/rivulet
USER 10001:10001
EXPOSE 9092 9093 9404
ENTRYPOINT ["/usr/local/bin/rivulet"]
CMD ["broker", "--data-dir=/var/lib/rivulet/data"]
