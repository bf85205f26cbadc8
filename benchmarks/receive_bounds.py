"""Peak memory of refusing (or accepting) the worst bodies a partner can send, one fresh process each.

Run: `.venv/bin/python -m benchmarks.receive_bounds`. Prints, per case, what decoding did and the growth of the
process's peak RSS (VmHWM, reset just before) over its RSS before decoding; docs/reliability.md quotes these figures and
tests/stub/test_memory.py holds the limits.
"""

from __future__ import annotations

import gzip
import json
import resource
import subprocess
import sys
import tempfile
import zlib

CASES = ("bomb", "tiny_changes", "empty_objects", "short_strings", "largest_accepted")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> None:
    """Linux: make VmHWM (the peak RSS) start again from the current RSS."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def _body(case: str) -> tuple[str, str | None, bytes]:
    from federationd import bounds

    if case == "bomb":  # 4 GiB of zeros would inflate from ~4 MB; we stop at the bound
        compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        parts = [compressor.compress(b'{"schema":1,"origin":"site-b","pad":"')]
        parts.extend(compressor.compress(b"0" * 1024 * 1024) for _ in range(256))
        return "changes", "gzip", b"".join(parts) + compressor.flush()
    if case == "tiny_changes":
        change = '{"category":"employee","id":"e","origin":"site-b","version":1,"deleted":false,"data":{}}'
        text = ('{"schema":1,"origin":"site-b","epoch":1,"first":1,"last":1,"changes":['
                + ",".join([change] * 100_000) + "]}")
        return "changes", "gzip", gzip.compress(text.encode(), 1)
    if case == "empty_objects":  # just under the JSON-values bound: parsed, then refused as invalid
        n = bounds.MAX_JSON_VALUES // 2 - 10
        return "changes", "gzip", gzip.compress(b'{"schema":1,"pad":[' + b"{}," * n + b"{}]}", 1)
    if case == "short_strings":
        n = bounds.MAX_JSON_VALUES - 10
        return "changes", "gzip", gzip.compress(b'{"schema":1,"pad":[' + b'"ab",' * n + b'"ab"]}', 1)
    # the largest honest-looking message accepted: MAX_CHANGES records filling MAX_BODY_BYTES
    per = int(bounds.MAX_BODY_BYTES * 0.97) // bounds.MAX_CHANGES - 150
    changes = [{"category": "employee", "id": f"e-{i}", "origin": "site-b", "version": i + 1, "deleted": False,
                "data": {"name": "n", "note": "x" * per}} for i in range(bounds.MAX_CHANGES)]
    body = {"schema": 1, "origin": "site-b", "epoch": 1, "first": 1, "last": 1, "changes": changes}
    return "changes", "gzip", gzip.compress(json.dumps(body).encode(), 1)


def _one(case: str, path: str) -> None:
    from federationd import wire
    from federationd.errors import RejectedChange

    with open(path, "rb") as file:
        kind, encoding, body = "changes", "gzip", file.read()
    _reset_peak()
    before = _status_kib("VmRSS")
    try:
        decoded = wire.decode(kind, encoding, body)
        outcome = f"accepted ({len(getattr(decoded, 'changes', []))} changes)"
    except RejectedChange as exc:
        outcome = f"refused ({exc.reason}): {exc}"
    growth_mb = (_status_kib("VmHWM") - before) / 1024
    print(json.dumps({"case": case, "wire_bytes": len(body), "growth_mb": round(growth_mb, 1),
                      "outcome": outcome}))


def measure(case: str) -> dict[str, object]:
    """Build the body here, decode it in a fresh process that only reads it from a file."""
    kind, encoding, body = _body(case)
    assert (kind, encoding) == ("changes", "gzip")
    with tempfile.NamedTemporaryFile(suffix=".gz") as file:
        file.write(body)
        file.flush()
        out = subprocess.run([sys.executable, "-m", "benchmarks.receive_bounds", case, file.name],
                             capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    if len(sys.argv) > 2:
        _one(sys.argv[1], sys.argv[2])
    else:
        for name in CASES:
            print(json.dumps(measure(name)))
