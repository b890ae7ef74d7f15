#!/usr/bin/env python3
"""Benchmark: send WeCom kf text messages with wechatpy (the "other SDK" side).

The script points wechatpy's WeCom client (`wechatpy.work.WeChatClient`) at an
API root given on the command line (normally a local mock server), sends
`--requests` kf text messages with wechatpy's own helper
`client.kf_message.send_text(touser, open_kfid, content)` (POST `kf/send_msg`),
times each one with `time.perf_counter`, and prints one JSON line to stdout:

    {"sdk": "wechatpy 2.0.0a26", "threads": T, "requests": N, "seconds": ...,
     "throughput_rps": ..., "p50_ms": ..., "p99_ms": ..., "errors": ...}

`--threads 1` sends from a plain sequential loop. `--threads T` (T > 1) sends
from a `concurrent.futures.ThreadPoolExecutor` with T workers that share one
client, as an application would.

What is and is not timed:
* The access token is fetched once, through wechatpy (GET `gettoken`), before
  anything else, then `--warmup` requests are sent the same way as the timed
  ones (same loop or pool). Neither is timed.
* `seconds` is the wall time from the first timed submission to the last
  completion; `throughput_rps` is `requests / seconds`. p50/p99 are
  nearest-rank percentiles of the per-request latencies.
* A request that raises (wechatpy raises `WeChatClientException` on a
  non-zero errcode or an HTTP error) or returns a non-zero errcode counts as
  an error. Its latency is still recorded; errors never stop the run.

See README-wechatpy.md next to this file. Needs wechatpy 2.0.0a26
(`pip install -r tests/interop/requirements.txt`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.metadata
import json
import math
import sys
import time
from typing import Callable

import requests.adapters
from wechatpy.work import WeChatClient


class BenchWeChatClient(WeChatClient):
    """wechatpy's WeCom client with a configurable API root.

    wechatpy builds every API URL as `self.API_BASE_URL + endpoint`, so an
    instance attribute `API_BASE_URL` redirects all API calls (including
    `kf/send_msg`). The one exception is `fetch_access_token`, which in
    2.0.0a26 hard-codes `https://qyapi.weixin.qq.com/cgi-bin/gettoken`; we
    override only that method, to build the same request from
    `API_BASE_URL`, and still hand it to wechatpy's `_fetch_access_token`
    (which parses the reply and caches the token with its expiry).
    """

    def __init__(self, base_url: str, corp_id: str, secret: str, timeout: float, pool_size: int):
        super().__init__(corp_id, secret, timeout=timeout)
        self.API_BASE_URL = base_url
        # wechatpy sends everything through one requests.Session. Its default
        # connection pool keeps 10 connections per host; with more worker
        # threads than that, connections would be dropped and reopened, so
        # size the pool to the thread count. This changes no request.
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)

    def fetch_access_token(self):
        return self._fetch_access_token(
            url=self.API_BASE_URL + "gettoken",
            params={"corpid": self.corp_id, "corpsecret": self.secret},
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base-url",
        required=True,
        help="API root, e.g. http://127.0.0.1:8080/cgi-bin/ (WeCom: https://qyapi.weixin.qq.com/cgi-bin/)",
    )
    parser.add_argument("--corp-id", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--open-kfid", required=True)
    parser.add_argument("--touser", required=True, help="external_userid of the customer")
    parser.add_argument("--requests", type=int, required=True, help="timed requests (N >= 1)")
    parser.add_argument("--threads", type=int, default=1, help="1 = sequential loop; T > 1 = thread pool of T")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests sent first (default 50)")
    parser.add_argument("--content", default="hello from the benchmark", help="text message content")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds")
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    # wechatpy concatenates root and endpoint, so the root needs its slash.
    if not args.base_url.endswith("/"):
        args.base_url += "/"
    return args


def percentile_ms(sorted_seconds: list[float], pct: float) -> float:
    """Nearest-rank percentile of sorted latencies (seconds), in milliseconds."""
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_seconds)))
    return sorted_seconds[rank - 1] * 1000.0


def make_sender(client: BenchWeChatClient, args: argparse.Namespace) -> Callable[[], tuple[float, str | None]]:
    """Return a function that sends one message and reports (latency, error)."""

    def send_one() -> tuple[float, str | None]:
        start = time.perf_counter()
        try:
            result = client.kf_message.send_text(args.touser, args.open_kfid, args.content)
        except Exception as exc:  # counted, never fatal
            return time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
        latency = time.perf_counter() - start
        # wechatpy already raises on a non-zero errcode; this also catches a
        # reply that is not a JSON object or lacks errcode 0.
        if not isinstance(result, dict) or result.get("errcode", 0) != 0:
            return latency, f"unexpected reply: {result!r}"
        return latency, None

    return send_one


def run_batch(
    send_one: Callable[[], tuple[float, str | None]],
    count: int,
    pool: concurrent.futures.ThreadPoolExecutor | None,
) -> tuple[float, list[tuple[float, str | None]]]:
    """Send `count` messages; return (wall seconds, per-request results)."""
    start = time.perf_counter()
    if pool is None:
        results = [send_one() for _ in range(count)]
    else:
        futures = [pool.submit(send_one) for _ in range(count)]
        results = [future.result() for future in futures]
    return time.perf_counter() - start, results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sdk = f"wechatpy {importlib.metadata.version('wechatpy')}"

    client = BenchWeChatClient(
        args.base_url,
        args.corp_id,
        args.secret,
        timeout=args.timeout,
        pool_size=max(10, args.threads),
    )

    # Fetch the token once, up front and untimed, through wechatpy (it caches
    # the token in the client's session storage). Without a token every
    # request would fail, so this is the one fatal error.
    try:
        client.fetch_access_token()
    except Exception as exc:
        print(f"wechatpy_send: could not fetch an access token: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

    send_one = make_sender(client, args)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=args.threads) if args.threads > 1 else None
    try:
        _, warm = run_batch(send_one, args.warmup, pool)
        seconds, timed = run_batch(send_one, args.requests, pool)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)

    # Errors go to stderr (first few only) so stdout stays one JSON line.
    errors = [err for _, err in timed if err is not None]
    warm_errors = sum(1 for _, err in warm if err is not None)
    if warm_errors:
        print(f"wechatpy_send: {warm_errors} warmup request(s) failed", file=sys.stderr)
    for err in errors[:3]:
        print(f"wechatpy_send: error: {err}", file=sys.stderr)

    latencies = sorted(latency for latency, _ in timed)
    report = {
        "sdk": sdk,
        "threads": args.threads,
        "requests": args.requests,
        "seconds": round(seconds, 6),
        "throughput_rps": round(args.requests / seconds, 2),
        "p50_ms": round(percentile_ms(latencies, 50), 3),
        "p99_ms": round(percentile_ms(latencies, 99), 3),
        "errors": len(errors),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
