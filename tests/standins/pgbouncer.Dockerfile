ARG BASE
FROM ${BASE}
# Stand-in for edoburu/pgbouncer:v1.23.1-p3 (the pgbouncer catalogue bundle's image).
# Facts from edoburu/docker-pgbouncer's Dockerfile: user and group postgres are uid/gid 70;
# /etc/pgbouncer and /var/run/pgbouncer belong to postgres (the entrypoint writes
# userlist.txt there); USER postgres; ENTRYPOINT /entrypoint.sh; CMD /usr/bin/pgbouncer
# /etc/pgbouncer/pgbouncer.ini; postgresql-client gives pg_isready and psql. PgBouncer
# 1.24 here (Debian trixie's), 1.23 there; the binary is linked where the image has it.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer \
 && rm -rf /var/lib/apt/lists/* /etc/pgbouncer/* \
 && groupmod -g 70 postgres && usermod -u 70 -g 70 postgres \
 && mkdir -p /etc/pgbouncer /var/run/pgbouncer \
 && chown -R postgres:postgres /etc/pgbouncer /var/run/pgbouncer \
 && ln -sf /usr/sbin/pgbouncer /usr/bin/pgbouncer
COPY pgbouncer-entrypoint.sh /entrypoint.sh
USER postgres
EXPOSE 5432
ENTRYPOINT ["/entrypoint.sh"]
CMD ["/usr/bin/pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]
