ARG BASE
FROM ${BASE}
# Stand-in for axllent/mailpit (v1.21): an SMTP catcher with a web API. Facts from
# axllent/mailpit's Dockerfile: the binary is /mailpit, the ENTRYPOINT, run as root;
# `/mailpit readyz` is the image's own health check; ports 1025 (SMTP) and 8025 (web).
# How it answers AUTH is written in mailpit-server.py.
COPY mailpit-server.py /mailpit
RUN chmod 0755 /mailpit && mkdir -p /data
EXPOSE 1025 8025
ENTRYPOINT ["/mailpit"]
