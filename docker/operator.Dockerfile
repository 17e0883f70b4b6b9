# The Rivulet operator image. Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t rivulet/operator:0.1.0 .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p rivulet-operator --bin rivulet-operator \
    && cp target/release/rivulet-operator /rivulet-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /rivulet-operator /usr/local/bin/rivulet-operator
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/rivulet-operator"]
