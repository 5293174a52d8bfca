"""What the builtin capabilities share: plain functions over the SDK, no hooks.

Capabilities may import this package; it imports only the SDK and third-party
libraries, never a capability.
"""
