"""pytest wiring of the conformance layer: on for the whole run, judged after each test, summed up at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conformance.layer import ConformanceLayer, load_specs

LAYER = pytest.StashKey[ConformanceLayer]()
SUMMARY_TEST = "tests/conformance/test_summary.py"


def pytest_configure(config: pytest.Config) -> None:
    try:
        specs = load_specs()
    except FileNotFoundError as exc:
        raise pytest.UsageError(str(exc)) from None
    layer = ConformanceLayer(specs)
    layer.start()
    config.stash[LAYER] = layer


def pytest_unconfigure(config: pytest.Config) -> None:
    layer = config.stash.get(LAYER, None)
    if layer is not None:
        layer.stop()


def layer_of(config: pytest.Config) -> ConformanceLayer:
    return config.stash[LAYER]


@pytest.fixture(autouse=True)
def _calls_conform_to_adobe_specs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test whose emulator calls break Adobe's specs (known defects aside)."""
    yield
    found = layer_of(request.config).judge_pending()
    if found:
        pytest.fail(
            f"{len(found)} emulator call(s) break Adobe's API specs:\n" + "\n".join(f"- {m}" for m in found),
            pytrace=False,
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The summary comes last, after every other test has made its calls."""
    items.sort(key=lambda item: item.nodeid.startswith(SUMMARY_TEST))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    layer = config.stash.get(LAYER, None)
    if layer is None or not layer.tallies:
        return
    terminalreporter.section("calls to the emulator, judged against Adobe's OpenAPI specs")
    terminalreporter.write_line(layer.summary())
