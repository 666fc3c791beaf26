"""The checkpoint ID (SPEC §2) against fixed vectors.

The expected hashes were produced by Go's encoding/json + crypto/sha256 with the reference
implementation's normalised identity struct (field order, omitempty, sorted map keys, HTML
escaping), so they pin byte-for-byte compatibility with artifacts the reference writes.
The first one also matches the 12-character prefix the reference's own test pins
("96429b272576").
"""

from __future__ import annotations

import pytest

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.checkpoint_id import (
    canonical_identity_json,
    identity_hash,
    resolve_checkpoint_id,
)
from dynamo_snapshot.api.dynamocheckpoint import (
    DynamoCheckpoint,
    DynamoCheckpointIdentity,
    DynamoCheckpointJob,
    DynamoCheckpointSpec,
    DynamoCheckpointStatus,
)
from dynamo_snapshot.api.meta import ObjectMeta

LLAMA = DynamoCheckpointIdentity(model="meta-llama/Llama-2-7b-hf", backend_framework="vllm")

VECTORS = [
    pytest.param(
        LLAMA,
        b'{"model":"meta-llama/Llama-2-7b-hf","backendFramework":"vllm",'
        b'"tensorParallelSize":1,"pipelineParallelSize":1}',
        "96429b2725761a09",
        id="minimal",
    ),
    pytest.param(
        DynamoCheckpointIdentity(
            model="meta-llama/Llama-2-13b-hf",
            backend_framework="sglang",
            dynamo_version="0.4.2",
            tensor_parallel_size=2,
            pipeline_parallel_size=1,
            dtype="float16",
            max_model_len=4096,
            extra_parameters={"gpu_memory_utilization": "0.9"},
        ),
        b'{"model":"meta-llama/Llama-2-13b-hf","backendFramework":"sglang",'
        b'"dynamoVersion":"0.4.2","tensorParallelSize":2,"pipelineParallelSize":1,'
        b'"dtype":"float16","maxModelLen":4096,'
        b'"extraParameters":{"gpu_memory_utilization":"0.9"}}',
        "f4ba65bccbb8e4fb",
        id="all-fields",
    ),
    pytest.param(
        DynamoCheckpointIdentity(
            model="Qwen/Qwen3-0.6B",
            backend_framework="trtllm",
            dynamo_version="1.0.0",
            tensor_parallel_size=8,
            pipeline_parallel_size=2,
            dtype="bf16",
            max_model_len=32768,
            extra_parameters={"z": "1", "a": "<&>", "m": "\u00fc\n\u2028"},
        ),
        '{"model":"Qwen/Qwen3-0.6B","backendFramework":"trtllm","dynamoVersion":"1.0.0",'
        '"tensorParallelSize":8,"pipelineParallelSize":2,"dtype":"bf16","maxModelLen":32768,'
        '"extraParameters":{"a":"\\u003c\\u0026\\u003e","m":"\u00fc\\n\\u2028","z":"1"}}'.encode(),
        "2c59460c54bfd72f",
        id="go-escaping-and-sorted-keys",
    ),
]


@pytest.mark.parametrize(("identity", "canonical", "expected"), VECTORS)
def test_identity_hash_matches_go_vectors(
    identity: DynamoCheckpointIdentity, canonical: bytes, expected: str
) -> None:
    assert canonical_identity_json(identity) == canonical
    assert identity_hash(identity) == expected


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(
            DynamoCheckpointIdentity(
                model=LLAMA.model, backend_framework="vllm", tensor_parallel_size=0
            ),
            id="tp-0-is-1",
        ),
        pytest.param(
            DynamoCheckpointIdentity(
                model=LLAMA.model,
                backend_framework="vllm",
                tensor_parallel_size=1,
                pipeline_parallel_size=1,
            ),
            id="explicit-defaults",
        ),
        pytest.param(
            DynamoCheckpointIdentity(model=LLAMA.model, backend_framework="vllm", max_model_len=0),
            id="max-model-len-0-is-unset",
        ),
        pytest.param(
            DynamoCheckpointIdentity(
                model=LLAMA.model, backend_framework="vllm", extra_parameters={}
            ),
            id="empty-extra-is-missing-extra",
        ),
        pytest.param(
            DynamoCheckpointIdentity(
                model=LLAMA.model, backend_framework="vllm", dynamo_version="", dtype=""
            ),
            id="empty-strings-are-unset",
        ),
    ],
)
def test_normalisation_makes_equivalent_identities_equal(
    variant: DynamoCheckpointIdentity,
) -> None:
    assert identity_hash(variant) == identity_hash(LLAMA) == "96429b2725761a09"


def test_extra_parameter_order_does_not_matter_but_values_do() -> None:
    one = DynamoCheckpointIdentity(
        model="m", backend_framework="vllm", extra_parameters={"a": "1", "b": "2"}
    )
    other = DynamoCheckpointIdentity(
        model="m", backend_framework="vllm", extra_parameters={"b": "2", "a": "1"}
    )
    changed = DynamoCheckpointIdentity(
        model="m", backend_framework="vllm", extra_parameters={"a": "1", "b": "3"}
    )
    assert identity_hash(one) == identity_hash(other)
    assert identity_hash(one) != identity_hash(changed)


def _checkpoint(labels: dict[str, str], status_id: str | None) -> DynamoCheckpoint:
    return DynamoCheckpoint(
        metadata=ObjectMeta(name="ckpt", namespace="ns", labels=labels),
        spec=DynamoCheckpointSpec(
            identity=LLAMA,
            job=DynamoCheckpointJob(pod_template_spec={"spec": {"containers": []}}),
        ),
        status=DynamoCheckpointStatus(checkpoint_id=status_id),
    )


def test_resolution_order_status_then_label_then_hash() -> None:
    assert resolve_checkpoint_id(_checkpoint({}, None)) == "96429b2725761a09"
    assert resolve_checkpoint_id(_checkpoint({c.LABEL_CHECKPOINT_ID: "from-label"}, None)) == (
        "from-label"
    )
    assert (
        resolve_checkpoint_id(_checkpoint({c.LABEL_CHECKPOINT_ID: "from-label"}, "from-status"))
        == "from-status"
    )
    # An empty label or status value is "unset", not an ID.
    assert resolve_checkpoint_id(_checkpoint({c.LABEL_CHECKPOINT_ID: ""}, "")) == (
        "96429b2725761a09"
    )
