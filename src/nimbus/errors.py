"""One error hierarchy for nimbus.

Every error is raised where it is detected and carries what Lambda's wire shape needs:
the error type name botocore maps to a modeled exception, the HTTP status, the body key
the service model uses for the message (Lambda is not consistent: some shapes use
``Message``, others ``message``) and the ``Type`` member, which Lambda sends with most
errors ("User" for the caller's mistakes) but not all: a class without one says
``kind = None``, and a single answer Lambda sends without it is raised with
``typed=False``. ``nimbus.api.wire`` renders them in one place.
"""

from __future__ import annotations


class NimbusError(Exception):
    """Base of every error nimbus reports to a client."""

    type_name = "ServiceException"
    status = 500
    # A passing condition of nimbus's own (a node or the database out of reach): an async
    # event that meets it goes back to its queue, as Lambda retries its service errors,
    # rather than spending an attempt or going to the dead letters.
    transient = False
    # Lambda's ``Type`` member: "User" for caller mistakes; None: the shape has none.
    kind: str | None = "Service"
    message_key = "Message"

    def __init__(self, message: str, *, typed: bool = True, **extra: object) -> None:
        """``typed=False``: this answer goes without ``Type``, as Lambda sends it (a few
        of Lambda's answers leave it out where the same exception otherwise has it)."""
        super().__init__(message)
        self.message = message
        self.extra = extra  # additional modeled members, e.g. Reason for throttles
        if not typed:
            self.kind = None

    def body(self) -> dict[str, object]:
        typed = {} if self.kind is None else {"Type": self.kind}
        return {**typed, self.message_key: self.message, **self.extra}

    def headers(self) -> dict[str, str]:
        return {}


class UserError(NimbusError):
    kind: str | None = "User"
    status = 400


class ServiceError(NimbusError):
    """Something broke on our side; the message must still say what."""


class ClusterUnavailable(ServiceError):
    """In cluster mode, the shared PostgreSQL database that counts the cluster's
    concurrency cannot be reached; transient, so 503 (botocore retries it)."""

    status = 503
    transient = True


class DatabaseUnavailable(ServiceError):
    """The metadata database does not answer (down, or out of reach): transient, 503."""

    status = 503
    transient = True


class NodeLost(ServiceError):
    """A worker node stopped answering while it ran a sync invocation: it may or may not
    have run, so it is not retried for the caller (an async event is, by its queue)."""

    status = 502
    transient = True


class RelayedError(NimbusError):
    """An error a worker node answered a forwarded invocation with, passed on as it was
    (status, type, message and modeled members)."""

    def __init__(self, status: int, type_name: str, message: str, kind: str | None,
                 message_key: str, **extra: object) -> None:
        super().__init__(message)
        self.extra = dict(extra)
        self.status, self.type_name, self.kind = status, type_name, kind
        # The worker's own passing conditions (the shapes above) stay passing here.
        self.transient = status in (502, 503) and type_name == "ServiceException"
        self.message_key = message_key


class ResourceNotFound(UserError):
    type_name = "ResourceNotFoundException"
    status = 404


class ResourceConflict(UserError):
    type_name = "ResourceConflictException"
    status = 409
    message_key = "message"


class InvalidParameterValue(UserError):
    type_name = "InvalidParameterValueException"
    message_key = "message"


class ValidationError(UserError):
    """A member violates a constraint of the service model (length, range, pattern)."""

    type_name = "ValidationException"
    message_key = "message"


class InvalidRequestContent(UserError):
    type_name = "InvalidRequestContentException"
    message_key = "message"


class RequestTooLarge(UserError):
    type_name = "RequestTooLargeException"
    status = 413
    message_key = "message"


class PreconditionFailed(UserError):
    type_name = "PreconditionFailedException"
    status = 412
    message_key = "message"


class CodeStorageExceeded(UserError):
    type_name = "CodeStorageExceededException"
    message_key = "message"


class RetryAfter(NimbusError):
    """An error that says when to try again (``Retry-After``, in seconds)."""

    retry_after = 1

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class TooManyRequests(RetryAfter, UserError):
    """The Lambda API throttled an invocation (concurrency); ``reason`` is Lambda's."""

    type_name = "TooManyRequestsException"
    status = 429
    message_key = "message"

    def __init__(self, message: str, reason: str, retry_after: int = 1) -> None:
        super().__init__(message, Reason=reason)
        self.retry_after = retry_after


class UnknownOperation(UserError):
    type_name = "UnknownOperationException"
    status = 404


class AccessDenied(UserError):
    type_name = "AccessDeniedException"
    status = 403


class KMSAccessDenied(NimbusError):
    """A function's environment variables cannot be decrypted (store/env_cipher.py)."""

    type_name = "KMSAccessDeniedException"
    status = 502


class InvalidSignature(UserError):
    type_name = "InvalidSignatureException"
    status = 403


class ProvisionedConcurrencyConfigNotFound(UserError):
    type_name = "ProvisionedConcurrencyConfigNotFoundException"
    status = 404
    message_key = "message"


class ApiGatewayError(UserError):
    """API Gateway's error shapes: ``message`` (plus modeled extras), no ``Type``."""

    kind = None
    message_key = "message"


class BadRequest(ApiGatewayError):
    type_name = "BadRequestException"


class NotFound(ApiGatewayError):
    type_name = "NotFoundException"
    status = 404


class Conflict(ApiGatewayError):
    type_name = "ConflictException"
    status = 409


class SignatureRejected(UserError):
    """A request's SigV4 authentication failed (403, as on Lambda; a wrong secret, scope
    or time is the older ``InvalidSignature``)."""

    status = 403
    message_key = "message"


class MissingAuthenticationToken(SignatureRejected):
    type_name = "MissingAuthenticationTokenException"


class IncompleteSignature(SignatureRejected):
    type_name = "IncompleteSignatureException"


class UnrecognizedClient(SignatureRejected):
    type_name = "UnrecognizedClientException"


class GatewayForbidden(ApiGatewayError):
    """An HTTP trigger refused a request: the route requires an API key and the request's
    key is missing, unknown, disabled or in no usage plan for the stage."""

    type_name = "ForbiddenException"
    status = 403


class GatewayThrottled(RetryAfter, ApiGatewayError):
    """An HTTP trigger throttled a request (account, stage or usage-plan rate limit);
    ``retry_after`` seconds until a request would be admitted again."""

    type_name = "TooManyRequestsException"
    status = 429

    def __init__(self, message: str = "Too Many Requests", retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LimitExceeded(GatewayThrottled):
    """A usage plan's quota is used up (or a control-plane limit is reached);
    ``retry_after`` is the time until the quota period resets."""

    type_name = "LimitExceededException"

    def __init__(self, message: str = "Limit Exceeded", retry_after: int = 1) -> None:
        super().__init__(message, retry_after)


class PolicyLengthExceeded(UserError):
    """A function's resource-based policy would grow past Lambda's size quota."""

    type_name = "PolicyLengthExceededException"
    message_key = "message"


class SourceUnavailable(ServiceError):
    """An event source mapping's source (a broker, a queue, a stream) cannot be reached
    or does not exist; the message says which and what to check. The poller reports it
    on the mapping (LastProcessingResult) and retries later."""

    type_name = "ServiceException"
    status = 502
    message_key = "Message"


# -- SQS (nimbus.sqs, nimbus.api.sqs) ---------------------------------------------------
# ``type_name`` is the error shape's name in botocore's SQS model (or the ``__type`` SQS
# sends for an unmodeled one); the protocol layer adds the query-era code
# (nimbus.protocol.compat) that botocore reports as Error.Code.


class SqsError(UserError):
    """An SQS error: ``{"__type", "message"}``, no Lambda ``Type``."""

    kind = None
    message_key = "message"


class QueueDoesNotExist(SqsError):
    type_name = "QueueDoesNotExist"

    def __init__(self, message: str = "The specified queue does not exist.") -> None:
        super().__init__(message)


class QueueNameExists(SqsError):
    type_name = "QueueNameExists"


class QueueDeletedRecently(SqsError):
    type_name = "QueueDeletedRecently"


class InvalidAttributeName(SqsError):
    type_name = "InvalidAttributeName"


class InvalidAttributeValue(SqsError):
    type_name = "InvalidAttributeValue"


class SqsInvalidParameterValue(SqsError):
    """Not a modeled shape: SQS sends ``InvalidParameterValueException`` as ``__type``."""

    type_name = "InvalidParameterValueException"


class SqsMissingParameter(SqsError):
    type_name = "MissingRequiredParameterException"


class ReceiptHandleIsInvalid(SqsError):
    type_name = "ReceiptHandleIsInvalid"


class MessageNotInflight(SqsError):
    type_name = "MessageNotInflight"


class InvalidMessageContents(SqsError):
    type_name = "InvalidMessageContents"


class EmptyBatchRequest(SqsError):
    type_name = "EmptyBatchRequest"


class TooManyEntriesInBatchRequest(SqsError):
    type_name = "TooManyEntriesInBatchRequest"


class BatchEntryIdsNotDistinct(SqsError):
    type_name = "BatchEntryIdsNotDistinct"


class InvalidBatchEntryId(SqsError):
    type_name = "InvalidBatchEntryId"


class BatchRequestTooLong(SqsError):
    type_name = "BatchRequestTooLong"


class PurgeQueueInProgress(SqsError):
    type_name = "PurgeQueueInProgress"
    status = 403


class SqsUnsupportedOperation(SqsError):
    type_name = "UnsupportedOperation"


class SchedulerError(UserError):
    """EventBridge Scheduler's errors (rest-json): ``Message``, no ``Type``."""

    kind = None


class SchedulerValidation(SchedulerError):
    type_name = "ValidationException"


class SchedulerConflict(SchedulerError):
    type_name = "ConflictException"
    status = 409


class SchedulerNotFound(SchedulerError):
    type_name = "ResourceNotFoundException"
    status = 404


class ResourceInUse(UserError):
    """Lambda's ResourceInUseException: the resource is busy with another operation
    (e.g. an event source mapping being deleted)."""

    type_name = "ResourceInUseException"
    message_key = "message"


# CloudWatch Logs (json protocol): ``{"__type", "message"}``, no ``Type``; every error of
# the service is a 400 (botocore's logs model gives none a status of its own).
class LogsError(UserError):
    kind = None
    message_key = "message"


class LogsInvalidParameter(LogsError):
    type_name = "InvalidParameterException"


class LogsResourceNotFound(LogsError):
    type_name = "ResourceNotFoundException"


class LogsInvalidOperation(LogsError):
    type_name = "InvalidOperationException"
