"""Fixing the labels in label_issues.html: a person's clicks and key presses in headless Chromium
(Selenium with Debian's chromium-driver), the decisions surviving a reload, the download, and a
run trained from it with --data.labels_file."""

from __future__ import annotations

import csv
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch

from ln_lightning.cli import main as ln_fit_main
from ln_lightning.data.pool import read_pool_labels
from ln_lightning.data.synthetic import IMAGE_CLASSES, write_image_files
from ln_lightning.label_issues.gallery import write_gallery
from tests.helpers import SMALL_IMAGES
from tests.test_gallery import CHROMIUM, fit_with_report, page_data, scored

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMEDRIVER = shutil.which("chromedriver") or shutil.which("chromium-driver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no Chromium and chromedriver here (Debian: apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real run: two epochs on 3 x 24 PNGs, 4 of each class filed under the next class, and
    one picture copied into another class's folder (a near-duplicate with another label)."""
    root = tmp_path_factory.mktemp("review")
    paths, _, _ = write_image_files(root / "photos", 24, flips=4, in_given_folder=True)
    original = paths[-1]  # the last triangle, filed under triangle
    shutil.copy(original, root / "photos" / IMAGE_CLASSES[0] / "copy_of_a_triangle.png")
    return fit_with_report(root)


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium that saves downloads in ``tmp_path / "downloads"``."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    prefs = {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    options.add_experimental_option("prefs", prefs)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads
    yield driver
    driver.quit()


def cards(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#grid .card")


def decisions_shown(driver) -> list[str]:
    return [card.get_attribute("data-decision") for card in cards(driver)]


def press(driver, card, key: str) -> None:
    card.click()  # focus the card, as a person does before a shortcut
    driver.switch_to.active_element.send_keys(key)


def downloaded(driver, name: str = "reviewed_labels.csv") -> Path:
    """The file the page downloaded, once written whole."""
    path = driver.downloads / name
    for _ in range(100):
        partial = list(driver.downloads.glob("*.crdownload"))
        if path.is_file() and path.stat().st_size and not partial:
            return path
        time.sleep(0.1)
    raise AssertionError(f"no {name} in {driver.downloads}: {list(driver.downloads.iterdir())}")


def test_review_reload_download_and_retrain(
    run_dir, browser, tmp_path, monkeypatch, capsys, lightning_log
):
    page = run_dir / "label_issues.html"
    flagged = page_data(page)["rows"]
    assert len(flagged) >= 6
    browser.get(page.resolve().as_uri())
    shown = cards(browser)
    assert len(shown) == min(60, len(flagged))

    # accept (a button), keep (the k key), another class (the menu), drop (d), unsure (u)
    shown[0].find_element(By.CSS_SELECTOR, "button[data-action=accept]").click()
    press(browser, cards(browser)[1], "k")
    third = flagged[2]
    other = next(c for c in IMAGE_CLASSES if c not in (third["given"], third["suggested"]))
    Select(cards(browser)[2].find_element(By.TAG_NAME, "select")).select_by_value(other)
    press(browser, cards(browser)[3], "d")
    press(browser, cards(browser)[4], "u")
    # a digit relabels to the class of that number, shown on the page
    fifth = flagged[5]
    digit = str(IMAGE_CLASSES.index(fifth["suggested"]) + 1)
    assert f"{digit} {fifth['suggested']}" in browser.find_element(By.ID, "class-keys").text
    press(browser, cards(browser)[5], digit)
    expected = ["accept", "keep", "relabel", "drop", "unsure", "accept"]
    assert decisions_shown(browser)[:6] == expected
    progress = browser.find_element(By.ID, "progress").text
    assert progress.startswith(f"6 of {len(flagged)} flagged reviewed")
    assert "2 accepted, 1 kept, 1 relabelled, 1 dropped, 1 unsure" in progress

    # a reload loses nothing
    browser.refresh()
    assert decisions_shown(browser)[:6] == expected
    assert browser.find_element(By.ID, "progress").text == progress

    # a bulk action on a filtered page: every flagged label of one given class accepted
    dropped_class = flagged[3]["given"]  # another class, so the drop stays
    given = next((r["given"] for r in flagged[6:] if r["given"] != dropped_class), dropped_class)
    Select(browser.find_element(By.ID, "given")).select_by_value(given)
    browser.find_element(By.ID, "accept-page").click()
    filtered = [r for r in flagged if r["given"] == given][:60]
    assert decisions_shown(browser) == ["accept"] * len(filtered)
    decided = {
        flagged[0]["id"]: ("accept", flagged[0]["suggested"]),
        flagged[1]["id"]: ("keep", flagged[1]["given"]),
        flagged[2]["id"]: ("relabel", other),
        flagged[3]["id"]: ("drop", flagged[3]["given"]),
        flagged[4]["id"]: ("unsure", flagged[4]["given"]),
        flagged[5]["id"]: ("accept", fifth["suggested"]),
    }
    decided |= {r["id"]: ("accept", r["suggested"]) for r in filtered}  # the bulk action came last

    # the download: every example once, the decisions applied
    browser.find_element(By.ID, "download").click()
    reviewed = downloaded(browser)
    with reviewed.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with (run_dir / "label_issues.csv").open(newline="") as handle:
        issues = {r["path"]: r for r in csv.DictReader(handle)}
    assert list(rows[0]) == ["path", "label", "given_label", "decision"]
    assert sorted(r["path"] for r in rows) == sorted(issues)
    for row in rows:
        decision, label = decided.get(row["path"], ("", issues[row["path"]]["given_label"]))
        assert (row["decision"], row["label"]) == (decision, label), row
        assert row["given_label"] == issues[row["path"]]["given_label"]

    # trains as it is: one epoch from --data.labels_file, the dropped example left out
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [
        "ln-fit", "fit", "--config", str(ROOT / "zoo/configs/own/images.yaml"),
        f"--data.labels_file={reviewed}", *SMALL_IMAGES, "--trainer.max_epochs=1",
    ])  # fmt: skip
    ln_fit_main()
    output = "".join(capsys.readouterr()) + "\n".join(lightning_log)
    dropped = sum(d == "drop" for d, _ in decided.values())
    assert dropped <= 1 and f"of {len(rows) - dropped} labels look wrong" in output


def test_the_copy_is_a_near_duplicate_with_another_label_on_the_page(run_dir, browser):
    with (run_dir / "near_duplicates.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    pairs = {frozenset(Path(r[k]).name for k in ("first", "second")) for r in rows}
    assert frozenset({"triangle_023.png", "copy_of_a_triangle.png"}) in pairs
    assert all(r["first_label"] != r["second_label"] for r in rows)
    assert len(rows) <= 3  # the copy, not every look-alike of a class
    copy = next(r for r in rows if "copy_of_a_triangle.png" in r["first"] + r["second"])
    assert float(copy["similarity"]) > 0.999
    page = run_dir / "label_issues.html"
    shown = page_data(page)["duplicates"]
    assert shown["total"] == len(rows) and len(shown["pairs"]) == min(len(rows), 300)
    browser.get(page.resolve().as_uri())
    section = browser.find_element(By.ID, "duplicates")
    assert section.is_displayed()
    assert len(section.find_elements(By.CSS_SELECTOR, ".pair")) == len(shown["pairs"])
    assert f"{len(rows)} pairs of examples look alike" in section.text


def test_data_without_files_downloads_the_pool_format(browser, tmp_path):
    """Arrays, tensors, digits: the download is an ``index,clean_label,noisy_label`` file with
    the decisions, for ``--data.noisy_labels_file``."""
    table, issues = scored()
    page = write_gallery(table, issues, ["cat", "dog", "owl"], tmp_path / "label_issues.html")
    flagged = page_data(page)["rows"]
    browser.get(page.resolve().as_uri())
    press(browser, cards(browser)[0], "d")
    press(browser, cards(browser)[1], "a")
    browser.find_element(By.ID, "download").click()
    reviewed = downloaded(browser)
    header = reviewed.read_text().splitlines()[0]
    assert header == "index,clean_label,noisy_label,given_label,decision"
    clean, noisy, dropped = read_pool_labels(reviewed)
    assert torch.equal(clean, table.clean) and dropped.nonzero().flatten().tolist() == [
        flagged[0]["index"]
    ]
    expected = table.given.clone()
    expected[flagged[1]["index"]] = int(issues.suggested[flagged[1]["index"]])
    assert torch.equal(noisy, expected)
