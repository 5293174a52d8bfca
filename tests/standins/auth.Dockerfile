ARG BASE
FROM ${BASE}
# Stand-in for nhost/hasura-auth (0.36): its start-up requirements and its mailer, as the
# rest of the stack meets them. What is imitated, with the sources, is in auth-server.py.
# The real image is built with Nix (flake.nix, docker-image): its user and tools belong
# to the image contract; wget is here for the health check nself writes.
COPY auth-server.py /usr/local/bin/hasura-auth
RUN chmod 0755 /usr/local/bin/hasura-auth && ln -sf /bin/busybox /usr/local/bin/wget
EXPOSE 4000
ENTRYPOINT ["hasura-auth"]
CMD ["serve"]
