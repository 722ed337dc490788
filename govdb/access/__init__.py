"""Access to personal master data: policies and masks (policy), the audit chain (audit)."""

from govdb.access.audit import AuditKey, AuditVerification, Read, ReadRecord, append, load_key, verify
from govdb.access.policy import Grant, authorize, check_reach, field_name

__all__ = [
    "AuditKey",
    "AuditVerification",
    "Grant",
    "Read",
    "ReadRecord",
    "append",
    "authorize",
    "check_reach",
    "field_name",
    "load_key",
    "verify",
]
