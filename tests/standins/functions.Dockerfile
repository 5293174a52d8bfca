ARG BASE
FROM ${BASE}
# Stand-in for nhost/functions (tags <node major>-<version>, e.g. 20-1.2.0). Facts from
# nhost/functions 20.Dockerfile: FROM node:20-alpine (busybox wget), run as root,
# SERVER_PATH=/opt/server, NHOST_PROJECT_PATH=/opt/project (the WORKDIR),
# PACKAGE_MANAGER=pnpm, ENTRYPOINT $SERVER_PATH/start.sh. Node here is Debian's.
ENV SERVER_PATH=/opt/server NHOST_PROJECT_PATH=/opt/project PACKAGE_MANAGER=pnpm
COPY functions-start.sh /opt/server/start.sh
COPY functions-server.js /opt/server/server.js
RUN chmod 0755 /opt/server/start.sh && ln -sf /bin/busybox /usr/local/bin/wget \
 && printf '{\n  "compilerOptions": {"target": "es2022", "module": "commonjs"}\n}\n' >/opt/server/tsconfig.json \
 && mkdir -p /opt/project
WORKDIR /opt/project
ENTRYPOINT ["/opt/server/start.sh"]
