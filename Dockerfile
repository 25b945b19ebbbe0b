# geminio-sidecar: the bundle on a slim Node image, run as a numeric non-root user.
#   docker build -t geminio-sidecar:0.1.0 .
#   docker run --rm -p 8080:8080 -v $PWD/sidecar.yaml:/etc/geminio-sidecar/sidecar.yaml geminio-sidecar:0.1.0
# BASE_IMAGE is any image with `node` and `npm` of that major on the PATH (CI builds over a local stand-in, see
# test/deploy/stand-in-base.sh, since no registry is reachable there).
# Admin (/metrics, /healthz, /readyz) listens on 127.0.0.1:9901 unless the config or GEMINIO_SIDECAR_ADMIN_LISTEN
# says otherwise (use 0.0.0.0:9901 for Kubernetes probes); the HEALTHCHECK below works either way.
# The root file system may be read-only: the sidecar writes nothing to disk.
ARG BASE_IMAGE=node:22-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY sdk ./sdk
COPY plugins ./plugins
COPY sidecar ./sidecar
COPY scripts ./scripts
# Only the bundle is needed at run time: every dependency (and the built-in plugins) is inlined into its entry file
# and the chunks beside it (/out/geminio-sidecar.chunks/: the code loaded only on demand, see scripts/bundle.ts).
RUN npx tsx scripts/bundle.ts /out/geminio-sidecar.mjs \
 && node /out/geminio-sidecar.mjs --version

FROM ${BASE_IMAGE}
ENV NODE_ENV=production \
    GEMINIO_SIDECAR_LOG_FORMAT=json
WORKDIR /app
COPY --from=build /out/ /app/
COPY deploy/sidecar.example.yaml /etc/geminio-sidecar/sidecar.example.yaml
# Numeric, so Kubernetes can verify runAsNonRoot; not node's 1000, so it matches no host account.
USER 10001:10001
EXPOSE 7001 8080 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "const a=(process.env.GEMINIO_SIDECAR_ADMIN_LISTEN||'').split(':').pop()||process.env.GEMINIO_SIDECAR_ADMIN_PORT||'9901';fetch('http://127.0.0.1:'+a+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM drains (shutdown.gracePeriodMs); SIGHUP reloads the config file.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/geminio-sidecar.mjs"]
CMD ["run", "--config", "/etc/geminio-sidecar/sidecar.yaml"]
