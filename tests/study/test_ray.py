"""The Ray executor on a local Ray instance (what CI runs): same results as local worker processes."""

from __future__ import annotations

import pandas as pd
import pytest
from study_helpers import tiny_spec_dict

from forgetlaw.study import load_results, run_study, spec_from_dict

ray = pytest.importorskip("ray")


@pytest.mark.slow  # starting Ray takes 10-30 s here
def test_ray_executor_matches_local_processes(tmp_path, tiny_arrays):
    spec = spec_from_dict({**tiny_spec_dict(data={"vocab_size": 256}), "unique_tokens": [1024]})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        outcome = run_study(spec, tmp_path / "ray", executor="ray", workers=2, data=tiny_arrays, progress=False)
    finally:
        ray.shutdown()
    assert (outcome.done, outcome.failed) == (3, 0)
    run_study(spec, tmp_path / "local", workers=2, data=tiny_arrays, progress=False)
    # Both ran 1-thread tasks: identical numbers.
    pd.testing.assert_frame_equal(load_results(tmp_path / "ray"), load_results(tmp_path / "local"))
