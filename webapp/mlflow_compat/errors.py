"""MLflow's error replies: `{"error_code": ..., "message": ...}` with the HTTP status its client
expects for that code. The client retries 429 and 5xx other than 501 for minutes, so a request
that cannot succeed must never get one of those."""

from __future__ import annotations

from django.http import JsonResponse

STATUS_OF_CODE = {
    "BAD_REQUEST": 400,
    "INVALID_PARAMETER_VALUE": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "RESOURCE_CONFLICT": 409,
    "NOT_IMPLEMENTED": 501,
}


class MlflowError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def response(self) -> JsonResponse:
        return error_response(self.code, self.message)


def error_response(code: str, message: str) -> JsonResponse:
    response = JsonResponse({"error_code": code, "message": message},
                            status=STATUS_OF_CODE[code])
    if code == "UNAUTHENTICATED":
        response["WWW-Authenticate"] = 'Bearer realm="rlab"'
    return response
