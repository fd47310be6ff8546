# btnode on an empty base image. scripts/docker-build.sh assembles the build
# context (target/docker): the host's release binary, stripped, and exactly
# the shared libraries `ldd` says it needs, so no base image is pulled and the
# image builds on an engine without a registry (or with one, the same way).
FROM scratch
COPY rootfs/ /
# peerwire, overlay, DNS (UDP) and the DNS REST API
EXPOSE 6881 6000 8053/udp 8080
# A scratch image has no shell: the health check is btnode itself.
HEALTHCHECK --interval=5s --timeout=3s --retries=3 CMD ["/btnode", "health"]
ENTRYPOINT ["/btnode"]
