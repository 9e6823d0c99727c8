"""Deep links into the AEP UI (aep-api.md §8), computed from ids only."""

from __future__ import annotations

AEP_UI = "https://experience.adobe.com"
# The XCom keys a task pushes its links under; the extra links read them back.
DATAFLOW_URL_KEY = "dataflow_url"
RUN_URL_KEY = "run_url"


def dataflow_url(org_id: str, sandbox: str, flow_id: str, run_id: str | None = None) -> str:
    url = f"{AEP_UI}/#/@{org_id}/sname:{sandbox}/platform/source/dataflows/{flow_id}/activity"
    return f"{url}/{run_id}" if run_id else url
