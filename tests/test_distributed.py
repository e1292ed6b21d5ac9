"""The data-parallel slice: N processes with a global batch B see exactly B distinct rows between them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from labformer.training.distributed import Cluster


@given(world=st.integers(1, 16), per_process=st.integers(1, 64))
def test_the_slices_partition_the_global_batch(world, per_process):
    batch = torch.arange(world * per_process)
    parts = [batch[Cluster(rank, world).local_slice(len(batch))] for rank in range(world)]
    assert torch.equal(torch.cat(parts), batch)  # in order, no overlap, nothing left out
    assert {len(part) for part in parts} == {per_process}


def test_a_batch_that_does_not_divide_is_refused():
    with pytest.raises(ValueError, match=r"batch_size \(10\) must be divisible by the number of processes \(4\)"):
        Cluster(0, 4).check_batch(10)
    Cluster(0, 5).check_batch(10)


def test_one_process_changes_nothing():
    cluster, model = Cluster(), torch.nn.Linear(2, 2)
    assert cluster.is_main and not cluster.active
    assert cluster.wrap(model, torch.device("cpu")) is model
    assert cluster.sum([1.5, 2.0], torch.device("cpu")) == [1.5, 2.0] and cluster.share("x") == "x"
