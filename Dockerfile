# tlsd in a container: a static binary on scratch, run as a non-root user, the state
# directory a volume, /readyz as the health check.
#   docker build --build-arg VERSION=$(git describe --tags --always) -t tlsd .
#   docker run -v $PWD/endpoints:/etc/tlsd/endpoints:ro -v tlsd-state:/var/lib/tlsd -p 443:8443 tlsd
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/tlsd/tlsd/version.stamp=${VERSION}" -o /out/tlsd ./cmd/tlsd \
 && mkdir -p /out/state

FROM scratch
COPY --from=build /out/tlsd /tlsd
# ACME servers are verified against the system's roots.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build --chown=65532:65532 /out/state /var/lib/tlsd
USER 65532:65532
ENV STATE_DIRECTORY=/var/lib/tlsd
VOLUME /var/lib/tlsd
EXPOSE 8443
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s CMD ["/tlsd", "status", "--ready", "--admin", "127.0.0.1:9180"]
ENTRYPOINT ["/tlsd"]
CMD ["run", "--listen", ":8443", "--admin", "127.0.0.1:9180", "/etc/tlsd/endpoints"]
