"""The public address of a service: ``https://SUBDOMAIN.BASE_DOMAIN``, with the port nginx
publishes HTTPS on when it is not 443."""

from __future__ import annotations

from nself_sdk import Config


def https_suffix(config: Config) -> str:
    """``:PORT`` when nginx publishes HTTPS on another host port than 443, else nothing."""
    port = config.int("NGINX_HTTPS_PORT", 443)
    return "" if port == 443 else f":{port}"


def public_url(config: Config, subdomain: str = "") -> str:
    """The public address of ``subdomain.BASE_DOMAIN`` (or of the domain itself), with the
    HTTPS port when it is not 443."""
    host = f"{subdomain}.{config.domain}" if subdomain else config.domain
    return f"https://{host}{https_suffix(config)}"
