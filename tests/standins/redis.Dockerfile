ARG BASE
FROM ${BASE}
# Stand-in for redis:7.4-alpine. Facts from docker-library/redis 7.4/alpine/Dockerfile
# (redis/docker-library-redis): user redis is uid 999, group redis gid 1000 (alpine has a
# gid 999 already); /data is created owned by redis:redis, is the VOLUME and the WORKDIR;
# no USER line, so the container starts as root and the entrypoint steps down;
# ENTRYPOINT docker-entrypoint.sh, CMD redis-server. redis-cli is on PATH.
RUN groupmod -g 1000 redis && usermod -u 999 -g 1000 redis \
 && chown -R redis:redis /var/lib/redis /var/log/redis /etc/redis \
 && mkdir -p /data && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
ENTRYPOINT ["docker-entrypoint.sh"]
EXPOSE 6379
CMD ["redis-server"]
