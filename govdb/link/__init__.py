"""Record linkage: which master person each event is about."""

from govdb.link.batch import LinkReport, LinkResult, link_records

__all__ = ["LinkReport", "LinkResult", "link_records"]
