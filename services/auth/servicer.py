"""AuthService over gRPC: translates messages to domain calls and back, nothing more.

Blocking work (database, argon2) runs in threads so one slow hash does not stall the event loop.
Domain errors propagate as they are; the error interceptor turns them into statuses with
AUTH_STATUS_CODES. Who may call what is decided by the auth interceptor, not here.
"""

from __future__ import annotations

import asyncio

import grpc

from emeterai.v1 import accounts_pb2, auth_service_pb2, auth_service_pb2_grpc
from services.auth.domain import AuthDomain
from services.auth.errors import DevOutboxDisabled, NotifierUnavailable
from services.auth.model import Account, AccountKind, DistributorCredential, PinCheck, TokenPair
from services.auth.notices import Notice
from services.auth.phones import normalise_phone
from services.common.batching import batch_error
from services.common.errors import BASE_STATUS_CODES, DomainError, InvalidInput
from services.common.protos import to_timestamp

AUTH_STATUS_CODES: dict[type[DomainError], grpc.StatusCode] = {
    **BASE_STATUS_CODES,
    # Delivery failed on our side; retrying soon is the right move for the caller.
    NotifierUnavailable: grpc.StatusCode.UNAVAILABLE,
}

# More than a busy gateway gathers for one call (it sends at most 500), and a bound on a call's work.
MAX_PIN_CHECKS = 1000

_ACCOUNT_KINDS = {
    AccountKind.RETAIL: accounts_pb2.ACCOUNT_KIND_RETAIL,
    AccountKind.DISTRIBUTOR: accounts_pb2.ACCOUNT_KIND_DISTRIBUTOR,
    AccountKind.DISTRIBUTOR_CUSTOMER: accounts_pb2.ACCOUNT_KIND_DISTRIBUTOR_CUSTOMER,
    AccountKind.ENTERPRISE: accounts_pb2.ACCOUNT_KIND_ENTERPRISE,
    AccountKind.ENTERPRISE_CHILD: accounts_pb2.ACCOUNT_KIND_ENTERPRISE_CHILD,
    AccountKind.COLLECTOR: accounts_pb2.ACCOUNT_KIND_COLLECTOR,
    AccountKind.OPERATOR: accounts_pb2.ACCOUNT_KIND_OPERATOR,
}


def account_message(account: Account) -> accounts_pb2.Account:
    return accounts_pb2.Account(
        account_id=account.account_id,
        kind=_ACCOUNT_KINDS[account.kind],
        phone=account.phone or "",
        display_name=account.display_name,
        parent_account_id=account.parent_account_id or "",
        created_at=to_timestamp(account.created_at),
        stamping_pin_set=account.stamping_pin_set,
    )


def credential_message(credential: DistributorCredential) -> accounts_pb2.DistributorCredential:
    return accounts_pb2.DistributorCredential(
        client_id=credential.client_id,
        account_id=credential.account_id,
        display_name=credential.display_name,
        scopes=list(credential.scopes),
        created_at=to_timestamp(credential.created_at),
        revoked_at=to_timestamp(credential.revoked_at),
    )


def token_pair_message(pair: TokenPair) -> accounts_pb2.TokenPair:
    return accounts_pb2.TokenPair(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type=pair.token_type,
        expires_in_seconds=pair.expires_in_s,
    )


def notice_message(notice: Notice) -> auth_service_pb2.Notice:
    return auth_service_pb2.Notice(
        text_id=notice.text_id, text_en=notice.text_en, published_at=to_timestamp(notice.published_at)
    )


class AuthServicer(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(self, domain: AuthDomain) -> None:
        self._domain = domain

    async def RequestOtp(
        self, request: auth_service_pb2.RequestOtpRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.RequestOtpResponse:
        client_address = request.client_address or context.peer()
        sent = await asyncio.to_thread(self._domain.otp.request_code, request.phone, client_address)
        return auth_service_pb2.RequestOtpResponse(
            phone=sent.phone, expires_in_seconds=sent.expires_in_s, resend_after_seconds=sent.resend_after_s
        )

    async def VerifyOtp(
        self, request: auth_service_pb2.VerifyOtpRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.VerifyOtpResponse:
        client_address = request.client_address or context.peer()
        signed_in = await asyncio.to_thread(
            self._domain.otp.verify_code, request.phone, request.code, client_address
        )
        return auth_service_pb2.VerifyOtpResponse(
            tokens=token_pair_message(signed_in.tokens),
            account=account_message(signed_in.account),
            created=signed_in.created,
        )

    async def RefreshToken(
        self, request: auth_service_pb2.RefreshTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.RefreshTokenResponse:
        pair = await asyncio.to_thread(self._domain.sessions.refresh, request.refresh_token)
        return auth_service_pb2.RefreshTokenResponse(tokens=token_pair_message(pair))

    async def RevokeToken(
        self, request: auth_service_pb2.RevokeTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.RevokeTokenResponse:
        await asyncio.to_thread(self._domain.sessions.revoke, request.refresh_token, request.access_token)
        return auth_service_pb2.RevokeTokenResponse()

    async def IssueClientToken(
        self, request: auth_service_pb2.IssueClientTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.IssueClientTokenResponse:
        token = await asyncio.to_thread(
            self._domain.distributors.issue_client_token, request.client_id, request.client_secret
        )
        return auth_service_pb2.IssueClientTokenResponse(
            access_token=token.token, token_type=token.token_type, expires_in_seconds=token.expires_in_s
        )

    async def IssueServiceToken(
        self, request: auth_service_pb2.IssueServiceTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.IssueServiceTokenResponse:
        # No thread: a compare and one Ed25519 signature take microseconds.
        token = self._domain.service_identity.issue_service_token(
            request.service_name, request.service_secret
        )
        return auth_service_pb2.IssueServiceTokenResponse(
            access_token=token.token, expires_in_seconds=token.expires_in_s
        )

    async def GetJwks(
        self, request: auth_service_pb2.GetJwksRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.GetJwksResponse:
        keys = [accounts_pb2.JsonWebKey(**jwk) for jwk in self._domain.keyring.jwks()]
        return auth_service_pb2.GetJwksResponse(keys=keys)

    async def GetAccount(
        self, request: auth_service_pb2.GetAccountRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.GetAccountResponse:
        account = await asyncio.to_thread(self._domain.accounts.get_account, request.account_id)
        return auth_service_pb2.GetAccountResponse(account=account_message(account))

    async def SetStampingPin(
        self, request: auth_service_pb2.SetStampingPinRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.SetStampingPinResponse:
        await asyncio.to_thread(
            self._domain.pins.set_stamping_pin, request.account_id, request.pin, request.current_pin
        )
        return auth_service_pb2.SetStampingPinResponse()

    async def ResetStampingPin(
        self, request: auth_service_pb2.ResetStampingPinRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.ResetStampingPinResponse:
        await asyncio.to_thread(
            self._domain.otp.reset_pin, request.account_id, request.code, request.pin, request.client_address
        )
        return auth_service_pb2.ResetStampingPinResponse()

    async def VerifyStampingPin(
        self, request: auth_service_pb2.VerifyStampingPinRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.VerifyStampingPinResponse:
        check = await asyncio.to_thread(
            self._domain.pins.verify_stamping_pin, request.account_id, request.pin
        )
        return auth_service_pb2.VerifyStampingPinResponse(
            valid=check.valid, attempts_left=check.attempts_left
        )

    async def VerifyStampingPins(
        self, request: auth_service_pb2.VerifyStampingPinsRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.VerifyStampingPinsResponse:
        if len(request.checks) > MAX_PIN_CHECKS:
            raise InvalidInput(f"a batch holds at most {MAX_PIN_CHECKS} PIN checks")
        outcomes = await asyncio.to_thread(
            self._domain.pins.verify_stamping_pins,
            [(check.account_id, check.pin) for check in request.checks],
        )
        return auth_service_pb2.VerifyStampingPinsResponse(results=[_pin_result(o) for o in outcomes])

    async def SetOperator(
        self, request: auth_service_pb2.SetOperatorRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.SetOperatorResponse:
        operators = self._domain.operators
        account = await asyncio.to_thread(operators.set_operator, request.phone, request.operator)
        return auth_service_pb2.SetOperatorResponse(account=account_message(account))

    async def ListOperators(
        self, request: auth_service_pb2.ListOperatorsRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.ListOperatorsResponse:
        operators = await asyncio.to_thread(self._domain.operators.list_operators)
        return auth_service_pb2.ListOperatorsResponse(accounts=[account_message(a) for a in operators])

    async def PublishNotice(
        self, request: auth_service_pb2.PublishNoticeRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.PublishNoticeResponse:
        notice = await asyncio.to_thread(
            self._domain.notices.publish, request.text_id, request.text_en, request.published_by
        )
        return auth_service_pb2.PublishNoticeResponse(notice=notice_message(notice))

    async def ClearNotice(
        self, request: auth_service_pb2.ClearNoticeRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.ClearNoticeResponse:
        await asyncio.to_thread(self._domain.notices.clear, request.cleared_by)
        return auth_service_pb2.ClearNoticeResponse()

    async def GetNotice(
        self, request: auth_service_pb2.GetNoticeRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.GetNoticeResponse:
        notice = await asyncio.to_thread(self._domain.notices.current)
        if notice is None:
            return auth_service_pb2.GetNoticeResponse()
        return auth_service_pb2.GetNoticeResponse(notice=notice_message(notice))

    async def CreateSubAccount(
        self, request: auth_service_pb2.CreateSubAccountRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.CreateSubAccountResponse:
        account = await asyncio.to_thread(
            self._domain.accounts.create_sub_account,
            request.parent_account_id,
            request.display_name,
            request.external_ref,
        )
        return auth_service_pb2.CreateSubAccountResponse(account=account_message(account))

    async def ListSubAccounts(
        self, request: auth_service_pb2.ListSubAccountsRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.ListSubAccountsResponse:
        page, next_token = await asyncio.to_thread(
            self._domain.accounts.list_sub_accounts,
            request.parent_account_id,
            request.page_size,
            request.page_token,
        )
        return auth_service_pb2.ListSubAccountsResponse(
            accounts=[account_message(account) for account in page], next_page_token=next_token
        )

    async def CreateDistributor(
        self, request: auth_service_pb2.CreateDistributorRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.CreateDistributorResponse:
        distributors = self._domain.distributors
        credential, secret = await asyncio.to_thread(
            distributors.create_distributor, request.display_name, list(request.scopes)
        )
        webhook_secret = await asyncio.to_thread(distributors.webhook_secret, credential.account_id)
        return auth_service_pb2.CreateDistributorResponse(
            credential=credential_message(credential), client_secret=secret, webhook_secret=webhook_secret
        )

    async def RotateDistributorSecret(
        self, request: auth_service_pb2.RotateDistributorSecretRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.RotateDistributorSecretResponse:
        credential, secret = await asyncio.to_thread(
            self._domain.distributors.rotate_secret, request.client_id
        )
        return auth_service_pb2.RotateDistributorSecretResponse(
            credential=credential_message(credential), client_secret=secret
        )

    async def RevokeDistributor(
        self, request: auth_service_pb2.RevokeDistributorRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.RevokeDistributorResponse:
        credential = await asyncio.to_thread(self._domain.distributors.revoke, request.client_id)
        return auth_service_pb2.RevokeDistributorResponse(credential=credential_message(credential))

    async def GetWebhookSecret(
        self, request: auth_service_pb2.GetWebhookSecretRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.GetWebhookSecretResponse:
        secret = await asyncio.to_thread(self._domain.distributors.webhook_secret, request.account_id)
        return auth_service_pb2.GetWebhookSecretResponse(webhook_secret=secret)

    async def RotateWebhookSecret(
        self, request: auth_service_pb2.RotateWebhookSecretRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.RotateWebhookSecretResponse:
        secret = await asyncio.to_thread(self._domain.distributors.rotate_webhook_secret, request.account_id)
        return auth_service_pb2.RotateWebhookSecretResponse(webhook_secret=secret)

    async def ListDistributors(
        self, request: auth_service_pb2.ListDistributorsRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.ListDistributorsResponse:
        credentials = await asyncio.to_thread(self._domain.distributors.list_distributors)
        return auth_service_pb2.ListDistributorsResponse(
            credentials=[credential_message(c) for c in credentials]
        )

    async def ListDevOutbox(
        self, request: auth_service_pb2.ListDevOutboxRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.ListDevOutboxResponse:
        outbox = self._domain.outbox
        if not self._domain.settings.is_dev or outbox is None:
            raise DevOutboxDisabled()
        phone = normalise_phone(request.phone) if request.phone else ""
        messages = await asyncio.to_thread(outbox.list_outbox, phone)
        return auth_service_pb2.ListDevOutboxResponse(
            messages=[
                auth_service_pb2.OutboxMessage(
                    phone=m.phone, body=m.body, channel=m.channel, sent_at=to_timestamp(m.sent_at)
                )
                for m in messages
            ]
        )


def _pin_result(outcome: PinCheck | DomainError) -> auth_service_pb2.VerifyStampingPinResult:
    if isinstance(outcome, DomainError):
        return auth_service_pb2.VerifyStampingPinResult(
            error=batch_error(outcome, AUTH_STATUS_CODES, "VerifyStampingPins")
        )
    return auth_service_pb2.VerifyStampingPinResult(
        check=auth_service_pb2.VerifyStampingPinResponse(
            valid=outcome.valid, attempts_left=outcome.attempts_left
        )
    )
