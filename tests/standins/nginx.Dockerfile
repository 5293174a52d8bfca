ARG BASE
FROM ${BASE}
# Mirrors the official nginx image: user nginx, /etc/nginx, /var/cache/nginx.
RUN (id nginx >/dev/null 2>&1 || useradd -r -M -s /usr/sbin/nologin nginx) \
 && mkdir -p /var/cache/nginx /etc/nginx/conf.d && rm -f /etc/nginx/sites-enabled/default \
 && ln -sf /bin/busybox /usr/local/bin/wget \
 && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80 443
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
