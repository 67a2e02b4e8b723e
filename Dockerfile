# appealflow: build with the Rust toolchain (librdkafka is compiled from source by rdkafka),
# run on a slim Debian with only what the binary needs.
FROM rust:1.85-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src src
COPY migrations migrations
COPY benches benches
COPY examples examples
RUN cargo build --release --bin appealflow

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 appealflow
COPY --from=build /src/target/release/appealflow /usr/local/bin/appealflow
COPY config /etc/appealflow
COPY examples/sample.jsonl /usr/share/appealflow/sample.jsonl
USER appealflow
ENTRYPOINT ["appealflow"]
CMD ["run", "--config", "/etc/appealflow/example.toml"]
