"""Drives the ekube dashboard in headless Chromium as a person would, for tests/dashboard.rs.

Usage: drive.py CONFIG.json, where the file holds
  url          the dashboard's URL (through `kubectl proxy`)
  token        a token that may read the cluster and scale Deployments
  weak_token   a token of a ServiceAccount without any rights
  nodes        the node names the Nodes page must list with CPU and memory figures
  deployment   namespace/name of the Deployment to scale
  replicas     what to scale it to
  log_text     text the Deployment's pods write to their log
  shots        the directory the screenshots go to

It prints one JSON object (what the pages showed) and exits 0, or prints why and exits 1.
"""

import json
import pathlib
import sys

from playwright.sync_api import sync_playwright

# Long enough for a metrics scrape and a rollout; each step fails on its own deadline.
STEP_MS = 120_000


def sign_in(page, token):
    """Signs in with `token`; fails with the sign-in form's error when it is refused."""
    page.fill("#token", token)
    page.click("#signin")
    page.wait_for_function(
        """() => !document.querySelector('#nav').hidden
            || (document.querySelector('#login-error') || {}).textContent"""
    )
    if page.is_hidden("#nav"):
        raise RuntimeError(f"sign-in refused: {page.text_content('#login-error')}")


def main():
    config = json.loads(pathlib.Path(sys.argv[1]).read_text())
    shots = pathlib.Path(config["shots"])
    shots.mkdir(parents=True, exist_ok=True)
    ns, deployment = config["deployment"].split("/")
    seen = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        # The page forbids eval by its CSP; playwright needs it for its waits.
        page = browser.new_page(viewport={"width": 1400, "height": 900}, bypass_csp=True)
        page.set_default_timeout(STEP_MS)
        page.goto(config["url"])

        # A token the apiserver does not know is refused at sign-in.
        page.fill("#token", "not-a-token")
        page.click("#signin")
        page.wait_for_function(
            "document.querySelector('#login-error').textContent.includes('401')"
        )
        seen["bad_token"] = page.text_content("#login-error")
        page.screenshot(path=str(shots / "login.png"))

        sign_in(page, config["token"])

        # Nodes, each with its `top` figures.
        page.goto(config["url"] + "#/nodes")
        for node in config["nodes"]:
            page.wait_for_function(
                """name => {
                    const row = document.querySelector(`#nodes tr[data-name="${name}"]`);
                    return row && /\\d+m/.test(row.querySelector('td.cpu').textContent)
                        && /\\d+Mi/.test(row.querySelector('td.memory').textContent);
                }""",
                arg=node,
            )
        seen["nodes"] = page.eval_on_selector_all(
            "#nodes tbody tr",
            "rows => rows.map(r => [...r.children].map(td => td.textContent))",
        )
        page.screenshot(path=str(shots / "nodes.png"), full_page=True)

        # The Deployment's pods, running.
        page.goto(config["url"] + "#/pods")
        page.select_option("#namespace", ns)
        prefix = f"{ns}/{deployment}-"
        page.wait_for_function(
            """prefix => {
                const rows = [...document.querySelectorAll('#pods tbody tr')]
                    .filter(r => r.dataset.name.startsWith(prefix));
                return rows.length > 0
                    && rows.every(r => r.querySelector('td.status').textContent === 'Running');
            }""",
            arg=prefix,
        )
        seen["pods"] = page.eval_on_selector_all(
            "#pods tbody tr", "rows => rows.map(r => r.dataset.name)"
        )
        page.screenshot(path=str(shots / "pods.png"), full_page=True)

        # One pod: its events and its log.
        page.click(f'#pods tr[data-name^="{prefix}"] a')
        page.wait_for_function(
            "text => document.querySelector('#logs') && "
            "document.querySelector('#logs').textContent.includes(text)",
            arg=config["log_text"],
        )
        page.wait_for_selector("#events tbody tr")
        seen["events"] = page.eval_on_selector_all(
            "#events tbody tr", "rows => rows.map(r => r.children[1].textContent)"
        )
        seen["log"] = page.text_content("#logs")
        page.screenshot(path=str(shots / "pod.png"), full_page=True)

        # Scale the Deployment and watch it get there.
        page.goto(config["url"] + "#/workloads")
        key = f"{ns}/{deployment}"
        replicas = str(config["replicas"])
        page.fill(f'input[data-scale="{key}"]', replicas)
        page.click(f'button[data-scale-button="{key}"]')
        page.wait_for_function(
            "text => document.querySelector('#scale-status').textContent.includes(text)",
            arg=f"Scaled {key} to {replicas}",
        )
        page.wait_for_function(
            """([key, n]) => {
                const row = document.querySelector(`#deployments tr[data-name="${key}"]`);
                return row && row.children[2].textContent === `${n}/${n}`;
            }""",
            arg=[key, replicas],
        )
        page.screenshot(path=str(shots / "workloads.png"), full_page=True)

        # A token without rights sees the apiserver's refusal, not the dashboard's data.
        page.click("#signout")
        sign_in(page, config["weak_token"])
        page.goto(config["url"] + "#/nodes")
        page.wait_for_selector("section .error")
        seen["weak_nodes"] = page.text_content("section .error")
        page.screenshot(path=str(shots / "forbidden.png"), full_page=True)
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - the test prints why the browser stopped
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
