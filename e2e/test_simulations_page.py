"""A simulation started from the form: statuses, the model x date grid and the equity chart
change on the job page without a reload."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from e2e.helpers import api_wait, assert_same_document, expect_badge, mark, trail, wait_sse_open
from tests.stack import Stack

DAYS = ["2025-06-02", "2025-06-03", "2025-06-04", "2025-06-05", "2025-06-06"]


def test_simulation_from_the_form_fills_grid_and_chart_live(desk: Stack, page: Page) -> None:
    page.goto(f"{desk.url}/simulations")
    form = page.get_by_test_id("sim-form")
    form.get_by_test_id("sim-start-input").fill(DAYS[0])
    form.get_by_test_id("sim-end-input").fill(DAYS[-1])
    form.get_by_test_id("model-momentum").uncheck()
    form.get_by_test_id("sim-run-button").click()

    page.wait_for_url(f"{desk.url}/jobs/*")
    job_id = page.url.rstrip("/").split("/")[-1]
    wait_sse_open(page)
    token = mark(page)
    grid = page.get_by_test_id("sim-grid")
    first_cell = grid.get_by_test_id(f"cell-buy-and-hold-{DAYS[0]}")

    # 20 symbols at 400 ms each: the download is watched as it happens
    expect_badge(page, desk.url, job_id, "downloading data", timeout=20_000)
    expect(first_cell).to_have_attribute("data-status", "pending")
    expect(page.get_by_test_id("equity-chart-empty")).to_be_visible()

    expect_badge(page, desk.url, job_id, "completed", timeout=60_000)
    for model in ("buy-and-hold", "ma-crossover"):
        for day in DAYS:
            expect(grid.get_by_test_id(f"cell-{model}-{day}")).to_have_attribute(
                "data-status", "completed")
    assert grid.locator("[data-testid^=cell-momentum-]").count() == 0  # unchecked: not run
    curve = page.get_by_test_id("curve-buy-and-hold")
    expect(curve).to_have_attribute("data-points", str(len(DAYS)))
    expect(page.get_by_test_id("metrics-ma-crossover")).to_be_visible()

    shown = trail(page, "badge")
    assert shown[shown.index("downloading data"):] == ["downloading data", "running", "completed"], shown
    assert api_wait(desk.url, job_id, {"completed"})["status"] == "completed"
    assert_same_document(page, token)


def test_simulation_form_shows_errors_inline(desk: Stack, page: Page) -> None:
    page.goto(f"{desk.url}/simulations")
    form = page.get_by_test_id("sim-form")
    form.get_by_test_id("sim-start-input").fill("2025-06-10")
    form.get_by_test_id("sim-end-input").fill("2025-06-02")
    form.get_by_test_id("sim-run-button").click()
    expect(page.get_by_test_id("sim-end-error")).to_contain_text("on or after start_date")
    expect(page.get_by_test_id("sim-start-input")).to_have_value("2025-06-10")
    assert page.url == f"{desk.url}/simulations"
