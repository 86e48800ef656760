"""Every setting of every service, read from EMETERAI_* variables in one place.

Defaults run the whole stack on one laptop (SQLite in a data folder, loopback ports). Settings are
validated when a service starts; a bad start names every bad variable at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "EMETERAI_"

# Development-only shared secrets. Production mode refuses to start with them.
DEV_SERVICE_SECRET = "dev-only-service-secret-change-me-in-production"
DEV_PAYMENT_WEBHOOK_SECRET = "dev-only-sandbox-webhook-secret"


class SettingsError(Exception):
    """Raised at start when one or more EMETERAI_* variables are invalid."""


def _check_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return value


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # "dev" enables the development outbox, sandbox payments and dev secrets; "production" refuses them.
    mode: Literal["dev", "production"] = "dev"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    data_dir: Path = Path(".emeterai")
    # Seconds a stopping server keeps serving calls already in flight.
    shutdown_grace_s: float = Field(default=10.0, ge=0, le=300)
    auth_address: str = "127.0.0.1:50061"
    # Shared by internal services to obtain service tokens from AuthService.
    service_secret: SecretStr = SecretStr(DEV_SERVICE_SECRET)
    # Accepted token issuer and audience.
    token_issuer: str = "emeterai-auth"
    token_audience: str = "emeterai"
    # Where users reach the gateway: verification links in QR codes, payment pages.
    public_url: str = "http://127.0.0.1:8080"
    # Seconds health reports NOT_SERVING before the server stops taking calls, so load balancers
    # (Kubernetes readiness probes) move traffic away first.
    shutdown_notice_s: float = Field(default=0.0, ge=0, le=60)
    # Shared state for every replica: request limits, revoked tokens. Empty on a single node, where
    # each process keeps its own (see services/common/limits.py and revocations.py).
    redis_url: str = ""
    # Where this process serves Prometheus metrics at /metrics, "host:port"; empty for no metrics
    # server (see docs/metrics.md).
    metrics_address: str = ""

    @field_validator("auth_address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _check_address(value)

    @field_validator("metrics_address")
    @classmethod
    def _metrics_address(cls, value: str) -> str:
        return _check_address(value) if value else value

    @model_validator(mode="after")
    def _no_dev_secrets_in_production(self) -> CommonSettings:
        if self.mode == "production":
            if self.service_secret.get_secret_value() == DEV_SERVICE_SECRET:
                raise ValueError("EMETERAI_SERVICE_SECRET must be set in production mode")
            if len(self.service_secret.get_secret_value()) < 32:
                raise ValueError("EMETERAI_SERVICE_SECRET must be at least 32 characters")
        return self

    @property
    def is_dev(self) -> bool:
        return self.mode == "dev"

    def sqlite_url(self, name: str) -> str:
        return f"sqlite:///{(self.data_dir / f'{name}.db').resolve()}"


class AuthSettings(CommonSettings):
    database_url: str = ""
    # Ed25519 signing keys for tokens; created in dev mode when missing.
    jwt_key_dir: Path | None = None
    access_token_ttl_s: int = Field(default=900, ge=60, le=3600)
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=3600)
    otp_ttl_s: int = Field(default=300, ge=60, le=900)
    otp_max_attempts: int = Field(default=5, ge=1, le=10)
    otp_resend_after_s: int = Field(default=60, ge=0, le=600)
    # "dev" keeps messages in an outbox readable in dev mode; "whatsapp" sends them through the
    # WhatsApp Business Cloud API, falling back to the SMS gateway when one is configured.
    notifier: Literal["dev", "whatsapp"] = "dev"
    # The Cloud API's messages endpoint, https://graph.facebook.com/<version>/<phone-number-id>/messages.
    whatsapp_api_url: str = ""
    whatsapp_token: SecretStr | None = None
    # The approved authentication template and its language.
    whatsapp_template: str = "emeterai_kode_masuk"
    whatsapp_language: str = "id"
    # An HTTP SMS gateway taking POST {"to", "message"} with a bearer token; empty for none.
    sms_api_url: str = ""
    sms_token: SecretStr | None = None
    # Codes one phone number may be sent per hour, whatever the cool-down allows.
    otp_codes_per_phone_per_hour: int = Field(default=5, ge=1, le=100)
    # Code requests and code checks one client address may make per 10 minutes. Generous: many
    # mobile users share an address behind their carrier's NAT.
    otp_requests_per_address: int = Field(default=100, ge=1)
    otp_verifies_per_address: int = Field(default=200, ge=1)

    @model_validator(mode="after")
    def _channels_complete(self) -> AuthSettings:
        if self.notifier == "whatsapp" and not (self.whatsapp_api_url and self.whatsapp_token):
            raise ValueError(
                "EMETERAI_NOTIFIER=whatsapp needs EMETERAI_WHATSAPP_API_URL and EMETERAI_WHATSAPP_TOKEN"
            )
        if self.sms_api_url and not self.sms_token:
            raise ValueError("EMETERAI_SMS_API_URL needs EMETERAI_SMS_TOKEN")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or self.sqlite_url("auth")

    @property
    def resolved_jwt_key_dir(self) -> Path:
        return self.jwt_key_dir or self.data_dir / "jwt"


class QuotaSettings(CommonSettings):
    quota_address: str = "127.0.0.1:50062"
    database_url: str = ""
    unit_price_idr: int = Field(default=10_000, gt=0)
    hold_ttl_s: int = Field(default=600, ge=10)
    order_ttl_s: int = Field(default=3600, ge=60)
    payment_provider: Literal["sandbox"] = "sandbox"
    payment_webhook_secret: SecretStr = SecretStr(DEV_PAYMENT_WEBHOOK_SECRET)

    @field_validator("quota_address")
    @classmethod
    def _quota_address(cls, value: str) -> str:
        return _check_address(value)

    @model_validator(mode="after")
    def _webhook_secret_in_production(self) -> QuotaSettings:
        if self.mode == "production" and (
            self.payment_webhook_secret.get_secret_value() == DEV_PAYMENT_WEBHOOK_SECRET
        ):
            raise ValueError("EMETERAI_PAYMENT_WEBHOOK_SECRET must be set in production mode")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or self.sqlite_url("quota")


class SignerSettings(CommonSettings):
    signer_address: str = "127.0.0.1:50071"
    # Where the signing key lives: a PEM key + chain, a PKCS#12 file, or a PKCS#11 token (an HSM).
    # With none set, dev mode uses the development PKI under data_dir/pki.
    signer_key_kind: Literal["pem", "pkcs12", "pkcs11"] = "pem"
    signer_key_path: Path | None = None
    # PEM chain, leaf first: required with a PEM key or a PKCS#11 token.
    signer_cert_chain_path: Path | None = None
    signer_pkcs12_path: Path | None = None
    signer_pkcs12_password: SecretStr | None = None
    signer_pkcs11_module: Path | None = None
    signer_pkcs11_token: str | None = None
    signer_pkcs11_key_label: str | None = None
    signer_pkcs11_pin: SecretStr | None = None
    # PEM bundle of roots a signature must chain to in verification reports.
    trust_roots_path: Path | None = None
    signer_location: str = "Indonesia"
    max_document_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    # Stamping worker processes; 0 means one per core.
    signer_workers: int = Field(default=0, ge=0, le=256)
    # A document still being processed after this many seconds is abandoned and its worker replaced.
    signer_document_timeout_s: float = Field(default=20.0, gt=0, le=600)
    # PAdES B-T: "local" timestamps with our own TSA in process, "url" asks signer_tsa_url,
    # "none" signs B-B only.
    signer_timestamp: Literal["none", "local", "url"] = "local"
    signer_tsa_url: str | None = None
    signer_tsa_timeout_s: float = Field(default=10.0, gt=0, le=60)
    # Our own TSA's key and chain; the development PKI's TSA when unset.
    tsa_key_path: Path | None = None
    tsa_cert_chain_path: Path | None = None

    @field_validator("signer_address")
    @classmethod
    def _signer_address(cls, value: str) -> str:
        return _check_address(value)

    @model_validator(mode="after")
    def _key_settings_fit_together(self) -> SignerSettings:
        configured = self.signer_key_path is not None or self.signer_key_kind != "pem"
        if self.signer_key_kind == "pem" and (self.signer_key_path is None) != (
            self.signer_cert_chain_path is None
        ):
            raise ValueError("EMETERAI_SIGNER_KEY_PATH and EMETERAI_SIGNER_CERT_CHAIN_PATH go together")
        if self.signer_key_kind == "pkcs12" and self.signer_pkcs12_path is None:
            raise ValueError("EMETERAI_SIGNER_PKCS12_PATH is needed with EMETERAI_SIGNER_KEY_KIND=pkcs12")
        if self.signer_key_kind == "pkcs11":
            missing = [
                f"EMETERAI_{name.upper()}"
                for name in (
                    "signer_pkcs11_module",
                    "signer_pkcs11_token",
                    "signer_pkcs11_key_label",
                    "signer_pkcs11_pin",
                    "signer_cert_chain_path",
                )
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"EMETERAI_SIGNER_KEY_KIND=pkcs11 also needs {', '.join(missing)}")
        if self.mode == "production" and not configured:
            raise ValueError("a signing key must be configured in production mode (EMETERAI_SIGNER_KEY_*)")
        if self.signer_timestamp == "url" and not self.signer_tsa_url:
            raise ValueError("EMETERAI_SIGNER_TSA_URL is needed with EMETERAI_SIGNER_TIMESTAMP=url")
        if (self.tsa_key_path is None) != (self.tsa_cert_chain_path is None):
            raise ValueError("EMETERAI_TSA_KEY_PATH and EMETERAI_TSA_CERT_CHAIN_PATH go together")
        if self.mode == "production" and self.signer_timestamp == "local" and self.tsa_key_path is None:
            raise ValueError("EMETERAI_TSA_KEY_PATH must be set for local timestamps in production mode")
        return self

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"


class GatewaySettings(CommonSettings):
    gateway_http_address: str = "127.0.0.1:8080"
    gateway_grpc_address: str = "127.0.0.1:50051"
    quota_address: str = "127.0.0.1:50062"
    # Comma-separated signer replicas.
    signer_addresses: Annotated[list[str], NoDecode] = ["127.0.0.1:50071"]
    document_store_dir: Path | None = None
    # Days stamped PDFs (and finished stamp jobs' records) are kept for owners to download again;
    # 0 keeps them for ever.
    document_retention_days: int = Field(default=90, ge=0, le=36500)
    # Stamp jobs waiting or running, kept across restarts; beside the documents when unset.
    job_store_dir: Path | None = None
    # One stamp job's documents, in number and in bytes; under gRPC's 64 MiB message limit.
    job_max_documents: int = Field(default=100, ge=1, le=10_000)
    job_max_bytes: int = Field(default=48 * 1024 * 1024, gt=0, le=60 * 1024 * 1024)
    # Stamp jobs run at once by one gateway.
    job_workers: int = Field(default=2, ge=1, le=64)
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    # Slow clients (services/gateway/slow_clients.py): seconds to send a request's headers, and
    # seconds a route waits on a request's body beyond one for every 8 KiB that arrived.
    http_header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    http_body_timeout_s: float = Field(default=20.0, gt=0, le=300)
    # A log line per HTTP request. In a cluster the ingress logs every request already and the
    # metrics count them; at a surge's thousands of requests a second these lines cost the event
    # loop time the requests need (k8s turns them off).
    http_access_log: bool = True
    payment_webhook_secret: SecretStr = SecretStr(DEV_PAYMENT_WEBHOOK_SECRET)
    # Deadline for one signer call, seconds.
    sign_timeout_s: float = Field(default=30.0, gt=0)
    # The longest a stamp's PIN check and ledger calls (reserve, commit, release) may wait for
    # others to travel with in one batch call (services/common/batching.py). At a pool's steady
    # pace the calls are too far apart to meet otherwise, and each going alone costs auth, quota
    # and PostgreSQL several times the CPU (docs/gateway.md). The window follows the pace: as long
    # as a few more calls take to come, and none while they come further apart than this; a stamp
    # waits one window per call at most. Purchases never wait for one. 0 sends every call at once.
    stamp_batch_window_ms: float = Field(default=20.0, ge=0, le=1000)
    # Admission control (docs/gateway.md). Stamps in flight, from every channel, adapt between
    # min and max to what the signer pool sustains; each channel has a guaranteed share of that
    # limit and its own queue. Min and initial are kept within max (max=1 is one stamp at a time).
    stamp_concurrency_initial: int = Field(default=8, ge=1)
    stamp_concurrency_min: int = Field(default=2, ge=1)
    stamp_concurrency_max: int = Field(default=256, ge=1)
    retail_stamp_share: float = Field(default=0.5, gt=0, le=1)
    distributor_stamp_share: float = Field(default=0.5, gt=0, le=1)
    # Retail's queue takes the waiting room's returning ticket holders: at least a few seconds of
    # what the pool stamps (docs/gateway.md).
    retail_stamp_queue: int = Field(default=4096, ge=0)
    distributor_stamp_queue: int = Field(default=64, ge=0)
    stamp_queue_timeout_s: float = Field(default=10.0, gt=0)
    # The other bulkheads: concurrency limit and queue size each.
    retail_concurrency: int = Field(default=64, ge=1)
    retail_queue: int = Field(default=256, ge=0)
    distributor_concurrency: int = Field(default=64, ge=1)
    distributor_queue: int = Field(default=256, ge=0)
    purchase_concurrency: int = Field(default=64, ge=1)
    purchase_queue: int = Field(default=256, ge=0)
    verification_concurrency: int = Field(default=8, ge=1)
    verification_queue: int = Field(default=64, ge=0)
    bulkhead_queue_timeout_s: float = Field(default=5.0, gt=0)
    # Per-account token buckets (shared in Redis when EMETERAI_REDIS_URL is set): rate a second
    # and burst.
    retail_stamps_per_s: float = Field(default=0.5, gt=0)
    retail_stamp_burst: int = Field(default=10, ge=1)
    distributor_stamps_per_s: float = Field(default=200.0, gt=0)
    distributor_stamp_burst: int = Field(default=400, ge=1)
    orders_per_s: float = Field(default=1.0, gt=0)
    order_burst: int = Field(default=10, ge=1)

    @field_validator("signer_addresses", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("gateway_http_address", "gateway_grpc_address", "quota_address")
    @classmethod
    def _addresses(cls, value: str) -> str:
        return _check_address(value)

    @field_validator("signer_addresses")
    @classmethod
    def _signer_addresses(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one signer address is needed")
        return [_check_address(v) for v in value]

    @property
    def resolved_document_store_dir(self) -> Path:
        return self.document_store_dir or self.data_dir / "documents"

    @property
    def resolved_job_store_dir(self) -> Path:
        return self.job_store_dir or self.resolved_document_store_dir.parent / "jobs"


S = TypeVar("S", bound=CommonSettings)


def load_settings(cls: type[S], **overrides: object) -> S:
    """Read and validate settings; raise SettingsError naming every bad variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = "_".join(str(part) for part in error["loc"] if isinstance(part, str))
            name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
