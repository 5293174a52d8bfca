"""The plugin registry: signed index, server and client."""
