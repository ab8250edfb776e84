"""The transport under the plugin protocol: TLS in memory, HTTP/2 and HPACK, gRPC framing, the gRPC server
and client, and the hub (one thread, greenlets) that runs the host's connections and the cheap calls.

Nothing here knows Vault: the protocol layer (vaultplugin/*.py) speaks Vault's messages over it, and the
engine reaches the few parts a handler needs (waits, work after the reply, cancellation) through
`vaultplugin.framework.runtime`.
"""
