"""Standardize and validate: frames of records against the rules (`frames`), and the event
store's pass over its received events (`events`).

Validation never drops a row: an invalid event stays in the event store with its quality flags
(reason codes), and the ValidationReport lists every failure as a polars frame.
"""

from govdb.validate.events import (
    Retry,
    StandardizedChunk,
    Standardizing,
    events_frame,
    quality,
    retry_events,
    standardize_events,
    write_standardized,
)
from govdb.validate.frames import (
    AS_WRITTEN,
    FAILURE_SCHEMA,
    PLACE_LEVELS,
    ValidationReport,
    record_place,
    required_schema,
    service_place_level,
    validate_frame,
)

__all__ = [
    "AS_WRITTEN",
    "FAILURE_SCHEMA",
    "PLACE_LEVELS",
    "Retry",
    "StandardizedChunk",
    "Standardizing",
    "ValidationReport",
    "events_frame",
    "quality",
    "record_place",
    "required_schema",
    "retry_events",
    "service_place_level",
    "standardize_events",
    "validate_frame",
    "write_standardized",
]
