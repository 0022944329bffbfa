"""What is wrong with a request's input, collected while parsing and refused together,
in the error its protocol's clients expect:

- query: ``MissingParameter`` ("The request must contain the parameter X.") and
  ``InvalidParameterValue`` ("Value v for parameter X is invalid. Reason: ...");
- JSON of a query-compatible service (SQS): ``MissingRequiredParameterException`` and
  ``InvalidParameterValueException`` with the query codes in ``x-amzn-query-error``;
- JSON and REST-JSON: ``ValidationException`` in AWS's words ("1 validation error
  detected: Value null at 'name' failed to satisfy constraint: Member must not be null"),
  ``InvalidParameterException`` in the same words where the operation declares that and
  no ValidationException (CloudWatch Logs), and ``SerializationException`` for a value
  of the wrong type;
- REST-XML (S3): ``InvalidRequest`` and ``InvalidArgument``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from botocore.model import OperationModel

from nimbus.protocol.errors import AwsError


@dataclass
class Problems:
    """Missing required members and unreadable values, by their path in the request."""

    protocol: str
    query_compatible: bool = False
    missing: list[str] = field(default_factory=list)
    invalid: list[tuple[str, str, str]] = field(default_factory=list)  # path, value, reason

    def __bool__(self) -> bool:
        return bool(self.missing or self.invalid)

    def check(self, operation: OperationModel | None = None) -> None:
        """Raise the protocol's error for what was found (nothing found: return)."""
        if not self:
            return
        if self.protocol == "query":
            if self.missing:
                raise AwsError(
                    "MissingParameter",
                    f"The request must contain the parameter {self.missing[0]}.",
                )
            path, value, reason = self.invalid[0]
            raise AwsError(
                "InvalidParameterValue",
                f"Value {value} for parameter {path} is invalid. Reason: {reason}.",
            )
        if self.protocol == "rest-xml":
            if self.missing:
                raise AwsError("InvalidRequest", f"Missing required parameter {self.missing[0]}.")
            path, value, reason = self.invalid[0]
            raise AwsError("InvalidArgument", f"Invalid value '{value}' for {path}: {reason}.")
        if self.query_compatible:
            if self.missing:
                raise AwsError(
                    "MissingRequiredParameterException",
                    f"The request must contain the parameter {self.missing[0]}.",
                )
            path, value, reason = self.invalid[0]
            raise AwsError(
                "InvalidParameterValueException",
                f"Value {value} for parameter {path} is invalid. Reason: {reason}.",
            )
        if self.invalid:
            path, value, reason = self.invalid[0]
            raise AwsError("SerializationException", f"Invalid value at '{path}': {reason}.")
        count = len(self.missing)
        listed = "; ".join(
            f"Value null at '{path}' failed to satisfy constraint: Member must not be null"
            for path in self.missing
        )
        noun = "error" if count == 1 else "errors"
        raise AwsError(_validation_code(operation),
                       f"{count} validation {noun} detected: {listed}")


def _validation_code(operation: OperationModel | None) -> str:
    """ValidationException, unless the operation declares only InvalidParameterException
    (CloudWatch Logs: its clients catch that one for a missing member too)."""
    if operation is not None:
        declared = {shape.name for shape in operation.error_shapes}
        if "InvalidParameterException" in declared and "ValidationException" not in declared:
            return "InvalidParameterException"
    return "ValidationException"
