"""Seeded sensor noise: the requested σ per channel, reproducible from the seed, a σ change
scales the same sequence, and invalid σ is refused."""

import numpy as np
import pytest

from syrenets_ros.plant.sensor import SensorNoise

SIGMA = (1e-4, 1e-3, 0.1)


def _run(noise: SensorNoise, steps: int) -> np.ndarray:
    """(steps, 3, 2): the noise added to q, q̇, τ per joint, read through the public methods."""
    rows = []
    for _ in range(steps):
        noise.next_step()
        q, qd = noise.state((1.0, -2.0), (0.5, 0.0))
        tau = noise.effort((10.0, 0.0))
        rows.append(np.subtract([q, qd, tau], [(1.0, -2.0), (0.5, 0.0), (10.0, 0.0)]))
    return np.array(rows)


def test_noise_has_the_requested_sigma_and_is_reproducible():
    draws = _run(SensorNoise(SIGMA, seed=3), 20000)
    measured = draws.std(axis=0)  # (3, 2)
    assert np.allclose(measured, np.array(SIGMA)[:, None], rtol=0.03)
    assert np.abs(draws.mean(axis=0)).max() < 0.03 * max(SIGMA)
    assert np.array_equal(draws, _run(SensorNoise(SIGMA, seed=3), 20000)), "same seed, same noise"
    assert not np.array_equal(draws[:10], _run(SensorNoise(SIGMA, seed=4), 10))


def test_reseeding_restarts_and_sigma_scales_the_same_sequence():
    noise = SensorNoise(SIGMA, seed=5)
    first = _run(noise, 50)
    noise.reseed(5)
    noise.sigma = tuple(2.0 * s for s in SIGMA)
    assert np.allclose(_run(noise, 50), 2.0 * first, rtol=1e-8, atol=0)  # up to the round-off of adding to 1.0


def test_zero_sigma_reports_the_truth():
    assert not _run(SensorNoise((0.0, 0.0, 0.0), seed=1), 10).any()


@pytest.mark.parametrize("sigma", [(1.0, 1.0), (-1.0, 0.0, 0.0), (float("nan"), 0.0, 0.0)])
def test_invalid_sigma_is_refused_with_a_reason(sigma):
    with pytest.raises(ValueError, match="sigma must be 3 finite values"):
        SensorNoise(sigma, seed=0)


def test_steps_without_noise_draw_nothing():
    """Noise off in between: the sequence resumes where it stopped, as the docstring says."""
    noise = SensorNoise(SIGMA, seed=6)
    first = _run(noise, 5)
    noise.sigma = (0.0, 0.0, 0.0)
    assert not _run(noise, 10).any()
    noise.sigma = SIGMA
    assert np.allclose(np.concatenate([first, _run(noise, 5)]), _run(SensorNoise(SIGMA, seed=6), 10),
                       rtol=1e-8, atol=0)


def test_noise_covers_every_joint_of_a_seven_joint_robot():
    noise = SensorNoise(SIGMA, seed=5, joints=7)
    draws = []
    for _ in range(20000):
        noise.next_step()
        q, qd = noise.state((0.0,) * 7, (0.0,) * 7)
        draws.append([q, qd, noise.effort((0.0,) * 7)])
    measured = np.array(draws).std(axis=0)  # (3, 7)
    assert measured.shape == (3, 7)
    assert np.allclose(measured, np.array(SIGMA)[:, None], rtol=0.03)
