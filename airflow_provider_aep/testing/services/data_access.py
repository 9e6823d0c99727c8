"""Data Access, ``/data/foundation/export`` (data-access.yaml): a batch's error diagnostics.

* ``GET /batches/{batchId}/meta?path=row_errors`` → ``{"data": [{"name", "length", "_links": {"self":
  {"href"}}}], "_page": {"limit", "count"}}``: the batch's row-error files (error-diagnostics guide).
* ``GET /batches/{batchId}/meta?path=row_errors/<name>`` → the file: one rejected row,
  ``{"_errors": [{"code", "message"}], "_filename", "_corrupt_record"?}``.
* Anything else under ``meta``, or a batch no finished run wrote, → 404.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from airflow_provider_aep.testing import runs as run_engine
from airflow_provider_aep.testing.errors import APIError, placeholder_error
from airflow_provider_aep.testing.routing import Request, Response, Service, route

PREFIX = "/data/foundation/export"
ROW_ERRORS = "row_errors"


def _not_found(what: str) -> APIError:
    return placeholder_error(404, "NotFoundError", f"{what} was not found.")


def get_batch_meta(req: Request, id: str) -> Response:
    sb = req.sb
    rec = sb.run_records.get(sb.batch_runs.get(id, ""))
    if rec is None or run_engine.render_batch(req.emulator, sb, rec) is None:
        raise _not_found(f"Batch {id}")
    files = run_engine.row_error_files(req.emulator, sb, rec)
    path = (req.q("path") or "").strip("/")
    if path == ROW_ERRORS:
        meta = f"{req.emulator.base_url}{PREFIX}/batches/{quote(id, safe='')}/meta"
        data = [
            {
                "name": name,
                "length": str(len(json.dumps(content))),
                "_links": {"self": {"href": f"{meta}?path={quote(f'{ROW_ERRORS}/{name}', safe='')}"}},
            }
            for name, content in files.items()
        ]
        return Response(200, {"data": data, "_page": {"limit": run_engine.MAX_ROW_ERROR_FILES, "count": len(data)}})
    directory, _, name = path.partition("/")
    if directory == ROW_ERRORS and name in files:
        return Response(200, files[name])
    raise _not_found(f"The path {req.q('path')!r} of batch {id}")


SERVICE = Service(
    name="export",
    prefix=PREFIX,
    routes=[route("GET", "/batches/{id}/meta", get_batch_meta)],
)
