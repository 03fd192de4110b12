"""collect.min_frames: an env whose exploring episodes end early (Breakout) tops its data up
with more rollouts, on seeds of their own, and a stopped collection fills its holes."""
import numpy as np

from worldmodels.config import build_config
from worldmodels.curriculum import Run


def collect(out, *overrides):
    cfg = build_config(["smoke"], ["envs=breakout", "workers=1", "stages=collect", "collect.rollouts=2",
                                   "collect.max_steps=300", *overrides])
    Run(cfg, out, ["test"], log_fn=lambda m: None).run()
    return out / "breakout" / "data" / "round0"


def lengths(data) -> dict[str, int]:
    return {p.name: int(np.load(p)["rewards"].shape[0]) for p in sorted(data.glob("ep_*.npz"))}


def test_min_frames_tops_up_with_more_rollouts_and_keeps_the_first(tmp_path):
    plain = lengths(collect(tmp_path / "plain"))
    assert list(plain) == ["ep_000000.npz", "ep_000001.npz"]
    assert sum(plain.values()) < 600  # Breakout's exploring episodes end well before the cap

    data = collect(tmp_path / "topped", "collect.min_frames=600")
    topped = lengths(data)
    assert sum(topped.values()) >= 600 and len(topped) > 2
    assert list(topped) == [f"ep_{i:06d}.npz" for i in range(len(topped))]
    for name in plain:  # the first rollouts are the ones min_frames=0 collects
        assert np.array_equal(np.load(data / name)["actions"], np.load(tmp_path / "plain" / "breakout" / "data"
                                                                       / "round0" / name)["actions"])
    extra = [np.load(data / name)["obs"] for name in list(topped)[2:]]
    assert not np.array_equal(extra[0][:50], np.load(data / "ep_000000.npz")["obs"][:50])

    # A stop that left a hole among the extra rollouts: the rerun refills it with the same episode.
    hole = data / "ep_000002.npz"
    before = np.load(hole)["actions"]
    hole.unlink()
    (tmp_path / "topped" / "breakout" / "manifest.json").unlink()  # collect counts as not done
    collect(tmp_path / "topped", "collect.min_frames=600")
    assert lengths(data) == topped
    assert np.array_equal(np.load(hole)["actions"], before)


def test_min_frames_out_of_reach_stops_at_ten_times_the_rollouts(tmp_path):
    data = collect(tmp_path / "capped", "collect.max_steps=30", "collect.min_frames=100000")
    assert list(lengths(data)) == [f"ep_{i:06d}.npz" for i in range(20)]  # 2 rollouts + 9 x 2 more


def test_env_overrides_reach_the_stage_of_their_env_only(tmp_path, cli):
    """env_overrides.breakout.collect.max_steps caps Breakout's rollouts; the run-wide cap stays
    for the others; a misspelt env name is one error line before anything is written."""
    data = collect(tmp_path / "capped", "envs=breakout,pong", "collect.max_steps=60",
                   "env_overrides.breakout.collect.max_steps=40")
    assert set(lengths(data).values()) == {40}
    assert set(lengths(tmp_path / "capped" / "pong" / "data" / "round0").values()) == {60}

    proc = cli("wm-train", "--config", "smoke", "--envs", "pong", "--out", tmp_path / "bad",
               "--set", "env_overrides.breakuot.collect.max_steps=40")
    assert proc.returncode == 2 and "env_overrides" in proc.stderr and "breakuot" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "bad").exists()
