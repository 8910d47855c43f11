"""The resilient audit: events, the durable local journal and its verification."""

from reference.audit.event import MAX_PAYLOAD_BYTES, AuditEvent, InvalidAuditEvent
from reference.audit.journal import Journal, JournalConfig, JournalWriteError
from reference.audit.journal_cli import VerifyReport, format_report, verify_journal
from reference.audit.journal_format import SegmentScan, quarantine, read_segment
from reference.audit.journal_metrics import JournalCounters, JournalMetrics

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "AuditEvent",
    "InvalidAuditEvent",
    "Journal",
    "JournalConfig",
    "JournalCounters",
    "JournalMetrics",
    "JournalWriteError",
    "SegmentScan",
    "VerifyReport",
    "format_report",
    "quarantine",
    "read_segment",
    "verify_journal",
]
