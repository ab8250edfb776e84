# Declarative install of the LLM secrets engine from an OCI image (OpenBao 2.7+): paste this into the server
# config. At start (and on SIGHUP) the server pulls {{PLUGIN_IMAGE}}:{{PLUGIN_VERSION}} for its own platform,
# takes the one file at the image root named by the entrypoint (/vault-plugin-secrets-llm), checks its
# sha256, registers it, and runs it as an ordinary process (no container runtime, no Docker on the server):
#
#   scripts/build-oci-image --push <registry>/<repository> ./out   # prints the version, sha256 and this block
#   (fill in the four {{...}} values below, start or SIGHUP the server)
#   bao secrets enable -path=llm vault-plugin-secrets-llm
#
# {{PLUGIN_DIRECTORY}}  absolute path of a directory the server can write: the file lands in
#                       .oci-cache/ under it, with a symlink secret-vault-plugin-secrets-llm-<version>
# {{PLUGIN_IMAGE}}      <registry>/<repository>, without a tag
# {{PLUGIN_VERSION}}    the image tag, which must also be the version the plugin reports (build-oci-image tags
#                       the image with it); OpenBao uses this one value for both
# {{PLUGIN_SHA256}}     the sha256 of the plugin file (build-oci-image prints it), NOT an image digest
#
# What to expect (OpenBao 2.7.2):
# - A failed pull or a sha256 that does not match stops the server from starting, e.g. "Error downloading
#   plugins: failed to download plugin "secret-vault-plugin-secrets-llm": plugin hash mismatch: expected ...,
#   got ...". plugin_download_behavior = "continue" does not help here: registering the block then fails.
# - A restart whose cached file still matches does not contact the registry.
# - Registry credentials come from the server user's Docker config (~/.docker/config.json, $DOCKER_CONFIG)
#   or Podman's auth.json. A registry on localhost or 127.0.0.1 is reached over plain HTTP, others over HTTPS.
# - Without plugin_auto_download, `bao plugin init -config=<this file>` does the same download ahead of time
#   (e.g. in an init container); the server then only registers the block.

plugin_directory     = "{{PLUGIN_DIRECTORY}}"
plugin_auto_register = true
plugin_auto_download = true

plugin "secret" "vault-plugin-secrets-llm" {
  image     = "{{PLUGIN_IMAGE}}"
  version   = "{{PLUGIN_VERSION}}"
  sha256sum = "{{PLUGIN_SHA256}}"
}
