# geminio-sidecar: the single-file bundle on a slim Node image, run as a non-root user.
#   docker build -t geminio-sidecar .
#   docker run --rm -p 8080:8080 -v $PWD/sidecar.yaml:/etc/geminio-sidecar/sidecar.yaml geminio-sidecar
# Admin (/metrics, /healthz) listens on 127.0.0.1:9901 unless the config or GEMINIO_SIDECAR_ADMIN_LISTEN says
# otherwise (use 0.0.0.0:9901 for Kubernetes probes); the HEALTHCHECK below works either way.

FROM node:22-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY sdk ./sdk
COPY sidecar ./sidecar
# Only the bundle is needed at run time: every dependency is inlined into this one file.
RUN npx tsx sidecar/bundle.ts /out/geminio-sidecar.mjs \
 && node /out/geminio-sidecar.mjs --version

FROM node:22-slim
ENV NODE_ENV=production \
    GEMINIO_SIDECAR_LOG_FORMAT=json
WORKDIR /app
COPY --from=build /out/geminio-sidecar.mjs /app/geminio-sidecar.mjs
COPY deploy/sidecar.example.yaml /etc/geminio-sidecar/sidecar.example.yaml
USER node
EXPOSE 7001 8080 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "const a=(process.env.GEMINIO_SIDECAR_ADMIN_LISTEN||'').split(':').pop()||process.env.GEMINIO_SIDECAR_ADMIN_PORT||'9901';fetch('http://127.0.0.1:'+a+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM drains (shutdown.gracePeriodMs); SIGHUP reloads the config file.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/geminio-sidecar.mjs"]
CMD ["run", "--config", "/etc/geminio-sidecar/sidecar.yaml"]
