ARG BASE
FROM ${BASE}
# Stand-in for minio/minio (RELEASE.2025-04-22T22-12-26Z). Facts from minio/minio's
# Dockerfile.release: no USER (root), minio and mc in /opt/bin on PATH, ENTRYPOINT
# /usr/bin/docker-entrypoint.sh, CMD minio, VOLUME /data, EXPOSE 9000. What the server
# imitates (signatures above all) is written in minio-server.py.
COPY minio-server.py /opt/bin/minio
COPY minio-mc.sh /opt/bin/mc
COPY minio-entrypoint.sh /usr/bin/docker-entrypoint.sh
RUN chmod 0755 /opt/bin/minio /opt/bin/mc /usr/bin/docker-entrypoint.sh && mkdir -p /data
ENV PATH=/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EXPOSE 9000
VOLUME ["/data"]
ENTRYPOINT ["/usr/bin/docker-entrypoint.sh"]
CMD ["minio"]
