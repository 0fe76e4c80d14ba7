"""The web UI in real headless Chromium (Debian's ``chromium``, driven by Playwright)
against a real ``provml serve`` process on the demo store.

Every test saves a screenshot of its page into ``artifacts/screenshots/``. Without
chromium the module is skipped locally and fails under CI (``CI=true``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from test_api_server import TOKEN, provml_serve
from test_demo import provml_cli

from provml.ids import iri
from provml.records import Bundle, Element, Ref, Relation, bundle_to_dict
from provml.vocab import PROV_LABEL, PROV_TYPE, ml

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
MODEL = iri("model", "salt-detector")
V1, V2 = iri("model", "salt-detector", "v", 1), iri("model", "salt-detector", "v", 2)
RAW_FILES = [f"{name}.npy" for name in ("SRV-2019-A", "SRV-2020-B", "SRV-2023-D", "SRV-2024-E")]
XSS = '<img src=x onerror="window.__xss = 1">'
XSS_NODE = "https://provml.local/data/xss-probe"

if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs it with apt-get")
    pytest.skip("needs Debian's chromium (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


def ui(path: str, **query: str) -> str:
    return path + (
        "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items()) if query else ""
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A demo store made once for the module, and what ``provml demo`` printed."""
    store = tmp_path_factory.mktemp("ui-demo") / "store"
    done = provml_cli("demo", store=store)
    assert done.returncode == 0, done.stderr
    return store, done.stdout


@pytest.fixture(scope="module")
def server(demo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``provml serve`` on the demo store."""
    store, _ = demo
    # The demo's own RDF store (already projected), not a new one to rebuild.
    home = tmp_path_factory.mktemp("ui-serve")
    with provml_serve(str(store), home, PROVML_RDF=str(store / "provml.oxigraph")) as url:
        yield url


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``provml serve`` on an empty store that answers reads only with a token."""
    home = tmp_path_factory.mktemp("ui-empty")
    with provml_serve(str(home / "store"), home, PROVML_READ_TOKEN="r3ad") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server, request):
    """A fresh tab on the demo server; ``page.errors`` collects console errors and
    uncaught exceptions. A screenshot is saved when the test ends."""
    context = browser.new_context(base_url=server, viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.errors = []
    tab.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: tab.errors.append(f"page error: {e}"))
    yield tab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def open_page(tab, path: str) -> None:
    tab.goto(path)
    tab.wait_for_selector("body[data-ready=true]", timeout=30_000)


def shown_labels(tab, ml_class: str | None = None) -> list[str]:
    selector = f'#graph g.node[data-class="{ml_class}"]' if ml_class else "#graph g.node"
    return [
        t.split(",")[0]
        for t in tab.eval_on_selector_all(
            selector, "els => els.map(e => e.getAttribute('aria-label'))"
        )
    ]


def node(tab, node_id: str):
    return tab.locator(f'#graph g.node[data-id="{node_id}"]')


def test_search_from_the_home_page_finds_the_demo_model(page):
    open_page(page, "/ui/")
    page.fill("#home-q", "salt-detector")
    page.press("#home-q", "Enter")
    page.wait_for_selector("body[data-page=search][data-ready=true]")
    models = page.locator("#results section", has_text="Models")
    assert models.get_by_role("link", name="salt-detector", exact=True).count() == 1


def test_the_home_page_shows_counts_and_the_newest_model_versions(page):
    open_page(page, "/ui/")
    assert page.locator(".card", has_text="model versions").inner_text().startswith("2")
    newest = page.locator("section", has_text="Newest model versions")
    assert newest.get_by_role("link", name="salt-detector v2").count() == 1


def test_the_model_page_lists_its_versions(page):
    open_page(page, ui("/ui/model", id=MODEL))
    rows = page.locator("#versions tbody tr")
    assert rows.count() == 2
    assert "salt-detector v1" in rows.nth(0).inner_text()
    assert "val_accuracy" in rows.nth(1).inner_text()


def test_the_lineage_of_the_final_version_shows_the_raw_domain_files_upstream(page):
    open_page(page, ui("/ui/lineage", id=V2, direction="up"))
    assert set(RAW_FILES) <= set(shown_labels(page, "DomainData"))


def test_clicking_a_node_shows_its_attributes(page):
    open_page(page, ui("/ui/lineage", id=V2, direction="up"))
    node(page, V1).click()
    details = page.locator("#details")
    assert details.locator("h2").inner_text() == "salt-detector v1"
    assert "provml:versionNumber" in details.inner_text()


def test_a_node_can_be_selected_with_the_keyboard(page):
    open_page(page, ui("/ui/lineage", id=V2, direction="up"))
    node(page, V2).focus()
    page.keyboard.press("Enter")
    assert page.locator("#details h2").inner_text() == "salt-detector v2"


def test_expanding_a_node_adds_its_neighbours(page):
    open_page(page, ui("/ui/lineage", id=V2, direction="up", depth="1"))
    before = len(shown_labels(page))
    node(page, V1).click()
    page.click("#expand")
    page.wait_for_function(
        f"document.querySelectorAll('#graph g.node').length > {before}", timeout=10_000
    )
    assert "added" in page.inner_text("#graph-status")


def test_changing_the_depth_redraws_the_graph(page):
    open_page(page, ui("/ui/lineage", id=V2, direction="up", depth="1"))
    before = len(shown_labels(page))
    page.select_option("#depth", "")
    page.wait_for_function(
        f"document.querySelectorAll('#graph g.node').length > {before}", timeout=10_000
    )


def test_two_selected_nodes_have_the_path_between_them_highlighted(page):
    open_page(page, ui("/ui/lineage", id=V2, direction="up"))
    node(page, V2).click()
    page.click("#path-from")
    raw = page.locator('#graph g.node[data-class="DomainData"]', has_text="SRV-2024-E.npy")
    raw.first.click()
    page.click("#path-to")
    assert page.locator("#graph path.edge.on-path").count() >= 2
    assert re.search(r"path of \d+ relations", page.inner_text("#graph-status"))


def test_the_shown_subgraph_exports_as_prov_n(page):
    open_page(page, ui("/ui/lineage", id=V2, direction="up", depth="2"))
    page.select_option("#export-format", "provn")
    with page.expect_download() as info:
        page.click("#export")
    text = Path(info.value.path()).read_text()
    assert text.startswith("document")
    assert '"salt-detector v2"' in text


def test_the_shown_subgraph_exports_as_an_svg_image(page):
    open_page(page, ui("/ui/lineage", id=V2, direction="up", depth="2"))
    page.select_option("#export-format", "svg")
    with page.expect_download() as info:
        page.click("#export")
    assert "<svg" in Path(info.value.path()).read_text()


def test_the_shown_subgraph_exports_as_a_png_image(page):
    open_page(page, ui("/ui/lineage", id=V2, direction="up", depth="2"))
    page.select_option("#export-format", "png")
    with page.expect_download() as info:
        page.click("#export")
    assert Path(info.value.path()).read_bytes().startswith(b"\x89PNG")


def test_the_sparql_console_runs_an_example_query_and_shows_rows(page):
    open_page(page, "/ui/sparql")
    page.select_option("#example", index=1)
    page.click("#run-query")
    page.wait_for_selector("#results-table")
    table = page.inner_text("#results-table")
    assert "SRV-2024-E.npy" in table
    assert page.locator("#results-table tbody tr").count() >= len(RAW_FILES)


def test_a_sparql_syntax_error_is_shown_inline(page):
    open_page(page, "/ui/sparql")
    page.fill("#sparql-query", "SELECT WHERE {")
    page.click("#run-query")
    alert = page.locator("#sparql-results [role=alert]")
    alert.wait_for()
    assert "refused" in alert.inner_text()


def test_the_compare_page_shows_what_changed_between_two_versions(page):
    open_page(page, ui("/ui/compare", a=V1, b=V2))
    assert "eta0" in page.locator("table", has_text="hyperparameter").inner_text()
    only_b = page.locator("#diff-data .only-b")
    assert "SRV-2024-E.npy" in only_b.inner_text()


def test_the_run_page_draws_the_timeline_and_a_curve_per_metric(page, server):
    runs = httpx.get(
        server + "/api/v1/runs", params={"class": "WorkflowExecution", "q": "training"}
    ).json()["items"]
    open_page(page, ui("/ui/run", id=runs[0]["id"]))
    assert page.locator("#timeline rect.bar").count() >= 3
    curves = page.locator("#plots figure")
    assert {"train_loss", "val_accuracy"} <= set(curves.locator("figcaption").all_inner_texts())
    assert page.locator("#plots polyline.curve").count() == curves.count()


def test_an_unknown_id_is_reported_on_the_page(page):
    open_page(page, ui("/ui/lineage", id="https://provml.local/model/no-such-model"))
    assert page.locator("h1").inner_text() == "Unknown id"
    assert "no node with the id" in page.inner_text("[role=alert]")
    assert page.errors == []


def test_html_in_a_stored_label_is_shown_as_text_and_never_run(page, server):
    probe = Bundle(
        "https://provml.local/run/xss-probe",
        (
            Element(
                "entity",
                XSS_NODE,
                ((PROV_TYPE, Ref(ml("DomainData"))), (PROV_LABEL, XSS), (ml("name"), XSS)),
            ),
        ),
    )
    response = httpx.post(
        server + "/api/v1/records",
        json={"bundles": [bundle_to_dict(probe)]},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 200, response.text
    open_page(page, ui("/ui/search", q="xss-probe"))
    assert XSS in page.inner_text("#results")
    open_page(page, ui("/ui/lineage", id=XSS_NODE))
    node(page, XSS_NODE).click()
    assert XSS in page.inner_text("#details")
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.__xss") is None


def test_a_node_recorded_in_many_runs_lists_the_first_and_counts_the_rest(page, server):
    shared = "https://provml.local/data/shared-by-many-runs"
    runs = [
        Bundle(
            f"https://provml.local/run/many-{n:02d}",
            (Element("entity", shared, ((PROV_TYPE, Ref(ml("DomainData"))),)),),
        )
        for n in range(13)
    ]
    response = httpx.post(
        server + "/api/v1/records",
        json={"bundles": [bundle_to_dict(b) for b in runs]},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 200, response.text
    open_page(page, ui("/ui/lineage", id=shared))
    node(page, shared).click()
    recorded_in = page.locator("#details p", has_text="Recorded in")
    assert recorded_in.locator("a.iri").count() == 10  # the lineage answer's default cap
    assert recorded_in.locator(".more-bundles").inner_text() == "and 3 more"


def test_no_page_logs_a_javascript_error(page, server):
    run = httpx.get(server + "/api/v1/runs", params={"class": "WorkflowExecution"}).json()
    paths = [
        "/ui/",
        ui("/ui/search", q="salt"),
        ui("/ui/model", id=MODEL),
        ui("/ui/lineage", id=V2),
        ui("/ui/compare", a=V1, b=V2),
        "/ui/compare",
        ui("/ui/run", id=run["items"][0]["id"]),
        ui("/ui/node", id=V1),
        "/ui/sparql",
    ]
    for path in paths:
        open_page(page, path)
        assert page.locator("main [role=alert]").count() == 0, path
    page.click("#run-query")
    page.wait_for_selector("#results-table")
    assert page.errors == []


def test_without_the_read_token_a_page_says_that_one_is_needed(browser, empty_server):
    context = browser.new_context(base_url=empty_server)
    tab = context.new_page()
    open_page(tab, "/ui/")
    assert "needs a read token" in tab.inner_text("[role=alert]")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / "token-needed.png"))
    context.close()


def test_with_the_read_token_an_empty_store_says_it_is_empty(browser, empty_server):
    context = browser.new_context(base_url=empty_server)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    open_page(tab, "/ui/")
    tab.click(".token summary")
    tab.fill("#token-input", "r3ad")
    tab.press("#token-input", "Enter")
    tab.wait_for_selector("text=This store is empty")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / "empty-store.png"))
    context.close()
    assert errors == []


def test_the_demo_ends_by_printing_the_serve_command_and_the_url_to_open(demo):
    _, out = demo
    last = out.strip().splitlines()[-2:]
    assert last[0].strip().startswith("provml serve --store ")
    assert last[1].strip() == "http://127.0.0.1:8000/ui/"


def test_a_server_error_is_shown_as_a_message(page):
    page.route(
        "**/api/v1/ui/summary",
        lambda route: route.fulfill(
            status=500,
            content_type="application/json",
            body='{"error": "internal_error", "message": "the server failed: KeyError"}',
        ),
    )
    open_page(page, "/ui/")
    assert "The server failed (HTTP 500)" in page.inner_text("[role=alert]")


def test_the_fit_button_shrinks_a_wide_graph_into_view(page):
    open_page(page, ui("/ui/lineage", id=V2, direction="up"))
    page.click("#fit")
    box = page.eval_on_selector("#graph-box", "b => [b.clientWidth, b.scrollWidth]")
    assert box[1] <= box[0] + 1


def big_workflow(steps: int = 30, inputs: int = 9) -> Bundle:
    """A chain of ``steps`` executions, each using ``inputs`` files and the previous output."""
    base = "https://provml.local/big/"
    records: list[Element | Relation] = []
    for step in range(steps):
        activity, output = f"{base}run-{step}", f"{base}out-{step}"
        records.append(Element("activity", activity, ((PROV_LABEL, f"step {step}"),)))
        records.append(Element("entity", output, ((PROV_LABEL, f"output {step}"),)))
        records.append(Relation("wasGeneratedBy", output, activity))
        if step:
            records.append(Relation("used", activity, f"{base}out-{step - 1}"))
        for k in range(inputs):
            data = f"{base}in-{step}-{k}"
            domain = ((PROV_TYPE, Ref(ml("DomainData"))), (PROV_LABEL, f"file {step}.{k}"))
            records.append(Element("entity", data, domain))
            records.append(Relation("used", activity, data))
    return Bundle(base + "bundle", tuple(records))


def test_a_lineage_of_three_hundred_nodes_is_drawn_within_three_seconds(page, server):
    response = httpx.post(
        server + "/api/v1/records",
        json={"bundles": [bundle_to_dict(big_workflow())]},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 200, response.text
    started = time.monotonic()
    open_page(page, ui("/ui/lineage", id="https://provml.local/big/out-29", direction="up"))
    assert time.monotonic() - started < 3
    assert len(shown_labels(page)) == 330
    node(page, "https://provml.local/big/run-0").click()
    assert page.locator("#details h2").inner_text() == "step 0"
