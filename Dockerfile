# One image for every service; the command picks the one a container runs:
#   python -m services.auth | services.quota | services.signer | services.gateway
#   emeterai <command>        (migrate, db, audit, keys, distributors, operators...)
# Build from the repository root: docker build -t emeterai:0.1.0 .
# The base is pinned by tag; pin it by digest too (python:3.11-slim-bookworm@sha256:...) where
# the build can reach a registry to look the digest up.

FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python -m venv /opt/emeterai
WORKDIR /src
COPY pyproject.toml README.md ./
COPY emeterai/ emeterai/
COPY services/ services/
# The dependencies pyproject.toml pins all ship binary wheels, so the builder needs no compiler:
# one that would have to be built from source fails here rather than pulling in a toolchain.
RUN /opt/emeterai/bin/pip install --no-cache-dir --only-binary=:all: .


FROM python:3.11-slim-bookworm

# Nothing from apt: the services need only Python and the wheels (pypdfium2 bundles its PDF
# library). poppler, qpdf, zbar and SoftHSM are the tests' tools. A PKCS#11 module for an HSM
# comes from its vendor and is mounted, not built in.
RUN groupadd --system --gid 10001 emeterai \
    && useradd --system --uid 10001 --gid emeterai --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin emeterai \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/emeterai

COPY --from=builder /opt/emeterai /opt/emeterai

# Bytecode was compiled at install time; with a read-only root nothing could write more.
# Everything a service writes goes under EMETERAI_DATA_DIR and TMPDIR, volumes in Kubernetes.
ENV PATH=/opt/emeterai/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EMETERAI_DATA_DIR=/var/lib/emeterai \
    TMPDIR=/tmp

WORKDIR /var/lib/emeterai
# Numeric, so Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001

# gateway HTTP and gRPC, auth, quota, signer, metrics
EXPOSE 8080 50051 50061 50062 50071 9090

CMD ["emeterai", "--help"]
