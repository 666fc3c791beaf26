"""Which in-cache representation should the informer store use? (standalone, no cluster)

For N synthetic Pods of about 4 KB (bench/pods.py), each candidate turns the watch's JSON bytes
into what the store keeps (dropping managedFields, as the informer's default transform does), and
then serves reads (get by key + three field reads: labels, first container's image, phase).
Every candidate runs in a fresh subprocess, so that one's heap cannot pollute another's RSS; the
candidates are alternated over several rounds.

Measured per candidate:
- rss_per_object: RSS growth after building the cache (after gc), divided by N;
- traced_per_object: tracemalloc's view of the same (Python-heap allocations only), in a separate
  subprocess because tracing slows the build;
- build_us: microseconds per object to decode, transform and store;
- read_us: microseconds per read (get + three field reads; includes any decode on read).
All memory figures are also given as a ratio to the cached object's compact JSON size.

Run: `python -m bench.cache_representation [--sizes 10000 50000] [--rounds 3]`.
Writes bench/results/cache-representation.json (the whole comparison, and the decision), and for
each N cache-bytes-vs-json-size-<N>.json and cache-bytes-vs-dict-<N>.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson

from bench import results
from bench.pods import JSONDict, cached_size, synthetic_pod

# ---------------------------------------------------------------------------------------------
# msgspec Structs for the typed candidates (a Pod typed as far as the synthetic Pods go).


class OwnerReference(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    name: str = ""
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    creation_timestamp: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[OwnerReference] | None = None
    managed_fields: msgspec.Raw = msgspec.Raw()


class ContainerPort(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    container_port: int
    name: str | None = None
    protocol: str | None = None


class EnvVar(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    name: str
    value: str | None = None
    value_from: dict[str, Any] | None = None


class VolumeMount(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    name: str
    mount_path: str
    read_only: bool | None = None


class Container(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    name: str
    image: str | None = None
    args: list[str] | None = None
    ports: list[ContainerPort] | None = None
    env: list[EnvVar] | None = None
    resources: dict[str, dict[str, str]] | None = None
    volume_mounts: list[VolumeMount] | None = None
    termination_message_path: str | None = None
    termination_message_policy: str | None = None
    image_pull_policy: str | None = None


class Volume(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    name: str
    config_map: dict[str, Any] | None = None
    projected: dict[str, Any] | None = None


class Toleration(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    key: str | None = None
    operator: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


class PodSpec(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    containers: list[Container]
    volumes: list[Volume] | None = None
    restart_policy: str | None = None
    termination_grace_period_seconds: int | None = None
    dns_policy: str | None = None
    service_account_name: str | None = None
    service_account: str | None = None
    node_name: str | None = None
    security_context: dict[str, Any] | None = None
    scheduler_name: str | None = None
    tolerations: list[Toleration] | None = None
    priority: int | None = None
    enable_service_links: bool | None = None
    preemption_policy: str | None = None


class PodCondition(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    type: str
    status: str
    last_probe_time: str | None = None
    last_transition_time: str | None = None


class ContainerStatus(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    name: str
    ready: bool
    restart_count: int
    image: str
    image_id: str = msgspec.field(name="imageID")
    state: dict[str, Any] | None = None
    last_state: dict[str, Any] | None = None
    container_id: str | None = msgspec.field(default=None, name="containerID")
    started: bool | None = None


class PodStatus(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    phase: str | None = None
    conditions: list[PodCondition] | None = None
    host_ip: str | None = msgspec.field(default=None, name="hostIP")
    pod_ip: str | None = msgspec.field(default=None, name="podIP")
    pod_ips: list[dict[str, str]] | None = msgspec.field(default=None, name="podIPs")
    start_time: str | None = None
    container_statuses: list[ContainerStatus] | None = None
    qos_class: str | None = None


class Pod(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus | None = None
    api_version: str = "v1"
    kind: str = "Pod"


class PodMetaRaw(msgspec.Struct, rename="camel", gc=False):
    """Typed metadata, spec and status kept as raw JSON bytes decoded on read."""

    metadata: ObjectMeta
    spec: msgspec.Raw
    status: msgspec.Raw = msgspec.Raw()
    api_version: str = "v1"
    kind: str = "Pod"


# ---------------------------------------------------------------------------------------------
# Candidates: (store one watch-event body, read one cached object) pairs.

Cache = dict[str, Any]
Build = Callable[[bytes, Cache], None]
Read = Callable[[Cache, str], tuple[Any, Any, Any]]


def _key(obj: JSONDict) -> str:
    m = obj["metadata"]
    return f"{m['namespace']}/{m['name']}"


def _dict_read(cache: Cache, key: str) -> tuple[Any, Any, Any]:
    o = cache[key]
    return o["metadata"]["labels"], o["spec"]["containers"][0]["image"], o["status"]["phase"]


def _build_json(line: bytes, cache: Cache) -> None:
    o = json.loads(line)
    o["metadata"].pop("managedFields", None)
    cache[_key(o)] = o


def _build_orjson(line: bytes, cache: Cache) -> None:
    o = orjson.loads(line)
    o["metadata"].pop("managedFields", None)
    cache[_key(o)] = o


_msgspec_any = msgspec.json.Decoder()


def _build_msgspec_dict(line: bytes, cache: Cache) -> None:
    o = _msgspec_any.decode(line)
    o["metadata"].pop("managedFields", None)
    cache[_key(o)] = o


def _build_orjson_bytes(line: bytes, cache: Cache) -> None:
    o = orjson.loads(line)
    o["metadata"].pop("managedFields", None)
    cache[_key(o)] = orjson.dumps(o)


def _build_orjson_bytes_exact(line: bytes, cache: Cache) -> None:
    o = orjson.loads(line)
    o["metadata"].pop("managedFields", None)
    # orjson.dumps returns bytes whose allocation is about twice their length (it does not shrink
    # its output buffer); copying them once gives an exact-size object.
    cache[_key(o)] = memoryview(orjson.dumps(o)).tobytes()


def _read_orjson_bytes(cache: Cache, key: str) -> tuple[Any, Any, Any]:
    o = orjson.loads(cache[key])
    return o["metadata"]["labels"], o["spec"]["containers"][0]["image"], o["status"]["phase"]


def _build_zlib_bytes(line: bytes, cache: Cache) -> None:
    o = orjson.loads(line)
    o["metadata"].pop("managedFields", None)
    cache[_key(o)] = zlib.compress(orjson.dumps(o), 1)


def _read_zlib_bytes(cache: Cache, key: str) -> tuple[Any, Any, Any]:
    o = orjson.loads(zlib.decompress(cache[key]))
    return o["metadata"]["labels"], o["spec"]["containers"][0]["image"], o["status"]["phase"]


_pod_decoder = msgspec.json.Decoder(Pod)


def _build_struct(line: bytes, cache: Cache) -> None:
    p = _pod_decoder.decode(line)
    p.metadata.managed_fields = msgspec.Raw()
    cache[f"{p.metadata.namespace}/{p.metadata.name}"] = p


def _read_struct(cache: Cache, key: str) -> tuple[Any, Any, Any]:
    p: Pod = cache[key]
    assert p.status is not None
    return p.metadata.labels, p.spec.containers[0].image, p.status.phase


_meta_raw_decoder = msgspec.json.Decoder(PodMetaRaw)


def _build_meta_raw(line: bytes, cache: Cache) -> None:
    p = _meta_raw_decoder.decode(line)
    p.metadata.managed_fields = msgspec.Raw()
    # Raw values point into the input buffer; copy them so the buffer can be freed.
    p.spec = p.spec.copy()
    p.status = p.status.copy()
    cache[f"{p.metadata.namespace}/{p.metadata.name}"] = p


def _read_meta_raw(cache: Cache, key: str) -> tuple[Any, Any, Any]:
    p: PodMetaRaw = cache[key]
    spec = _msgspec_any.decode(p.spec)
    status = _msgspec_any.decode(p.status) if p.status else {}
    return p.metadata.labels, spec["containers"][0]["image"], status["phase"]


CANDIDATES: dict[str, tuple[Build, Read, str]] = {
    "json-dict": (_build_json, _dict_read, "stdlib json.loads -> dict"),
    "orjson-dict": (_build_orjson, _dict_read, "orjson.loads -> dict"),
    "msgspec-dict": (_build_msgspec_dict, _dict_read, "msgspec.json.decode (untyped) -> dict"),
    "orjson-bytes": (
        _build_orjson_bytes,
        _read_orjson_bytes,
        "compact orjson bytes, orjson.loads on every read",
    ),
    "orjson-bytes-exact": (
        _build_orjson_bytes_exact,
        _read_orjson_bytes,
        "compact orjson bytes copied to an exact-size bytes object, orjson.loads on every read",
    ),
    "zlib-bytes": (
        _build_zlib_bytes,
        _read_zlib_bytes,
        "compact JSON compressed with zlib level 1, decompress + orjson.loads on every read",
    ),
    "msgspec-struct": (
        _build_struct,
        _read_struct,
        "msgspec Structs typed for the whole Pod (gc=False); unknown fields would be dropped",
    ),
    "msgspec-meta-raw": (
        _build_meta_raw,
        _read_meta_raw,
        "typed ObjectMeta Struct + spec/status as msgspec.Raw bytes, decoded on read",
    ),
}


# ---------------------------------------------------------------------------------------------
# Worker (one candidate, one subprocess).


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(candidate: str, input_path: Path, traced: bool) -> JSONDict:
    build, read, _ = CANDIDATES[candidate]
    lines = input_path.read_bytes().splitlines()
    n = len(lines)
    cache: Cache = {}
    gc.collect()
    if traced:
        tracemalloc.start()
    before_traced = tracemalloc.get_traced_memory()[0] if traced else 0
    before_rss = _rss()
    t0 = time.perf_counter()
    for line in lines:
        build(line, cache)
    t1 = time.perf_counter()
    gc.collect()
    grown = _rss() - before_rss
    traced_grown = tracemalloc.get_traced_memory()[0] - before_traced if traced else 0
    if traced:
        tracemalloc.stop()
        return {"traced_per_object": traced_grown / n}
    keys = list(cache)
    random.Random(1).shuffle(keys)
    t2 = time.perf_counter()
    for k in keys:
        read(cache, k)
    t3 = time.perf_counter()
    return {
        "rss_per_object": grown / n,
        "build_us": (t1 - t0) / n * 1e6,
        "read_us": (t3 - t2) / n * 1e6,
    }


# ---------------------------------------------------------------------------------------------
# How the initial list is turned into the cache. A list at resourceVersion "0" is served from the
# apiserver's watch cache in one response, whatever the limit: every object in a single JSON body.
# What the process keeps afterwards (RSS) depends on how much of it was alive at once.


class _RawList(msgspec.Struct):
    items: list[msgspec.Raw]
    metadata: dict[str, Any] = {}


_raw_list_decoder = msgspec.json.Decoder(_RawList)


def _exact(obj: JSONDict) -> bytes:
    return memoryview(orjson.dumps(obj)).tobytes()


def _list_whole(body: bytes, cache: Cache) -> None:
    page = orjson.loads(body)
    for o in page["items"]:
        o["metadata"].pop("managedFields", None)
        cache[_key(o)] = _exact(o)


def _list_whole_dicts(body: bytes, cache: Cache) -> None:
    page = orjson.loads(body)
    for o in page["items"]:
        o["metadata"].pop("managedFields", None)
        cache[_key(o)] = o


def _list_raw_items(body: bytes, cache: Cache) -> None:
    page = _raw_list_decoder.decode(body)
    for raw in page.items:
        o = _msgspec_any.decode(raw)
        o["metadata"].pop("managedFields", None)
        cache[_key(o)] = _exact(o)


LIST_STRATEGIES: dict[str, tuple[Callable[[bytes, Cache], None], str]] = {
    "whole-list-dicts": (_list_whole_dicts, "orjson.loads the whole list, cache the dicts"),
    "whole-list-bytes": (
        _list_whole,
        "orjson.loads the whole list, then encode each item to exact-size bytes",
    ),
    "raw-items-bytes": (
        _list_raw_items,
        "msgspec decodes the list with items as msgspec.Raw slices; each item is decoded, "
        "transformed and encoded to exact-size bytes one at a time",
    ),
}


def list_worker(strategy: str, input_path: Path) -> JSONDict:
    import resource

    build, _ = LIST_STRATEGIES[strategy]
    gc.collect()
    rss0 = _rss()
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    body = input_path.read_bytes()
    cache: Cache = {}
    build(body, cache)
    del body
    t1 = time.perf_counter()
    gc.collect()
    n = len(cache)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "rss_per_object": (_rss() - rss0) / n,
        "peak_rss_per_object": (peak - max(peak0, rss0)) / n,
        "build_us": (t1 - t0) / n * 1e6,
    }


def _write_list_input(n: int, path: Path) -> None:
    with path.open("wb") as f:
        f.write(b'{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[')
        for i in range(n):
            if i:
                f.write(b",")
            f.write(orjson.dumps(synthetic_pod(i)))
        f.write(b"]}")


def _run_list_worker(strategy: str, path: Path) -> JSONDict:
    cmd = [sys.executable, "-m", "bench.cache_representation", "--list-worker", strategy]
    cmd += ["--input", str(path)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900)
    result: JSONDict = json.loads(out.stdout)
    return result


# ---------------------------------------------------------------------------------------------
# Driver.


def _run_worker(candidate: str, path: Path, traced: bool) -> JSONDict:
    cmd = [sys.executable, "-m", "bench.cache_representation", "--worker", candidate]
    cmd += ["--input", str(path)] + (["--traced"] if traced else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900)
    result: JSONDict = json.loads(out.stdout)
    return result


def _write_input(n: int, path: Path) -> float:
    """Write n Pods (with managedFields) as JSON lines; returns the mean cached JSON size."""
    total = 0
    with path.open("wb") as f:
        for i in range(n):
            pod = synthetic_pod(i)
            total += cached_size(pod)
            f.write(orjson.dumps(pod) + b"\n")
    return total / n


def decoder_speed(rounds: int, n: int = 2000) -> JSONDict:
    """Microseconds to decode (and to encode) one cached Pod's compact JSON, per library.

    The libraries are alternated within each round; the medians over rounds are reported.
    """
    blobs = []
    for i in range(n):
        pod = synthetic_pod(i)
        pod["metadata"].pop("managedFields", None)
        blobs.append(orjson.dumps(pod))
    objs = [orjson.loads(b) for b in blobs]
    msgspec_decoder = msgspec.json.Decoder()
    msgspec_encoder = msgspec.json.Encoder()
    decoders: dict[str, Callable[[bytes], Any]] = {
        "json": json.loads,
        "orjson": orjson.loads,
        "msgspec": msgspec_decoder.decode,
    }
    encoders: dict[str, Callable[[Any], Any]] = {
        "json": lambda o: json.dumps(o, separators=(",", ":")).encode(),
        "orjson": orjson.dumps,
        "msgspec": msgspec_encoder.encode,
    }
    decode: dict[str, list[float]] = {k: [] for k in decoders}
    encode: dict[str, list[float]] = {k: [] for k in encoders}
    for _ in range(rounds):
        for name, dec in decoders.items():
            t0 = time.perf_counter()
            for b in blobs:
                dec(b)
            decode[name].append((time.perf_counter() - t0) / n * 1e6)
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            for o in objs:
                enc(o)
            encode[name].append((time.perf_counter() - t0) / n * 1e6)
    return {
        "decode_us": {k: _summary(v) for k, v in decode.items()},
        "encode_us": {k: _summary(v) for k, v in encode.items()},
    }


def _summary(values: list[float]) -> JSONDict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }


CHOSEN = "orjson-bytes-exact"
DECISION = (
    "Store compact orjson bytes copied to an exact-size bytes object, decoded with orjson on every "
    "read. Decoded dicts cost 5-6x the JSON size whichever decoder made them, typed msgspec "
    "Structs ~4x (and need a schema per kind); orjson.dumps output as is costs ~2x because its "
    "buffer is not shrunk. orjson is also the fastest decoder (msgspec is within a few percent) "
    "and clearly the fastest encoder."
)


def _write_comparisons(
    n: int, json_size: float, runs: dict[str, dict[str, list[float]]], rounds: int
) -> None:
    if CHOSEN not in runs:
        return
    inputs = {"objects": n, "mean_cached_json_bytes": json_size, "rounds": rounds}
    chosen = runs[CHOSEN]["rss_per_object"]
    results.write(
        f"cache-bytes-vs-json-size-{n}",
        what=f"RSS per cached synthetic Pod ({n} Pods, ~{json_size / 1024:.1f} KB JSON) in the "
        "chosen representation (exact-size orjson bytes) against the JSON size (standalone)",
        unit="bytes",
        ours=chosen,
        baseline_name="compact JSON size of the cached Pod",
        baseline=[json_size] * len(chosen),
        better="lower",
        goal=2.0,
        inputs=inputs,
    )
    if "orjson-dict" in runs:
        results.write(
            f"cache-bytes-vs-dict-{n}",
            what=f"RSS per cached synthetic Pod ({n} Pods): exact-size orjson bytes vs orjson "
            "dicts (standalone)",
            unit="bytes",
            ours=chosen,
            baseline_name="orjson.loads dicts",
            baseline=runs["orjson-dict"]["rss_per_object"],
            better="lower",
            goal=None,
            inputs=inputs,
        )


def _list_strategies(n: int, tmp: Path, json_size: float, rounds: int) -> JSONDict:
    path = tmp / f"podlist-{n}.json"
    _write_list_input(n, path)
    runs: dict[str, dict[str, list[float]]] = {s: {} for s in LIST_STRATEGIES}
    for r in range(rounds):
        order = list(LIST_STRATEGIES)
        random.Random(r).shuffle(order)
        for strategy in order:
            res = _run_list_worker(strategy, path)
            for k, v in res.items():
                runs[strategy].setdefault(k, []).append(v)
            print(f"n={n} round={r} list {strategy}: {res}", file=sys.stderr)
    path.unlink()
    table: JSONDict = {}
    for strategy, metrics in runs.items():
        row: JSONDict = {"description": LIST_STRATEGIES[strategy][1]}
        row |= {k: _summary(v) for k, v in metrics.items()}
        row["rss_ratio_to_json"] = row["rss_per_object"]["median"] / json_size
        table[strategy] = row
    results.write(
        f"cache-initial-list-raw-items-vs-whole-list-{n}",
        what=f"RSS per cached Pod after building the cache from one {n}-Pod list response: "
        "items decoded one at a time from msgspec.Raw slices vs the whole list decoded at once "
        "(both stored as exact-size bytes)",
        unit="bytes",
        ours=runs["raw-items-bytes"]["rss_per_object"],
        baseline_name="orjson.loads of the whole list, then bytes",
        baseline=runs["whole-list-bytes"]["rss_per_object"],
        better="lower",
        goal=None,
        inputs={"objects": n, "mean_cached_json_bytes": json_size, "rounds": rounds},
    )
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    p.add_argument("--worker", choices=list(CANDIDATES), help=argparse.SUPPRESS)
    p.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--list-worker", choices=list(LIST_STRATEGIES), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.input, args.traced)))
        return 0
    if args.list_worker:
        print(json.dumps(list_worker(args.list_worker, args.input)))
        return 0

    comparison: JSONDict = {"sizes": {}, "decoder_speed": decoder_speed(max(args.rounds, 5))}
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        for n in args.sizes:
            path = Path(tmp) / f"pods-{n}.jsonl"
            json_size = _write_input(n, path)
            runs: dict[str, dict[str, list[float]]] = {c: {} for c in args.candidates}
            for r in range(args.rounds):
                order = list(args.candidates)
                random.Random(r).shuffle(order)
                for c in order:
                    res = _run_worker(c, path, traced=False)
                    if r == 0:
                        res |= _run_worker(c, path, traced=True)
                    for k, v in res.items():
                        runs[c].setdefault(k, []).append(v)
                    print(f"n={n} round={r} {c}: {res}", file=sys.stderr)
            table: JSONDict = {}
            for c, metrics in runs.items():
                row: JSONDict = {"description": CANDIDATES[c][2]}
                for k, vs in metrics.items():
                    row[k] = _summary(vs)
                row["rss_ratio_to_json"] = row["rss_per_object"]["median"] / json_size
                row["traced_ratio_to_json"] = row["traced_per_object"]["median"] / json_size
                table[c] = row
            comparison["sizes"][str(n)] = {"json_size_bytes": json_size, "candidates": table}
            _write_comparisons(n, json_size, runs, args.rounds)
            comparison["sizes"][str(n)]["initial_list"] = _list_strategies(
                n, Path(tmp), json_size, args.rounds
            )
    comparison["decision"] = DECISION
    comparison["machine"] = results.machine()
    comparison["date"] = results.today()
    comparison["python"] = sys.version.split()[0]
    comparison["versions"] = {"orjson": orjson.__version__, "msgspec": msgspec.__version__}
    results.write_raw("cache-representation", comparison)
    print(json.dumps(comparison, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
