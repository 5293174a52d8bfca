"""Facts several image contracts share: the platforms Docker's official images serve.

docker-library builds every variant of an official image for the architectures its
library file lists (https://github.com/docker-library/official-images/tree/master/library):
the Debian variants and the Alpine ones each for one fixed set.
"""

from __future__ import annotations

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
