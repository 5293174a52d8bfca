"""Facts several image contracts share: the platforms Docker's official images serve.

docker-library builds every variant of an official image for the architectures its
library file lists (https://github.com/docker-library/official-images/tree/master/library):
the Debian variants and the Alpine ones each for one fixed set.
"""

from __future__ import annotations

from collections.abc import Container, Mapping

OFFICIAL_DEBIAN = (
    "linux/amd64",
    "linux/arm/v5",
    "linux/arm/v7",
    "linux/arm64",
    "linux/386",
    "linux/mips64le",
    "linux/ppc64le",
    "linux/s390x",
)
OFFICIAL_ALPINE = (
    "linux/amd64",
    "linux/arm/v6",
    "linux/arm/v7",
    "linux/arm64",
    "linux/386",
    "linux/ppc64le",
    "linux/s390x",
)


def image_setting(name: str, labels: Mapping[str, str], declared: Container[str]) -> str | None:
    """The setting that runs another image in service ``name``'s place: the one its
    ``org.nself.image-setting`` label names, a custom slot's ``CS_N_IMAGE``, or
    ``<NAME>_IMAGE`` when some plugin declares it; None when nothing overrides it."""
    from nself_sdk.declare import IMAGE_SETTING_LABEL

    named = labels.get(IMAGE_SETTING_LABEL)
    if named:
        return named
    slot = labels.get("org.nself.slot")
    if slot:
        return f"{slot}_IMAGE"
    guess = f"{name.upper().replace('-', '_')}_IMAGE"
    return guess if guess in declared else None


def image_hint(setting: str | None, image: str, built: bool = False) -> str:
    """What to do when ``image`` cannot be obtained (pulled, or ``built``)."""
    fetch = "fix the build it names, or set" if built else "set"
    if setting is None:
        return (
            f"pre-load {image or 'the image'} on this host (`docker load -i image.tar`); "
            "no setting overrides this service's image"
        )
    return (
        f"{fetch} {setting} to an image this host can get (a mirror or private registry), "
        "or pre-load it (`docker load -i image.tar`)"
    )
