ARG BASE
FROM ${BASE}
# A tiny HTTP upstream: busybox httpd answering /health and / on $PORT.
RUN mkdir -p /www && echo ok >/www/health && echo "nself stand-in upstream" >/www/index.html \
 && ln -sf /bin/busybox /usr/local/bin/wget && ln -sf /bin/busybox /usr/local/bin/httpd
ENV PORT=8080
USER nobody
# httpd as PID 1 would ignore SIGTERM (no handler), making every stop wait for the
# 10 s kill timeout; the shell exits on TERM and takes httpd with it.
CMD ["sh", "-c", "trap 'kill $pid; exit 0' TERM INT; busybox httpd -f -p ${PORT} -h /www & pid=$!; wait $pid"]
