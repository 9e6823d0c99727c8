"""Deep links into the AEP UI (aep-api.md §8), computed from ids only."""

from __future__ import annotations

AEP_UI = "https://experience.adobe.com"


def dataflow_url(org_id: str, sandbox: str, flow_id: str, run_id: str | None = None) -> str:
    url = f"{AEP_UI}/#/@{org_id}/sname:{sandbox}/platform/source/dataflows/{flow_id}/activity"
    return f"{url}/{run_id}" if run_id else url
