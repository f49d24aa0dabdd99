# plugdb's container image: one static binary (the database, its CLI and its
# bundled plugins, which it runs as itself) and the example configs, on a
# distroless base without shell or package manager (about 20 MB).
#
#   docker build -t plugdb .
#   docker run --rm plugdb --help
#   docker compose -f deploy/compose.yaml up     # ZooKeeper ×3, a router, 2 partitions × 3 replicas
#
# docs/cluster.md ("Run on several machines") says which addresses to give.

# Build stage: the Go toolchain builds a static binary (no cgo: every engine,
# rowfile, bbolt, pebble and memory, is pure Go).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/plugdb ./cmd/plugdb \
 && mkdir -p /out/data

# Final stage: the binary, the configs and an empty data folder owned by the
# image's unprivileged user (a named volume mounted on /data takes its owner).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/plugdb /usr/local/bin/plugdb
COPY configs/ /etc/plugdb/
COPY --from=build --chown=nonroot:nonroot /out/data /data
WORKDIR /data
USER nonroot
# 7070 router gRPC, 8080 router REST, 7101 a node's API, 7201 its replicator.
EXPOSE 7070 8080 7101 7201
ENTRYPOINT ["/usr/local/bin/plugdb"]
CMD ["--help"]
