# Kiln in a container. Provided for convenience; the supported path is
# `npm install && npm start` (see README.md). Not built in CI.
FROM node:20-bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm install --no-audit --no-fund && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
COPY --from=build /app /app
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8000 DATA_DIR=/data \
    GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=2097152:glibc.malloc.hugetlb=1
VOLUME /data
EXPOSE 8000
USER node
CMD ["node", "--max-semi-space-size=4", "--initial-old-space-size=96", "dist/src/main.js", "serve"]
