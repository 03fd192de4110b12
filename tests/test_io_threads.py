"""Background I/O: the recorder's writer threads and V's prefetching loader give exactly what the
inline versions give (the 16-core machine needs both; results must not depend on them)."""
import numpy as np
import pytest

from worldmodels.checkpoint import save_npz
from worldmodels.engine.policies import Recorder
from worldmodels.engine.rollout import Episode
from worldmodels.errors import UserError
from worldmodels.stages.vae import frame_batches


class Constant:
    def start(self, lane, episode):
        pass

    def act(self, obs, lanes):
        return [1 for _ in lanes]

    def observe(self, *args):
        pass

    def end(self, lane):
        pass


def record(folder, writers: int, episodes: int = 6, steps: int = 5):
    rng = np.random.default_rng(0)
    rec = Recorder(Constant(), 2, lambda ep: folder / f"ep_{ep.tag:06d}.npz", writers=writers)
    for tag in range(episodes):
        lane = tag % 2
        rec.start(lane, Episode(seed=tag, tag=tag))
        obs = rng.integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
        rec.act(obs, [lane])
        for t in range(steps):
            rec.observe(lane, 1, obs[lane] + t, float(t), t == steps - 1, False)
        rec.end(lane)
    rec.close()
    return {p.name: dict(np.load(p)) for p in sorted(folder.glob("*.npz"))}


def test_recorder_writer_threads_write_the_same_files(tmp_path):
    (tmp_path / "inline").mkdir()
    (tmp_path / "threads").mkdir()
    inline = record(tmp_path / "inline", writers=0)
    threaded = record(tmp_path / "threads", writers=3)
    assert list(inline) == [f"ep_{i:06d}.npz" for i in range(6)] == list(threaded)
    for name in inline:
        for key in ("obs", "actions", "rewards", "terminated", "truncated"):
            assert np.array_equal(inline[name][key], threaded[name][key]), (name, key)
        assert inline[name]["obs"].shape == (6, 64, 64, 3)


def test_recorder_reraises_a_failed_write(tmp_path):
    rec = Recorder(Constant(), 1, lambda ep: tmp_path, writers=1)  # a folder: the write fails
    rec.start(0, Episode(seed=0))
    obs = np.zeros((1, 64, 64, 3), np.uint8)
    rec.act(obs, [0])
    rec.observe(0, 1, obs[0], 0.0, True, False)
    rec.end(0)
    with pytest.raises(UserError, match="write"):
        rec.close()


def test_frame_batches_do_not_depend_on_loader_threads(tmp_path):
    rng = np.random.default_rng(1)
    files = []
    for i in range(7):
        n = int(rng.integers(5, 30))
        path = tmp_path / f"ep_{i:06d}.npz"
        save_npz(path, obs=rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8), rewards=np.zeros(n - 1))
        files.append(path)
    one = list(frame_batches(files, 8, 3, np.random.default_rng(5), threads=1))
    four = list(frame_batches(files, 8, 3, np.random.default_rng(5), threads=4))
    assert len(one) == len(four) > 3
    for a, b in zip(one, four):
        assert np.array_equal(a, b)
    total = sum(len(b) for b in one)
    assert total == sum(len(np.load(p)["obs"]) for p in files)


def test_frame_batches_with_prev_pair_each_frame_with_the_one_before_it(tmp_path):
    files = []
    for i, n in enumerate((4, 7, 3)):  # frame value = (rollout, step), so pairs can be checked
        obs = np.zeros((n, 64, 64, 3), np.uint8)
        obs[:, 0, 0, 0] = i
        obs[:, 0, 0, 1] = np.arange(n)
        path = tmp_path / f"ep_{i:06d}.npz"
        save_npz(path, obs=obs, rewards=np.zeros(n - 1))
        files.append(path)
    plain = list(frame_batches(files, 5, 2, np.random.default_rng(3)))
    pairs = list(frame_batches(files, 5, 2, np.random.default_rng(3), with_prev=True))
    assert len(plain) == len(pairs)
    seen = 0
    for batch, (frames, prev) in zip(plain, pairs):
        assert np.array_equal(batch, frames)  # the same batches as without prev
        for f, p in zip(frames, prev):
            assert f[0, 0, 0] == p[0, 0, 0]  # same rollout
            assert p[0, 0, 1] == max(int(f[0, 0, 1]) - 1, 0)  # the step before (first: itself)
            seen += 1
    assert seen == 14


def test_motion_weights_mark_what_moved_between_frames():
    import torch

    from worldmodels.models.vae import motion_weights

    prev = torch.zeros(1, 3, 64, 64)
    x = prev.clone()
    x[0, :, 10:12, 20:22] = 1.0  # the ball arrived here
    w = motion_weights(x, prev, 50.0)
    assert w.shape == (1, 1, 64, 64)
    assert float(w.sum()) == 4 * 50.0 and float(w[0, 0, 10, 20]) == 50.0
    assert float(motion_weights(x, x, 50.0).sum()) == 0.0
