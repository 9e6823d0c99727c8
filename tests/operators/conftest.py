from __future__ import annotations

import pytest

from tests.conftest import PLATFORM, RecordingTI

FS = f"{PLATFORM}/data/foundation/flowservice"
SR = f"{PLATFORM}/data/foundation/schemaregistry"
CAT = f"{PLATFORM}/data/foundation/catalog"
CONV = f"{PLATFORM}/data/foundation/conversion"


@pytest.fixture
def context(aep_conn, ims, no_sleep):
    return {"ti": RecordingTI()}


def posts(requests_mock):
    return [r for r in requests_mock.request_history if r.method == "POST" and "/ims/" not in r.url]
