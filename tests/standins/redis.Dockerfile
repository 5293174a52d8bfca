ARG BASE
FROM ${BASE}
# Mirrors the official redis image: redis-server/redis-cli on PATH, /data.
RUN mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server"]
