"""Results you can query and export, the peer's /health, resumed runs' metrics, cold starts and
the `marketdesk simulate` command, through the real stack."""

from __future__ import annotations

import csv
import html
import io
import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.stack import ROOT, Stack

MODELS_TOML = """
universe = ["RESA", "RESB", "RESC"]

[models.hold]
strategy = "buy_and_hold"

[models.mom]
strategy = "momentum_rotation"
params = { lookback = 2, top_n = 1, rebalance_days = 1 }

[models.cross]
strategy = "ma_crossover"
params = { fast = 2, slow = 4 }

[models.fresh]
strategy = "buy_and_hold"
enabled = false
initial_cash = 50000

[models.tiny]
strategy = "buy_and_hold"
enabled = false
initial_cash = 1000
min_trade_value = 500

[models.late]
strategy = "buy_and_hold"
enabled = false
"""

# the module's data: mom and hold over two runs, the second resumed
FIRST = ("2025-03-03", "2025-03-07")
SECOND_END = "2025-03-14"


@pytest.fixture(scope="module")
def res(tmp_path_factory, database) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("results")
    (tmp / "models.toml").write_text(MODELS_TOML)
    with Stack(tmp / "stack", env={"MARKETDESK_MODELS_FILE": str(tmp / "models.toml")},
               database=database) as s:
        yield s


def trigger(s: Stack, **body: object) -> dict:
    r = httpx.post(f"{s.url}/simulate/trigger", json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def status(s: Stack, job_id: str) -> dict:
    r = httpx.get(f"{s.url}/simulate/status/{job_id}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def results(s: Stack, **params: object) -> httpx.Response:
    return httpx.get(f"{s.url}/results", params=params, timeout=10)


@pytest.fixture(scope="module")
def runs(res: Stack) -> dict[str, str]:
    """Two jobs: hold and mom over the first week, then resumed (no start_date) to the next."""
    first = trigger(res, start_date=FIRST[0], end_date=FIRST[1], models=["hold", "mom"])
    assert res.wait(first["job_id"])["status"] == "completed"
    second = trigger(res, end_date=SECOND_END, models=["hold", "mom"])
    assert "resume mode: hold from 2025-03-08, mom from 2025-03-08" in second["message"]
    assert second["total_model_days"] == 10
    assert res.wait(second["job_id"])["status"] == "completed"
    return {"first": first["job_id"], "second": second["job_id"]}


def by_key(records: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["model"], r["date"]): r for r in records}


# -- the two defects ----------------------------------------------------------------------------

def test_a_resumed_runs_metrics_start_from_the_day_before_it(res: Stack, runs: dict[str, str]) -> None:
    every = by_key(results(res, model="mom", limit=1000).json()["results"])
    before = every[("mom", "2025-03-07")]["final_position"]["value"]
    last = every[("mom", "2025-03-14")]["final_position"]["value"]
    # measured independently of the metrics code: from the stored values and trades
    run_return = last / before - 1
    inception_return = last / 100_000 - 1
    run_trades = sum(len(r["trades"]) for (m, d), r in every.items() if d > "2025-03-07")
    all_trades = sum(len(r["trades"]) for r in every.values())
    assert 0 < run_trades < all_trades

    m = status(res, runs["second"])["metrics"]["mom"]
    assert m["first_day"] == "2025-03-08" and m["run_start_value"] == pytest.approx(before)
    assert m["run"]["total_return"] == pytest.approx(run_return)
    assert m["run"]["trades"] == run_trades and m["run"]["days"] == 5
    assert m["inception"]["total_return"] == pytest.approx(inception_return)
    assert m["inception"]["trades"] == all_trades and m["inception"]["days"] == 10
    # since inception: the same numbers /results gives per day
    daily = [r["metrics"] for _, r in sorted(every.items(), key=lambda kv: kv[0][1])]
    assert m["inception"]["total_return"] == pytest.approx(daily[-1]["cumulative_return"])
    assert m["inception"]["max_drawdown"] == pytest.approx(max(d["drawdown"] for d in daily))

    page = httpx.get(f"{res.url}/jobs/{runs['second']}", timeout=10).text
    row = re.search(r'data-testid="metrics-mom".*?</tr>', page, re.S).group(0)
    cell = dict(re.findall(r'data-testid="([a-z-]+)">([^<]*)<', row))
    assert cell["run-return"] == f"{run_return:+.2%}"
    assert cell["inception-return"] == f"{inception_return:+.2%}"
    assert cell["run-trades"] == str(run_trades) and cell["inception-trades"] == str(all_trades)
    assert "This run" in page and "Since inception" in page


# -- GET /results ---------------------------------------------------------------------------------

def test_results_record_a_model_day_whole(res: Stack, runs: dict[str, str]) -> None:
    body = results(res, model="hold", start_date="2025-03-03", end_date="2025-03-04").json()
    assert body["total"] == 2 and body["count"] == 2
    day1, day2 = body["results"]
    assert (day1["date"], day1["model"], day1["job_id"], day1["status"]) == \
        ("2025-03-03", "hold", runs["first"], "completed")
    assert day1["starting_position"] == {"cash": 100_000.0, "holdings": [], "holdings_value": 0.0,
                                         "value": 100_000.0}
    assert [(t["symbol"], t["side"]) for t in day1["trades"]] == [
        ("RESA", "buy"), ("RESB", "buy"), ("RESC", "buy")]
    for t in day1["trades"]:
        assert t["value"] == pytest.approx(t["shares"] * t["price"]) and t["cost"] == 1.0
    end = day1["final_position"]
    assert [h["symbol"] for h in end["holdings"]] == ["RESA", "RESB", "RESC"]
    assert end["value"] == pytest.approx(end["cash"] + sum(h["value"] for h in end["holdings"]))
    assert day2["starting_position"] == end  # a day starts where the one before ended
    assert day2["trades"] == []
    m1, m2 = day1["metrics"], day2["metrics"]
    assert m1["portfolio_value"] == end["value"]
    assert m1["daily_return"] == pytest.approx(end["value"] / 100_000 - 1)
    assert m2["daily_return"] == pytest.approx(m2["portfolio_value"] / m1["portfolio_value"] - 1)
    assert m2["cumulative_return"] == pytest.approx(m2["portfolio_value"] / 100_000 - 1)
    peak = max(100_000, m1["portfolio_value"], m2["portfolio_value"])
    assert m2["drawdown"] == pytest.approx(1 - m2["portfolio_value"] / peak)
    assert day1["started_at"] and day1["completed_at"] and day1["duration_seconds"] >= 0


def test_each_filter_alone_and_combined(res: Stack, runs: dict[str, str]) -> None:
    def keys(**params: object) -> list[tuple[str, str]]:
        r = results(res, limit=1000, **params)
        assert r.status_code == 200, r.text
        return [(x["model"], x["date"]) for x in r.json()["results"]]

    everything = keys()
    assert len(everything) == 20 and everything == sorted(everything, key=lambda k: (k[1], k[0]))
    assert {m for m, _ in keys(model="mom")} == {"mom"} and len(keys(model="mom")) == 10
    assert len(keys(model="hold,mom")) == 20
    assert len(keys(job_id=runs["first"])) == 10 and len(keys(job_id=runs["second"])) == 10
    assert {d for _, d in keys(start_date="2025-03-12")} == {"2025-03-12", "2025-03-13", "2025-03-14"}
    assert {d for _, d in keys(end_date="2025-03-04")} == {"2025-03-03", "2025-03-04"}
    assert keys(job_id=runs["second"], model="hold", start_date="2025-03-11", end_date="2025-03-12") \
        == [("hold", "2025-03-11"), ("hold", "2025-03-12")]
    page = results(res, limit=3, offset=4).json()
    assert page["count"] == 3 and page["total"] == 20
    assert [(x["model"], x["date"]) for x in page["results"]] == everything[4:7]


@pytest.mark.parametrize(("params", "field", "words"), [
    ({"start_date": "2025/03/03"}, "start_date", "use YYYY-MM-DD"),
    ({"end_date": "2025-02-30"}, "end_date", "use YYYY-MM-DD"),
    ({"start_date": "2025-03-10", "end_date": "2025-03-03"}, "end_date", "on or after start_date"),
    ({"model": "hold,nope"}, "model", "Unknown model 'nope'; known models: cross, fresh, hold"),
    ({"limit": "0"}, "limit", "'0' is not a whole number in"),
    ({"limit": "many"}, "limit", "not a whole number"),
    ({"offset": "-1"}, "offset", "not a whole number in >= 0"),
])
def test_bad_filters_answer_400_naming_the_field(res: Stack, params: dict, field: str, words: str) -> None:
    for path in ("/results", "/results.csv"):
        r = httpx.get(f"{res.url}{path}", params=params, timeout=10)
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["field"] == field and words in r.json()["detail"]


def test_the_filters_are_in_the_openapi_schema(res: Stack) -> None:
    schema = httpx.get(f"{res.url}/schema/openapi.json", timeout=10).json()
    for path in ("/results", "/results.csv"):
        names = {p["name"] for p in schema["paths"][path]["get"]["parameters"]}
        assert names == {"job_id", "start_date", "end_date", "model", "limit", "offset"}
    assert "/health" in schema["paths"] and "/simulations/{job_id}/equity.csv" in schema["paths"]


def test_results_pages_hold_at_most_1000(res: Stack) -> None:
    r = results(res, limit=1001)
    assert r.status_code == 400 and r.json()["detail"] == "limit: '1001' is not a whole number in 1..1000"


def test_nothing_found_is_404_with_the_filters(res: Stack, runs: dict[str, str]) -> None:
    r = results(res, model="cross", start_date="2025-03-03")
    assert r.status_code == 404
    assert r.json() == {"status_code": 404, "detail": "No trading data found",
                        "filters": {"job_id": None, "start_date": "2025-03-03", "end_date": None,
                                    "model": "cross", "limit": 100, "offset": 0}}
    r = results(res, job_id="nosuchjob")
    assert r.status_code == 404 and r.json()["filters"]["job_id"] == "nosuchjob"


# -- exports --------------------------------------------------------------------------------------

def test_results_csv_reads_back_as_the_same_numbers(res: Stack, runs: dict[str, str]) -> None:
    records = results(res, job_id=runs["second"], limit=1000).json()["results"]
    r = httpx.get(f"{res.url}/results.csv", params={"job_id": runs["second"]}, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0])[:4] == ["date", "model", "job_id", "status"]  # a header, no index column
    assert len(rows) == len(records) == 10
    for row, rec in zip(rows, records, strict=True):
        assert (row["date"], row["model"], row["job_id"]) == (rec["date"], rec["model"], rec["job_id"])
        assert float(row["start_value"]) == rec["starting_position"]["value"]
        assert float(row["end_cash"]) == rec["final_position"]["cash"]
        assert float(row["end_value"]) == rec["final_position"]["value"]
        assert int(row["trades_count"]) == len(rec["trades"])
        for name in ("daily_return", "cumulative_return", "drawdown"):
            assert float(row[name]) == rec["metrics"][name]
        held = [f"{h['symbol']} {h['shares']!r} @ {h['price']!r}" for h in rec["final_position"]["holdings"]]
        assert row["end_holdings"] == "; ".join(held)


def test_equity_csv_matches_the_chart(res: Stack, runs: dict[str, str]) -> None:
    job_id = runs["second"]
    page = httpx.get(f"{res.url}/jobs/{job_id}", timeout=10).text
    assert f'href="/results.csv?job_id={job_id}"' in page
    assert f'href="/simulations/{job_id}/equity.csv"' in page
    shown = {(m, d): float(v.replace(",", "")) for m, d, v in
             re.findall(r"<title>(\w+) (\d{4}-\d\d-\d\d): ([\d,]+\.\d\d)</title>", html.unescape(page))}
    r = httpx.get(f"{res.url}/simulations/{job_id}/equity.csv", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["date", "hold", "mom"]
    # the run's days (it resumed on 2025-03-08)
    assert [row[0] for row in rows[1:]] == ["2025-03-10", "2025-03-11", "2025-03-12", "2025-03-13",
                                            "2025-03-14"]
    assert len(shown) == 10
    for row in rows[1:]:
        for model, value in zip(("hold", "mom"), row[1:], strict=True):
            assert round(float(value), 2) == shown[(model, row[0])]
    assert httpx.get(f"{res.url}/simulations/nope/equity.csv", timeout=10).status_code == 404


def test_chart_has_date_and_value_ticks_and_a_drawdown_panel(res: Stack, runs: dict[str, str]) -> None:
    page = httpx.get(f"{res.url}/jobs/{runs['second']}", timeout=10).text
    x_ticks = re.findall(r'data-testid="x-tick">([^<]+)<', page)
    y_ticks = re.findall(r'data-testid="y-tick">([^<]+)<', page)
    assert x_ticks == ["2025-03-10", "2025-03-11", "2025-03-12", "2025-03-13", "2025-03-14"]
    assert len(y_ticks) >= 3 and all(re.fullmatch(r"[\d,]+", t) for t in y_ticks)
    assert 'data-testid="drawdown-chart"' in page and 'data-testid="drawdown-mom"' in page
    assert re.search(r"<title>mom 2025-03-1\d: drawdown \d+\.\d\d%</title>", page)


# -- the peer's behaviour ------------------------------------------------------------------------

def test_health_in_the_peers_shape(res: Stack) -> None:
    body = httpx.get(f"{res.url}/health", timeout=10).json()
    assert set(body) == {"status", "database", "timestamp", "version"}
    assert body["status"] == "healthy" and body["database"] == "connected"
    assert body["timestamp"].endswith("+00:00") and body["version"]


def test_cold_start_runs_end_date_alone(res: Stack, runs: dict[str, str]) -> None:
    answer = trigger(res, end_date="2025-03-21", models=["fresh", "hold"])
    assert answer["total_model_days"] == 6  # fresh: 2025-03-21 alone; hold: 03-17 to 03-21
    assert ("(resume mode: fresh from 2025-03-21 (cold start: end_date alone), hold from "
            "2025-03-15)") in answer["message"]
    res.wait(answer["job_id"])
    st = status(res, answer["job_id"])
    assert [d["date"] for d in st["details"] if d["model"] == "fresh"] == ["2025-03-21"]
    assert st["progress"]["completed"] == 6
    assert st["metrics"]["fresh"]["run"]["start_value"] == 50_000


def test_already_completed_days_are_named_by_the_trigger_and_skipped_with_a_reason(
        res: Stack, runs: dict[str, str]) -> None:
    answer = trigger(res, start_date="2025-03-06", end_date="2025-03-11", models=["hold", "late"])
    assert answer["total_model_days"] == 4  # late: 4 days; hold: all 4 done before
    assert answer["warnings"] == [
        "hold: 4 model-days already completed, skipped (replace_existing runs them again): "
        "2025-03-06, 2025-03-07, 2025-03-10, 2025-03-11"]
    res.wait(answer["job_id"])
    details = status(res, answer["job_id"])["details"]
    assert {(d["status"], d["error"]) for d in details if d["model"] == "hold"} == {
        ("skipped", "Already completed")}
    assert {(d["status"], d["error"]) for d in details if d["model"] == "late"} == {("completed", None)}
    page = httpx.get(f"{res.url}/jobs/{answer['job_id']}", timeout=10).text
    assert 'title="hold 2025-03-06: skipped — Already completed"' in page


def test_a_dropped_trade_is_a_warning_of_its_model_day(res: Stack) -> None:
    answer = trigger(res, start_date="2025-05-05", end_date="2025-05-06", models=["tiny"])
    job = res.wait(answer["job_id"])
    assert job["warnings"] == ["tiny: 2 model-days with warnings (a wanted trade dropped, or a symbol "
                               "without a close), first 2025-05-05; see each model-day"]
    wanted = [f"{s}: wanted buy of 333.33 (33.33% of the portfolio) dropped: under min_trade_value "
              "500.00" for s in ("RESA", "RESB", "RESC")]
    details = status(res, answer["job_id"])["details"]
    assert [d["warnings"] for d in details] == [wanted, wanted]  # tried again the next day
    page = httpx.get(f"{res.url}/jobs/{answer['job_id']}", timeout=10).text
    assert html.escape(f"tiny 2025-05-05: completed — {'; '.join(wanted)}") in page  # the cell's tooltip
    record = results(res, model="tiny").json()["results"][0]
    assert record["warnings"] == wanted and record["trades"] == []


# -- the command line -----------------------------------------------------------------------------

def cli(s: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "web.cli", "simulate", *args, "--url", s.url],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_runs_follows_and_prints_the_metrics(res: Stack, runs: dict[str, str]) -> None:
    done = cli(res, "--start", "2025-04-01", "--end", "2025-04-04", "--models", "cross,mom")
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = re.search(r"job ([0-9a-f]{32}) is pending", done.stdout).group(1)
    assert f"job {job_id} completed" in done.stdout
    metrics = status(res, job_id)["metrics"]
    table = done.stdout[done.stdout.index("Results"):]
    for model in ("cross", "mom"):
        line = next(ln for ln in table.splitlines() if f" {model} " in ln)
        assert f"{metrics[model]['run']['total_return']:+.2%}" in line
        assert f"{metrics[model]['run']['end_value']:,.2f}" in line
    refused = cli(res, "--end", "2025-04-04", "--models", "nope")
    assert refused.returncode == 1
    assert "refused (400)" in refused.stderr and "Unknown model 'nope'" in refused.stderr
