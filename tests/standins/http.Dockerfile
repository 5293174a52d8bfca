ARG BASE
FROM ${BASE}
# A tiny HTTP upstream: busybox httpd answering /health and / on $PORT.
RUN mkdir -p /www && echo ok >/www/health && echo "nself stand-in upstream" >/www/index.html \
 && ln -sf /bin/busybox /usr/local/bin/wget && ln -sf /bin/busybox /usr/local/bin/httpd
ENV PORT=8080
USER nobody
CMD ["sh", "-c", "exec busybox httpd -f -p ${PORT} -h /www"]
