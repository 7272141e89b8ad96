"""Debian's Chromium driven by Playwright, and the Airflow UI steps a user takes in it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking switches Chromium keeps dialling Google's hosts, which a closed
# network refuses; a fresh profile per run keeps runs independent.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "airflow-ui"


def chromium_path() -> str:
    """Debian's Chromium, or a clear instruction (Playwright cannot download its own browser here)."""
    path = shutil.which("chromium") or CHROMIUM
    if not Path(path).exists():
        raise RuntimeError(
            "The browser tests need Debian's Chromium at /usr/bin/chromium: run "
            "`apt-get install -y chromium` (scripts/test.sh does this when run as root)."
        )
    return path


def screenshot(page: Any, name: str) -> Path:
    """Save a screenshot of ``page`` as a test artifact and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def keep_log(cluster: Any, name: str) -> Path:
    """Keep what the Airflow components printed as a test artifact (the cluster's home is removed)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    shutil.copy(cluster.log_path, path)
    return path


def sign_in(page: Any, url: str, user: str, password: str) -> None:
    """The simple auth manager's sign-in form."""
    page.goto(f"{url}/")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/")


def sign_in_fab(page: Any, url: str, user: str, password: str) -> None:
    """Airflow 2's sign-in form (Flask-AppBuilder's database users)."""
    page.goto(f"{url}/login/")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{url}/home")


def modal_dialog(page: Any) -> Any:
    """
    The open modal dialog (a form, the Trigger or Run Backfill dialog).

    Not ``get_by_role("dialog")``: the UI's popovers (the date-time pickers) carry ``role=dialog`` too,
    and one that is still animating closed is in the accessibility tree beside the modal, which makes the
    role alone match two elements.
    """
    return page.get_by_role("dialog").and_(page.locator("[data-scope=dialog][data-part=content]"))


def pick_datetime(page: Any, dialog: Any, index: int, date: str, time: str) -> None:
    """
    Fill the ``index``-th date-time picker of ``dialog`` (a popover with a date and a time field).

    :param date: ``YYYY/MM/DD``.
    :param time: ``HH:mm`` (the UI's time zone, UTC here).
    """
    dialog.get_by_test_id("datetime-input").nth(index).click()
    popover = page.locator("[data-scope=popover][data-part=content][data-state=open]")
    popover.get_by_placeholder("YYYY/MM/DD").fill(date)
    popover.get_by_placeholder("HH:mm").fill(time)
    popover.get_by_placeholder("HH:mm").press("Tab")
    dialog.get_by_text("Date Range").click()  # closes the popover without closing the dialog
    popover.wait_for(state="hidden")
