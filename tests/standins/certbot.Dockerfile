ARG BASE
FROM ${BASE}
# Mirrors certbot/certbot (upstream tools/docker/Dockerfile): python3 with certbot and its
# acme library (acme, josepy, cryptography, requests), openssl, CA certificates, busybox
# sh and wget; runs as root; ENTRYPOINT certbot, WORKDIR /opt/certbot.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends certbot >/dev/null \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && ln -sf /bin/busybox /usr/local/bin/wget && mkdir -p /opt/certbot /etc/letsencrypt /var/lib/letsencrypt
WORKDIR /opt/certbot
EXPOSE 80 443
ENTRYPOINT ["certbot"]
