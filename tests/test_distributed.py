"""One run on two processes (torchrun, gloo, CPU): the same metrics as one process within the
stated tolerance, one record, written by rank 0; the shard rule; resume refused under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dermbench.errors import ConfigError
from dermbench.stages import distributed

ARGS = ["--task", "ham7", "--method", "erm", "--profile", "smoke", "--model", "tinycnn", "--synthetic-n", "240",
        "--epochs", "2", "--augment", "none", "--device", "cpu", "--quiet"]  # fmt: skip
TOLERANCE = {"loss": 0.05, "accuracy": 0.1, "macro_auc": 0.05}  # docs/cluster.md


def _run(cmd: list[str], tmp: Path, out: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DERMBENCH_MLFLOW": "0"}
    full = [*cmd, *ARGS, "--out", str(tmp / out), "--cache-dir", str(tmp / "cache")]
    done = subprocess.run(full, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (record,) = [json.loads(p.read_text()) for p in (tmp / out).rglob("record.json")]
    return record


def test_two_processes_give_one_record_and_the_metrics_of_one_within_tolerance(tmp_path):
    one = _run([sys.executable, "-m", "dermbench.cli", "run"], tmp_path, "one")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two = _run([*torchrun, "-m", "dermbench.cli", "run"], tmp_path, "two")
    assert two["environment"]["processes"] == 2 and "processes" not in one["environment"]
    assert two["run_id"] == one["run_id"] and two["status"] == "complete"
    for a, b in zip(one["history"], two["history"], strict=True):
        for key in ("train_loss", "val_loss"):
            assert b[key] == pytest.approx(a[key], abs=TOLERANCE["loss"]), key
        for key in ("train_accuracy", "val_accuracy"):
            assert b[key] == pytest.approx(a[key], abs=TOLERANCE["accuracy"]), key
    t1, t2 = one["metrics"]["test"], two["metrics"]["test"]
    assert t2["accuracy"] == pytest.approx(t1["accuracy"], abs=TOLERANCE["accuracy"])
    assert t2["macro_auc"] == pytest.approx(t1["macro_auc"], abs=TOLERANCE["macro_auc"])
    assert t2["n"] == t1["n"]  # every test image scored once
    # each training image once an epoch, over all ranks (without the sharding: once a rank)
    assert [h["train_images"] for h in two["history"]] == [h["train_images"] for h in one["history"]]
    # run again, into its own record and into the one-process record of the same run: no rank trains
    for out, record in (("two", two), ("one", one)):
        again = _run([*torchrun, "-m", "dermbench.cli", "run"], tmp_path, out)
        assert again["created"] == record["created"]


def test_a_rank_takes_every_world_th_image_of_a_batch(monkeypatch):
    monkeypatch.setitem(distributed._STATE, "dist", distributed.Distributed(rank=1, world=3))
    assert distributed.shard(list(range(10))) == [1, 4, 7]
    monkeypatch.setitem(distributed._STATE, "dist", distributed.Distributed())
    assert distributed.shard(list(range(4))) == [0, 1, 2, 3]


def test_resume_is_refused_under_torchrun_and_another_rank_writes_to_scratch(monkeypatch, tmp_path):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Cfg:
        out: str

    monkeypatch.setitem(distributed._STATE, "dist", distributed.Distributed(rank=1, world=2))
    with pytest.raises(ConfigError, match="--resume is not supported under torchrun"):
        distributed.cfg_for_rank(Cfg(str(tmp_path)), resume=True)
    scratch = distributed.cfg_for_rank(Cfg(str(tmp_path)), resume=False).out
    assert scratch != str(tmp_path) and Path(scratch).is_dir()
    Path(scratch).rmdir()


def _as_rank(monkeypatch, rank: int, sent: list) -> None:
    """This process as ``rank`` of 2, receiving what rank 0 broadcast (``sent``)."""
    import torch.distributed as dist

    monkeypatch.setitem(distributed._STATE, "dist", distributed.Distributed(rank=rank, world=2))
    monkeypatch.setattr(dist, "broadcast_object_list", lambda objs, src: objs.__setitem__(0, sent[0]))


def test_every_rank_follows_rank_0_on_a_finished_or_refused_run(monkeypatch, tmp_path):
    scratch = (tmp_path / "scratch", None)  # what another rank sees: an empty scratch folder
    record = {"run_id": "r", "status": "complete"}
    _as_rank(monkeypatch, 1, [("done", record)])
    assert distributed.agree_on_start(lambda: scratch) == (tmp_path / "scratch", record)
    refusal = ConfigError("an unfinished run with the same config is in X: add --resume")
    _as_rank(monkeypatch, 1, [("refused", refusal)])
    with pytest.raises(ConfigError, match="add --resume"):
        distributed.agree_on_start(lambda: scratch)
    _as_rank(monkeypatch, 1, [("train", None)])
    assert distributed.agree_on_start(lambda: scratch) == scratch

    def refuses():
        raise refusal

    sent: list = [None]  # rank 0: what it decides is what it sends, and it raises its own refusal too
    import torch.distributed as dist

    monkeypatch.setitem(distributed._STATE, "dist", distributed.Distributed(rank=0, world=2))
    monkeypatch.setattr(dist, "broadcast_object_list", lambda objs, src: sent.__setitem__(0, objs[0]))
    with pytest.raises(ConfigError, match="add --resume"):
        distributed.agree_on_start(refuses)
    assert sent[0] == ("refused", refusal)
