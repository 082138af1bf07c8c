"""The Qdrant backend's two-stage design on Qdrant's own engine, in-process (qdrant-edge-py).

qdrant-client's local mode re-implements search in numpy and ignores HNSW and quantisation, so
the contract suite (tests/test_index_contract.py, `qdrant-local-two-stage`) checks the adapter's
calls but not Qdrant's engine. Here the same configuration as `QdrantIndex(two_stage=True)`
builds an `EdgeShard` (Qdrant's Rust engine as a wheel): a "summary" vector per page (the same
MUVERA encoding) under a real HNSW graph, the multivector "page" with MAX_SIM and HNSW off
(m = 0), optionally int8-quantised with rescoring; one query = prefetch on the summary, MAX_SIM
re-rank. Its top 10 must agree with the memory backend's two-stage search (same encodings, same
depth) and with exhaustive MaxSim, within the recall the two-stage design states (>= 0.9 here).
Skipped where qdrant-edge-py is not installed (it is a test-only dependency).
"""

from __future__ import annotations

import numpy as np
import pytest

from vdr_app.index.first_stage import FirstStage, VectorFile, two_stage_top_k
from vdr_app.index.maxsim import MaxSimIndex

from .test_two_stage import DIM, _packed, _unit, structured_pages

edge = pytest.importorskip("qdrant_edge", reason="qdrant-edge-py is not installed (pip install qdrant-edge-py)")

DEPTH = 60


def _shard(path, summary_size: int, int8: bool):
    quant = edge.ScalarQuantizationConfig(type=edge.ScalarType.Int8, always_ram=True) if int8 else None
    config = edge.EdgeConfig(
        vectors={
            "page": edge.EdgeVectorParams(
                size=DIM, distance=edge.Distance.Dot,
                multivector_config=edge.MultiVectorConfig(comparator=edge.MultiVectorComparator.MaxSim),
                hnsw_config=edge.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10),
                quantization_config=quant),
            "summary": edge.EdgeVectorParams(
                size=summary_size, distance=edge.Distance.Dot,
                hnsw_config=edge.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=1)),
        },
        optimizers=edge.EdgeOptimizersConfig(indexing_threshold=1, default_segment_number=1),
    )
    return edge.EdgeShard.create(str(path), config)


@pytest.mark.parametrize("int8", [False, True])
def test_prefetch_then_max_sim_on_qdrant_edge_agrees_with_the_memory_two_stage(tmp_path, int8):
    rng = np.random.default_rng(11)
    pages = structured_pages(rng, 600, (10, 40), topics=24)
    ids = np.arange(1, 601)
    stage, vectors = FirstStage(DIM), VectorFile(tmp_path / "v.bf16", DIM)
    stage.add(ids, *_packed(pages))
    vectors.append(ids, pages)
    summaries = stage.encode_pages(*_packed(pages))

    shard = _shard(tmp_path / "shard", stage.size, int8)
    points = [edge.Point(id=int(i), vector={"page": p.tolist(), "summary": s.tolist()}, payload={"doc_id": int(i) // 10})
              for i, p, s in zip(ids, pages, summaries)]
    shard.update(edge.UpdateOperation.upsert_points(points))
    shard.optimize()  # builds the HNSW graph of the summaries (and the int8 codes)
    params = (edge.SearchParams(quantization=edge.QuantizationSearchParams(rescore=True, oversampling=2.0))
              if int8 else None)

    exhaustive = MaxSimIndex(pages)
    agree_memory, agree_exact = [], []
    for j in rng.choice(600, 20, replace=False):
        query = _unit(pages[j][rng.choice(len(pages[j]), 8)] + 0.4 * rng.standard_normal((8, DIM)) / np.sqrt(DIM))
        request = edge.QueryRequest(
            limit=10, query=edge.Query.Nearest(query.tolist(), using="page"), params=params,
            prefetches=[edge.Prefetch(limit=DEPTH, query=edge.Query.Nearest(stage.encode_query(query).tolist(),
                                                                           using="summary"))])
        got = [int(p.id) for p in shard.query(request)]
        memory, _ = two_stage_top_k(query, 10, stage, vectors, DEPTH)
        exact, _ = exhaustive.top_k(query, 10)
        assert len(got) == 10
        agree_memory.append(len(set(got) & set(memory.tolist())) / 10)
        agree_exact.append(len(set(got) & set((exact + 1).tolist())) / 10)
    shard.close()
    print(f"qdrant-edge (int8={int8}) top-10 overlap: with the memory two-stage {np.mean(agree_memory):.3f}, "
          f"with exhaustive MaxSim {np.mean(agree_exact):.3f}")
    assert np.mean(agree_memory) >= 0.9, agree_memory
    assert np.mean(agree_exact) >= 0.9, agree_exact
