"""The run's sanity checks: a wrong record of the originals' accuracy is caught; latent distances by hand."""

import pytest
import torch

from pdiff_hub import ParameterAutoencoder, PDiffPipeline
from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table
from pdiff_hub.evaluation.checks import (
    LATENT_DISTANCE_RATIO,
    RECORDED_ACCURACY_TOLERANCE,
    SATURATED,
    SATURATION_WARNING,
    autoencoder_checks,
    latent_nearest_original,
    recorded_accuracy_gap,
)

from .helpers import plain_accuracy


def with_recorded(params: ParameterDataset, test_accuracy: torch.Tensor | None) -> ParameterDataset:
    """The same checkpoints with ``test_accuracy`` recorded (None: without the column)."""
    if test_accuracy is None:
        return ParameterDataset(params.dataset.remove_columns("test_accuracy"), params.target)
    rows = [{"step": i, "seed": 0, "lr": 0.1, "val_accuracy": 0.0, "test_accuracy": float(test_accuracy[i])}
            for i in range(len(params.vectors))]
    return ParameterDataset(build_parameter_table(params.vectors, rows), params.target)


def test_recorded_accuracy_gap_catches_a_wrong_record(chain, splits):
    _, params = chain
    recomputed = plain_accuracy(params.target, params.vectors, *splits["test"])
    assert recorded_accuracy_gap(with_recorded(params, recomputed), recomputed) == pytest.approx(0.0, abs=1e-5)
    wrong = recomputed.clone()
    wrong[3] += 2.5  # one checkpoint recorded on other data
    with pytest.warns(UserWarning, match="2.50 points"):
        assert recorded_accuracy_gap(with_recorded(params, wrong), recomputed) == pytest.approx(2.5)
    assert recorded_accuracy_gap(with_recorded(params, None), recomputed) is None


def test_a_gap_within_tolerance_is_not_warned_about(chain, splits, recwarn):
    _, params = chain
    recomputed = plain_accuracy(params.target, params.vectors, *splits["test"])
    assert recorded_accuracy_gap(with_recorded(params, recomputed - RECORDED_ACCURACY_TOLERANCE / 2), recomputed) == (
        pytest.approx(RECORDED_ACCURACY_TOLERANCE / 2, abs=1e-5))
    assert not recwarn.list


def test_latent_nearest_original_by_hand():
    originals = torch.tensor([[0.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    generated = torch.tensor([[0.0, 1.0], [3.0, 4.0]])
    # originals to the nearest other: 2, 2, 3; generated to the nearest original: 1, sqrt(9 + 4)
    assert latent_nearest_original(originals, generated) == {
        "original": pytest.approx(7 / 3), "p-diff": pytest.approx((1 + 13**0.5) / 2)}
    assert latent_nearest_original(originals[:1], generated) is None


def test_autoencoder_checks_measure_the_originals(chain):
    pipe, params = chain
    checks = autoencoder_checks(pipe, params.vectors)
    assert set(checks) == {"reconstruction_vs_mean_error", "latent_std_across_originals", "saturated_latent_fraction"}
    assert checks["reconstruction_vs_mean_error"] > 0 and 0.0 <= checks["saturated_latent_fraction"] <= 1.0
    # identical checkpoints: nothing to tell apart, no ratio, no spread in the latents
    same = params.vectors[:1].repeat(4, 1)
    collapsed = autoencoder_checks(pipe, same)
    assert collapsed["reconstruction_vs_mean_error"] is None
    assert collapsed["latent_std_across_originals"] == pytest.approx(0.0, abs=1e-6)


def test_saturation_is_measured_on_the_decoders_latents_not_the_standardized_ones(chain):
    pipe, params = chain
    layout = pipe.target.layout
    torch.manual_seed(0)
    autoencoder = ParameterAutoencoder(num_params=layout.num_params, tensor_sizes=layout.sizes, latent_dim=16,
                                       channels=(8, 16), standardize_latents=True)
    with torch.no_grad():  # a tanh latent pinned at +-1 for these checkpoints
        autoencoder.to_latent.weight.mul_(1000)
    autoencoder.fit_normalization(params.vectors)
    autoencoder.fit_latent_normalization(params.vectors)
    saturating = PDiffPipeline(pipe.target, autoencoder.eval(), pipe.denoiser, pipe.scheduler)
    raw = autoencoder.encoder_latents(params.vectors).detach()
    checks = autoencoder_checks(saturating, params.vectors)
    assert checks["saturated_latent_fraction"] == pytest.approx(float((raw.abs() > SATURATED).float().mean()))
    assert checks["saturated_latent_fraction"] > 0.9  # the standardized latents, centred, would hide it
    assert checks["latent_std_across_originals"] == pytest.approx(float(raw.std(dim=0).mean()), rel=1e-5)


def test_the_run_decides_the_latent_verdicts_from_its_measures(result):
    checks = result.checks
    nearest = checks.latent_nearest_original
    assert checks.generated_off_originals == (nearest["p-diff"] > LATENT_DISTANCE_RATIO * nearest["original"])
    assert checks.latents_saturated == (checks.saturated_latent_fraction > SATURATION_WARNING)
