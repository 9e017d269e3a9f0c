"""Settings -> model parameters: one place that knows how config maps onto the estimator."""

from __future__ import annotations

from core.calibration import CalibrationParams
from core.config import CalibrationSettings, MapSettings
from core.estimator import EstimatorParams
from core.tiers import tier_set


def estimator_params(
    cfg: MapSettings, interval_ms: int, tiers: str | None = None
) -> EstimatorParams:
    """Estimator parameters for bars of ``interval_ms``; ``tiers`` overrides the config preset."""
    half_life_bars = None
    if cfg.half_life_hours is not None and interval_ms > 0:
        half_life_bars = cfg.half_life_hours * 3_600_000 / interval_ms
    return EstimatorParams(
        tiers=tier_set(tiers or cfg.tiers, cfg.custom_tiers),
        side_split=cfg.side_split,
        side_gain=cfg.side_gain,
        candle_tilt=cfg.candle_tilt,
        entry=cfg.entry,
        entry_points=cfg.entry_points,
        entry_spacing=cfg.entry_spacing,
        position_usd=cfg.position_usd,
        half_life_bars=half_life_bars,
        oi_shrink=cfg.oi_shrink,
        turnover=cfg.turnover,
    )


def calibration_params(cfg: CalibrationSettings) -> CalibrationParams:
    return CalibrationParams(
        scale_half_life_h=cfg.scale_half_life_hours,
        intensity_half_life_h=cfg.intensity_half_life_hours,
        intensity_weight=cfg.intensity_weight,
    )
