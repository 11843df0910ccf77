"""Schemathesis fuzz of the whole OpenAPI schema against the live app (real uvicorn, real HTTP).

Every operation gets positive (schema-valid) and negative (schema-violating) cases. Checks: no 5xx,
status code / content type / response body conform to the schema, and negative data is rejected.
Path ids are sometimes swapped for real ones (an existing dataset, a canceled job with a checkpoint and
a stored sample set), so the code behind the 404s is fuzzed too. Bounded: a few examples per operation
and mode, no shrinking-heavy phases, no worker (the job stays queued/canceled). The counts are printed.
"""

from __future__ import annotations

import collections
import os
import sys

import pytest

from service.core import object_keys as objkeys
from service.core.samples import SampleSetRecord
from tests.dbstate import add_checkpoint
from tests.e2e.harness import LiveServer, images_zip, make_settings, png_bytes

# The imports below need schemathesis (and hypothesis, which it brings): skip the module, not fail, without it.
schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis (dev extra)")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

if sys.version_info < (3, 11):  # a builtin from 3.11; hypothesis brings the backport on 3.10
    from exceptiongroup import BaseExceptionGroup

MAX_EXAMPLES = int(os.environ.get("DIGGAN_FUZZ_EXAMPLES", "12"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    with LiveServer(make_settings(root, max_upload_bytes=1_000_000, max_kimg=100)) as srv:
        c = srv.client
        ds = c.post("/v1/datasets", files={"file": ("d.zip", images_zip(8), "application/zip")}).json()["id"]
        job = c.post("/v1/jobs", json={"dataset_id": ds, "kimg": 1}).json()["id"]
        c.post(f"/v1/jobs/{job}/cancel")  # terminal: its event stream ends at once
        fake = b"not a checkpoint"
        name = "ckpt-00000.032.pt"
        add_checkpoint(srv.core, "default", job, name, fake, grid=png_bytes())
        smp = "smp_" + "1" * 26
        sset = srv.core.samples.reserve(SampleSetRecord(
            id=smp, tenant="default", job_id=job, checkpoint=name, psi=0.7, seeds=[1],
            object_prefix=objkeys.job_sample_prefix("default", job, smp)), [len(png_bytes())], None)
        srv.store.put_bytes(sset.image_key(0), png_bytes(), "image/png")
        srv.core.samples.publish(sset)
        srv.real_ids = {"dataset_id": ds, "job_id": job, "sample_id": smp, "name": name}
        yield srv


def _fuzz_case(live, op, mode, counts: collections.Counter, tally: collections.Counter, failures: list[str]):
    """The hypothesis test of one operation in one generation mode; it counts statuses into `counts` and
    `tally` and appends what fails its checks to `failures`."""

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode), swap=st.booleans())
    def run(case, swap):
        if swap and case.path_parameters:  # half the time: ids that exist
            for k in case.path_parameters:
                if k in live.real_ids and op.method.upper() != "DELETE":
                    case.path_parameters[k] = live.real_ids[k]
        resp = case.call(base_url=live.url, timeout=30)
        counts[resp.status_code] += 1
        tally[resp.status_code] += 1
        checks = CHECKS + ([negative_data_rejection] if mode == schemathesis.GenerationMode.NEGATIVE else [])
        try:
            case.validate_response(resp, checks=checks)
        except (Exception, BaseExceptionGroup) as e:  # collect all, report together
            failures.append(f"{op.label} [{mode.value}] -> {resp.status_code}: {str(e)[:800]}\n"
                            f"  reproduce: {case.as_curl_command()[:600]}")

    return run


def test_fuzz_openapi_schema(live):
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    counts: collections.Counter = collections.Counter()
    per_op: dict[str, collections.Counter] = {}
    failures: list[str] = []
    unsatisfiable: list[str] = []
    ops = [r.ok() for r in schema.get_all_operations()]
    assert len(ops) >= 14, [o.label for o in ops]

    for op in ops:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            tally = per_op.setdefault(op.label, collections.Counter())
            run = _fuzz_case(live, op, mode, counts, tally, failures)
            try:
                run()
            except Unsatisfiable:  # nothing to negate (e.g. GET /healthz has no inputs)
                unsatisfiable.append(f"{op.label} [{mode.value}]")

    total = sum(counts.values())
    n4xx = sum(v for k, v in counts.items() if 400 <= k < 500)
    n5xx = sum(v for k, v in counts.items() if k >= 500)
    print(f"\nschemathesis: {len(ops)} operations, {total} cases, {n4xx} 4xx, {n5xx} 5xx, "
          f"{total - n4xx - n5xx} 2xx/3xx; by status {dict(sorted(counts.items()))}")
    print(f"  no negative cases possible: {unsatisfiable}")
    for label, t in sorted(per_op.items()):
        print(f"  {label}: {dict(sorted(t.items()))}")
    assert not failures, f"{len(failures)} failure(s):\n" + "\n".join(dict.fromkeys(failures))
    assert n5xx == 0
    assert live.client.get("/healthz").status_code == 200
