ARG BASE
FROM ${BASE}
# Stand-in for postgres:16-bookworm (+ the extensions nself's generated Dockerfile adds).
# Facts from docker-library/postgres 16/bookworm/Dockerfile: user and group postgres are
# uid/gid 999; /docker-entrypoint-initdb.d exists (root's, 0755); /var/run/postgresql is
# postgres' with mode 3777; PGDATA=/var/lib/postgresql/data, created postgres' with mode
# 1777 (made 0700 at run time); ENTRYPOINT docker-entrypoint.sh, CMD postgres,
# STOPSIGNAL SIGINT. (PostgreSQL 17 here: Debian trixie's; the contract is the same.)
ENV PATH=/usr/lib/postgresql/17/bin:$PATH PGDATA=/var/lib/postgresql/data
RUN groupmod -g 999 postgres && usermod -u 999 -g 999 postgres \
 && chown -R postgres:postgres /var/lib/postgresql /etc/postgresql \
 && mkdir -p /docker-entrypoint-initdb.d \
 && install -d -o postgres -g postgres -m 3777 /var/run/postgresql \
 && install -d -o postgres -g postgres -m 1777 "$PGDATA"
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
