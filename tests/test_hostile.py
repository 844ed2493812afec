"""Hostile upstreams and clients, on loopback and bounded in time: a trickled answer, a
slow but healthy one, the scraper's own timeout, a body past the cap, a series written
twice, values that are not numbers, credentials, idle and too many connections."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests

from llm_slo_stack.exporters import catalog, sidecar
from llm_slo_stack.exporters.catalog import DCGM, VLLM
from llm_slo_stack.exporters.gpu import DcgmCollector
from llm_slo_stack.exporters.sidecar import SidecarCollector
from llm_slo_stack.exporters.upstream import ScrapeError, Upstream
from tests.support import loopback, scrape
from tests.support.loopback import Behaviour

GAUGE = f'{VLLM.RUNNING}{{engine="0",model_name="m"}}'
BODY = f"{GAUGE} 3\n"


def trickle(headers_too: bool, seconds: float = 6.0) -> tuple[Behaviour, threading.Event]:
    """An answer sent a byte at a time for `seconds`; the event is set once the client
    has hung up (a write fails)."""
    gone = threading.Event()

    def answer(handler: BaseHTTPRequestHandler) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Pad: " + b"a" * 200
        stop = time.monotonic() + seconds
        try:
            if not headers_too:
                handler.wfile.write(head + b"\r\n\r\n")
                head = BODY.encode() * 1000
            for byte in head:
                if time.monotonic() > stop:
                    break
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(0.02)
        except OSError:
            gone.set()
        handler.close_connection = True

    return answer, gone


def delayed(body: str, seconds: float) -> Behaviour:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        loopback.payload(body)(handler)

    return answer


def fetch(upstream: Upstream) -> tuple[str, float]:
    """The failure reason ("" on success) and the seconds the fetch took."""
    start = time.monotonic()
    try:
        upstream.fetch()
        reason = ""
    except ScrapeError as error:
        reason = error.reason
    return reason, time.monotonic() - start


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_a_trickled_answer_is_cut_at_the_deadline_and_its_connection_closed(
    headers_too: bool,
) -> None:
    behaviour, gone = trickle(headers_too)
    with loopback.http(behaviour) as (url, _):
        reason, took = fetch(Upstream(url, timeout=0.5))
        assert reason == "timeout"
        assert took < 1.0  # the deadline, not the 6 s the trickle lasts
        assert gone.wait(2.0)  # the upstream connection is not left open


def test_a_server_answering_in_1_5_s_is_up_under_a_3_s_timeout() -> None:
    with loopback.http(delayed(BODY, 1.5)) as (url, _):
        reason, took = fetch(Upstream(url, timeout=3))
    assert reason == "" and 1.4 < took < 3


def test_the_scrapers_announced_timeout_shortens_the_deadline() -> None:
    with (
        loopback.http(delayed(BODY, 4)) as (upstream, _),
        loopback.exporter(SidecarCollector(upstream, timeout=10)) as url,
    ):
        start = time.monotonic()
        answer = requests.get(url, headers={"X-Prometheus-Scrape-Timeout-Seconds": "1"}, timeout=8)
        took = time.monotonic() - start
    series = scrape.samples_of(answer.text)
    assert series[(catalog.EXPORTER_UPSTREAM_UP.name, frozenset())] == 0
    assert took < 1.5  # 80 % of the announced 1 s, not --timeout 10 nor the 4 s stall


def big(size: int, declared: bool) -> Behaviour:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        if declared:
            handler.send_header("Content-Length", str(size))
        handler.end_headers()
        line = BODY.encode()
        try:
            for _ in range(size // len(line)):
                handler.wfile.write(line)
        except OSError:
            pass
        handler.close_connection = True

    return answer


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_a_body_past_the_cap_is_a_bad_payload(declared: bool) -> None:
    with loopback.http(big(4 << 20, declared)) as (url, _):
        assert fetch(Upstream(url, max_bytes=1 << 20))[0] == "bad_payload"


def test_a_series_written_twice_is_a_bad_payload_not_a_sum() -> None:
    collector = SidecarCollector("http://127.0.0.1:9/")
    assert collector.read(BODY)  # once is fine
    with pytest.raises(ScrapeError) as raised:
        collector.read(BODY + BODY)  # 3 and 3: not served as 6
    assert raised.value.reason == "bad_payload" and "twice" in str(raised.value)


def test_values_that_are_not_numbers_never_fail_a_sidecar_scrape() -> None:
    collector = SidecarCollector("http://127.0.0.1:9/")
    body = (
        f'{GAUGE} NaN\n{VLLM.WAITING}{{engine="0",model_name="m"}} +Inf\n'
        f'{VLLM.PREEMPTIONS}_total{{engine="0",model_name="m"}} -Inf\n'
    )
    got = scrape.samples(collector.families(collector.read(body)))
    m = frozenset({(catalog.MODEL, "m")})
    assert got[(catalog.REQUESTS_WAITING.name, m)] == float("inf")
    assert got[(catalog.REQUESTS_RUNNING.name, m)] != got[(catalog.REQUESTS_RUNNING.name, m)]


@pytest.mark.parametrize("value", ["+Inf", "-Inf", "NaN"])
def test_a_non_finite_xid_or_bit_mask_never_fails_a_gpu_scrape(value: str) -> None:
    gpu = 'gpu="0",UUID="GPU-1",modelName="H100"'
    body = (
        f"{DCGM.XID}{{{gpu}}} {value}\n{DCGM.CLOCKS_EVENT}{{{gpu}}} {value}\n"
        f"{DCGM.GPU_UTIL}{{{gpu}}} 50\n"
    )
    with (
        loopback.http(loopback.payload(body)) as (upstream, _),
        loopback.exporter(DcgmCollector(upstream)) as url,
    ):
        answer = requests.get(url, timeout=10)
    assert answer.status_code == 200
    series = scrape.samples_of(answer.text)
    assert not any(name == catalog.GPU_XID_ERRORS.name for name, _ in series)
    assert any(name == catalog.GPU_UTILIZATION.name for name, _ in series)


def recording(seen: list[str | None]) -> Behaviour:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        seen.append(handler.headers.get("Authorization"))
        loopback.payload(BODY)(handler)

    return answer


def test_credentials_in_the_target_go_as_basic_auth_and_are_never_printed(tmp_path: Path) -> None:
    seen: list[str | None] = []
    with loopback.http(recording(seen)) as (url, _):
        target = url.replace("http://", "http://scraper:s3cr%40t@")
        assert fetch(Upstream(target))[0] == ""
        assert seen == ["Basic " + base64.b64encode(b"scraper:s3cr@t").decode()]
        port = loopback.free_port()
        command = [
            sys.executable, "-m", "llm_slo_stack.exporters.sidecar",
            "--target", target, "--listen", f"127.0.0.1:{port}",
        ]  # fmt: skip
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        try:
            loopback.wait_until_up(f"http://127.0.0.1:{port}/metrics", process)
        finally:
            process.terminate()
            _, stderr = process.communicate(timeout=10)
    assert "127.0.0.1" in stderr and "s3cr" not in stderr and "scraper" not in stderr


def test_a_bearer_token_file_is_read_at_each_scrape(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    seen: list[str | None] = []
    with loopback.http(recording(seen)) as (url, _):
        upstream = Upstream(url, bearer_token_file=str(token))
        upstream.fetch()
        token.write_text("rotated")
        upstream.fetch()
    assert seen == ["Bearer first", "Bearer rotated"]
    with pytest.raises(ValueError, match="give one"):
        Upstream("http://u:p@127.0.0.1:9/", bearer_token_file=str(token))


def connect(url: str) -> socket.socket:
    host, port = url.split("//")[1].split("/")[0].split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def closed(sock: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing, or None if it kept the connection open."""
    sock.settimeout(within)
    try:
        return sock.recv(1024)
    except TimeoutError:
        return None


def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    with loopback.exporter(SidecarCollector("http://127.0.0.1:9/"), idle_timeout=0.3) as url:
        idle = connect(url)
        assert closed(idle, within=3) == b""  # closed by the server, nothing sent
        idle.close()


def test_connections_past_the_cap_are_answered_503_and_closed() -> None:
    collector = SidecarCollector("http://127.0.0.1:9/")
    with loopback.exporter(collector, max_connections=2, idle_timeout=5) as url:
        held = [connect(url), connect(url)]
        time.sleep(0.2)
        third = connect(url)
        assert (closed(third, within=3) or b"").startswith(b"HTTP/1.1 503")
        for sock in (*held, third):
            sock.close()
        time.sleep(0.3)  # the held connections' threads end, their places free up
        assert requests.get(url, timeout=5).status_code == 200


def test_the_line_cache_is_bounded_in_bytes_and_lines_past_it_still_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sidecar, "SLOT_BYTES", 20_000)
    collector = SidecarCollector("http://127.0.0.1:9/", max_models=1000)
    pad = "x" * 300  # long label values: a line count would not bound the bytes
    body = "".join(
        f'{VLLM.RUNNING}{{engine="{i}",model_name="m",pad="{pad}"}} 1\n' for i in range(400)
    )
    for _ in range(2):  # the second time, remembered lines and parsed ones together
        got = scrape.samples(collector.families(collector.read(body)))
        assert got[(catalog.REQUESTS_RUNNING.name, frozenset({(catalog.MODEL, "m")}))] == 400
    remembered = collector._slots["vllm"]
    assert 0 < len(remembered) < 400
    assert sum(len(p) for p in remembered) <= sidecar.SLOT_BYTES
