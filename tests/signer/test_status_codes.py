import grpc

from services.common.errors import status_code_for
from services.signer.errors import DocumentLocked, DocumentTooComplex, EncryptedPdf
from services.signer.servicer import SIGNER_STATUS_CODES


def test_the_status_table_covers_the_signer_errors() -> None:
    codes = SIGNER_STATUS_CODES
    assert status_code_for(DocumentLocked("locked"), codes) == grpc.StatusCode.FAILED_PRECONDITION
    assert status_code_for(EncryptedPdf("encrypted"), codes) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_code_for(DocumentTooComplex("slow"), codes) == grpc.StatusCode.INVALID_ARGUMENT
