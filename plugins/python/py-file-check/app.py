"""`py-file-check`: a deployhost step plugin written in Python.

Checks a file the pipeline grants for reading (it exists, contains the
expected texts, has the expected sha256) and, optionally, that a service
answers a GET with the expected status and body text, sending a bearer
token from a granted secret. Built into a WebAssembly component with
componentize-py against `wit/world.wit` (see README.md beside this file).
"""

import hashlib
import time

import wit_world
from deployhost_sdk import (
    Capability,
    Info,
    ReportBuilder,
    Status,
    StepContext,
    duration_seconds,
    failed,
    guest_path,
    http_get,
    invalid,
    log,
    params,
    secret,
)


def info():
    return (
        Info("py-file-check", "checks a granted file's content and digest, and optionally a URL (written in Python)")
        .param("path", "string", True, None, "file to check, relative to the pipeline's folder, under an fs.read grant")
        .param("contains", "list", False, None, "texts the file must contain (one text or a list)")
        .param("sha256", "string", False, None, "digest the file must have")
        .param("url", "string", False, None, "also GET this URL (needs a net grant)")
        .param("expect", "integer", False, "200", "status the URL must answer")
        .param("body_contains", "string", False, None, "text the URL's body must contain")
        .param("token_secret", "string", False, None, "secret sent as a bearer token with the GET")
        .param("timeout", "duration", False, "5s", "timeout of the GET")
        .needs(Capability.FS_READ, "path", "reads the file it checks")
        .needs(Capability.NET, "url", "sends one GET to the URL")
        .needs(Capability.SECRET, "token_secret", "sends the secret as a bearer token")
        .build()
    )


def check_file(p, report, problems):
    """Reads the file (the host denies and audits paths outside the grant)."""
    path = p["path"]
    if not isinstance(path, str) or not path:
        raise invalid("`path` must be a file path")
    try:
        with open(guest_path(path), "rb") as f:
            data = f.read()
    except OSError as e:
        raise failed(f"cannot read `{path}`: {e.strerror or e} (is its folder under fs.read?)")
    digest = hashlib.sha256(data).hexdigest()
    report.output("bytes", len(data)).output("sha256", digest).metric("file_bytes", len(data), "bytes")
    log("info", f"read {path}: {len(data)} bytes, sha256 {digest}")

    wanted = p.get("contains", [])
    wanted = [wanted] if isinstance(wanted, str) else wanted
    if not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted):
        raise invalid("`contains` must be a text or a list of texts")
    text = data.decode("utf-8", "replace")
    problems += [f"{path} does not contain {w!r}" for w in wanted if w not in text]

    expected = p.get("sha256")
    if expected is not None and str(expected).strip().lower() != digest:
        problems.append(f"{path} has sha256 {digest}, expected {expected}")


def check_url(p, report, problems):
    url = p["url"]
    if not isinstance(url, str):
        raise invalid("`url` must be a URL")
    expect = p.get("expect", 200)
    if not isinstance(expect, int) or isinstance(expect, bool):
        raise invalid("`expect` must be an HTTP status such as 200")
    headers = []
    if "token_secret" in p:
        headers.append(("authorization", f"Bearer {secret(str(p['token_secret']))}"))
    timeout = duration_seconds("timeout", p.get("timeout", "5s"))
    started = time.monotonic()
    response = http_get(url, headers, timeout)
    ms = (time.monotonic() - started) * 1000
    report.output("http_status", response.status).metric("latency_ms", ms, "ms")
    log("info", f"GET {url}: {response.status} in {ms:.0f} ms")
    if response.status != expect:
        problems.append(f"{url} answered {response.status}, expected {expect}")
    needle = p.get("body_contains")
    if needle is not None and str(needle) not in response.text():
        problems.append(f"{url} body does not contain {needle!r}")


class WitWorld(wit_world.WitWorld):
    def describe(self):
        return info()

    def run(self, ctx: StepContext):
        p = params(ctx, info())
        report = ReportBuilder()
        problems = []
        check_file(p, report, problems)
        if "url" in p:
            check_url(p, report, problems)
        for problem in problems:
            log("warn", problem)
        if problems:
            return report.finish(Status.FAILED, "; ".join(problems))
        checked = p["path"] + (f" and {p['url']}" if "url" in p else "")
        return report.finish(Status.PASSED, f"{checked} as expected")
