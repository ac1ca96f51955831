# Tako's image: the statically linked programs and nothing else. Build it
# with scripts/build-image.sh, which compiles the binaries on the host
# (CGO_ENABLED=0) and needs no registry: the base is scratch.
#
# The image runs any role by its command line, for example
#   docker run tako:dev /bin/tako-node -id n1 -c tako-coordinator-1:4712 -v /var/tako
FROM scratch
COPY deploy/bin/ /bin/
VOLUME /var/tako
WORKDIR /var/tako
CMD ["/bin/tako-cluster", "-v", "/var/tako"]
