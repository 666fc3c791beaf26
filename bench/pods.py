"""Synthetic Pods of about 4 KB of compact JSON, shared by the memory benchmarks.

Each Pod is different (names, UIDs, IPs, timestamps, hashes, env values), and shaped like a Pod of a
Deployment on a real cluster: labels, annotations, an owner reference, two containers with env,
ports, resources, probes and mounts, volumes, tolerations, and a Running status. Each also carries
about 1 KB of `metadata.managedFields`, which the informer's default transform drops: the size a
benchmark compares against is the compact JSON of the Pod *after* that transform, i.e. what the
cache holds.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

JSONDict = dict[str, Any]


def _hex(i: int, salt: str, n: int) -> str:
    return hashlib.blake2b(f"{salt}{i}".encode(), digest_size=16).hexdigest()[:n]


def _uid(i: int, salt: str) -> str:
    h = _hex(i, salt, 32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _ts(i: int, offset: int = 0) -> str:
    s = (i * 7 + offset) % 86400
    return f"2026-11-25T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z"


def _container(i: int, c: int, name: str, image: str) -> JSONDict:
    return {
        "name": name,
        "image": f"{image}:v1.{i % 40}",
        "args": [f"--shard={i % 64}"],
        "ports": [
            {"name": "http", "containerPort": 8080 + c, "protocol": "TCP"},
        ],
        "env": [
            {
                "name": "POD_NAME",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
            },
            {"name": "SHARD", "value": str(i % 64)},
        ],
        "resources": {
            "limits": {"cpu": "2", "memory": "4Gi"},
            "requests": {"cpu": f"{100 + i % 900}m", "memory": f"{256 + i % 256}Mi"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app", "readOnly": True},
            {
                "name": f"kube-api-access-{_hex(i, name + 'vol', 5)}",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            },
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def _status(i: int, name: str, image: str) -> JSONDict:
    return {
        "name": name,
        "state": {"running": {"startedAt": _ts(i, 30)}},
        "lastState": {},
        "ready": True,
        "restartCount": i % 3,
        "image": image,
        "imageID": f"{image}@sha256:{_hex(i, name + 'img', 40)}",
        "containerID": f"containerd://{_hex(i, name + 'cid', 64)}",
        "started": True,
    }


def synthetic_pod(i: int, namespace: str = "bench") -> JSONDict:
    """The i-th synthetic Pod, deterministic in i, with managedFields (~5 KB before transform)."""
    rs = _hex(i // 10, "rs", 10)
    app = f"app-{i % 50}"
    name = f"{app}-{rs}-{_hex(i, 'pod', 5)}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": f"{app}-{rs}-",
            "namespace": namespace,
            "uid": _uid(i, "uid"),
            "resourceVersion": str(100000 + i),
            "creationTimestamp": _ts(i),
            "labels": {
                "app.kubernetes.io/name": app,
                "app.kubernetes.io/instance": f"{app}-prod",
                "app.kubernetes.io/component": "server",
                "pod-template-hash": rs,
                "tier": "backend",
            },
            "annotations": {
                "kubectl.kubernetes.io/restartedAt": _ts(i, 5),
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9090",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{app}-{rs}",
                    "uid": _uid(i // 10, "rsuid"),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": _ts(i),
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:metadata": {
                            "f:generateName": {},
                            "f:labels": {
                                ".": {},
                                "f:app": {},
                                "f:pod-template-hash": {},
                                "f:tier": {},
                            },
                            "f:ownerReferences": {
                                ".": {},
                                f'k:{{"uid":"{_uid(i // 10, "rsuid")}"}}': {},
                            },
                        },
                        "f:spec": {
                            "f:containers": {
                                'k:{"name":"server"}': {
                                    ".": {},
                                    "f:image": {},
                                    "f:imagePullPolicy": {},
                                    "f:name": {},
                                    "f:ports": {},
                                    "f:resources": {},
                                }
                            },
                            "f:dnsPolicy": {},
                            "f:restartPolicy": {},
                            "f:schedulerName": {},
                        },
                    },
                },
                {
                    "manager": "kubelet",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": _ts(i, 40),
                    "fieldsType": "FieldsV1",
                    "subresource": "status",
                    "fieldsV1": {
                        "f:status": {
                            "f:conditions": {},
                            "f:containerStatuses": {},
                            "f:hostIP": {},
                            "f:phase": {},
                            "f:podIP": {},
                            "f:podIPs": {},
                            "f:startTime": {},
                        }
                    },
                },
            ],
        },
        "spec": {
            "volumes": [
                {"name": "config", "configMap": {"name": f"{app}-config", "defaultMode": 420}},
                {
                    "name": f"kube-api-access-{_hex(i, 'vol', 5)}",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                        ],
                        "defaultMode": 420,
                    },
                },
            ],
            "containers": [
                _container(i, 0, "server", "registry.example.com/team/server"),
                _container(i, 1, "sidecar", "registry.example.com/team/sidecar"),
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "nodeName": f"node-{i % 200:03d}",
            "securityContext": {"runAsNonRoot": True, "fsGroup": 2000},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {
                    "type": t,
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": _ts(i, k),
                }
                for k, t in enumerate(
                    [
                        "PodReadyToStartContainers",
                        "Initialized",
                        "Ready",
                        "ContainersReady",
                        "PodScheduled",
                    ]
                )
            ],
            "hostIP": f"10.0.{i % 200}.{i % 250 + 1}",
            "podIP": f"10.244.{i // 250 % 250}.{i % 250 + 2}",
            "podIPs": [{"ip": f"10.244.{i // 250 % 250}.{i % 250 + 2}"}],
            "startTime": _ts(i, 3),
            "containerStatuses": [
                _status(i, "server", "registry.example.com/team/server"),
                _status(i, "sidecar", "registry.example.com/team/sidecar"),
            ],
            "qosClass": "Burstable",
        },
    }


def drop_managed_fields(obj: JSONDict) -> JSONDict:
    """The informer's default transform."""
    obj["metadata"].pop("managedFields", None)
    return obj


def cached_size(obj: JSONDict) -> int:
    """Compact JSON size, in bytes, of obj after the default transform."""
    meta = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    return len(orjson.dumps({**obj, "metadata": meta}))
