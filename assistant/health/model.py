"""Customer health: fold interaction events into a per-customer state, score the state.

Pure functions over JSON-ready dicts (no SQL): :func:`fold` takes one event into a
customer's state, :func:`score` turns a state into a 0-100 score with named components
at a point in time. The projector (``assistant.health.projector``) stores the states and
feeds them the log once, in order, so a score is never computed by rescanning history.

Components, each a risk from 0 (fine) to 1 (worst), weighted by ``health.yaml``:

- ``sentiment``: moving average of message sentiment (negative 1, neutral 0.3, positive 0);
- ``frustration``: moving average of the frustration score;
- ``churn_signals``: decaying count of churn signals, 2 or more is the maximum risk;
- ``escalations``: decaying count of hand-offs, 3 or more is the maximum risk;
- ``unresolved``: hand-offs still open, 2 or more is the maximum risk;
- ``contact_frequency``: conversations this ISO week against the mean of the customer's
  previous four weeks (1 when there is no history): twice the baseline above it is the
  maximum risk;
- ``csat``: moving average of ``(5 - score) / 4``.

Score = ``round(100 x (1 - sum(weight x risk) / sum(weights)))``; components with no
data yet carry no risk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from assistant.errors import ConfigurationError

COMPONENTS = (
    "sentiment", "frustration", "churn_signals", "escalations", "unresolved",
    "contact_frequency", "csat",
)
SENTIMENT_RISK = {"negative": 1.0, "neutral": 0.3, "positive": 0.0}
CHURN_SATURATION = 2.0
ESCALATION_SATURATION = 3.0
UNRESOLVED_SATURATION = 2.0
BASELINE_WEEKS = 4
EVIDENCE_KEPT = 20


class Bands(BaseModel):
    """Score thresholds: ``healthy`` at or above, ``watch`` at or above, else at risk."""

    model_config = ConfigDict(extra="forbid")
    healthy: int = Field(70, ge=1, le=100)
    watch: int = Field(40, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        if self.watch >= self.healthy:
            raise ValueError("bands.watch must be below bands.healthy")
        return self


class HealthConfig(BaseModel):
    """``health.yaml``: component weights, bands, decay and smoothing."""

    model_config = ConfigDict(extra="forbid")
    weights: dict[str, float] = Field(default_factory=lambda: {
        "sentiment": 0.20, "frustration": 0.15, "churn_signals": 0.25, "escalations": 0.10,
        "unresolved": 0.10, "contact_frequency": 0.10, "csat": 0.10,
    })
    bands: Bands = Field(default_factory=Bands)
    half_life_days: float = Field(30.0, gt=0, le=3650)
    smoothing: float = Field(0.3, gt=0, le=1)

    @model_validator(mode="after")
    def _known_weights(self) -> HealthConfig:
        unknown = sorted(set(self.weights) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"unknown components in weights: {', '.join(unknown)} "
                             f"(known: {', '.join(COMPONENTS)})")
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ValueError("weights must be >= 0 and not all 0")
        return self

    def band(self, score: int) -> str:
        """``healthy``, ``watch`` or ``at_risk``."""
        if score >= self.bands.healthy:
            return "healthy"
        return "watch" if score >= self.bands.watch else "at_risk"


def load_health_config(path: Path) -> HealthConfig:
    """Read and validate ``health.yaml``.

    Raises:
        ConfigurationError: The file is missing, not YAML, or invalid (with the field).
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return HealthConfig.model_validate(data)
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read the health file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(f"{path}: {problems}") from exc


@dataclass(frozen=True)
class Component:
    """One named part of a score."""

    name: str
    risk: float
    weight: float
    points_lost: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """JSON shape for the API."""
        return {"risk": round(self.risk, 4), "weight": self.weight,
                "points_lost": round(self.points_lost, 2), "detail": self.detail}


@dataclass(frozen=True)
class HealthScore:
    """A customer's score at one moment."""

    score: int
    band: str
    components: dict[str, Component] = field(default_factory=dict)


def new_state() -> dict[str, Any]:
    """The state of a customer nothing is known about yet (score 100)."""
    return {
        "sentiment": None, "frustration": None, "csat": None,
        "churn": {"value": 0.0, "as_of": None},
        "escalations": {"value": 0.0, "as_of": None},
        "open_handoffs": [],
        "weeks": {},
        "evidence": [],
    }


def _week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def _decayed(counter: dict[str, Any], now: datetime, half_life_days: float) -> float:
    if not counter["as_of"]:
        return 0.0
    age_days = (now - datetime.fromisoformat(counter["as_of"])).total_seconds() / 86400
    return float(counter["value"]) * 0.5 ** (max(age_days, 0.0) / half_life_days)


def _bump(counter: dict[str, Any], now: datetime, amount: float, half_life_days: float) -> None:
    counter["value"] = _decayed(counter, now, half_life_days) + amount
    counter["as_of"] = now.isoformat()


def _average(previous: float | None, value: float, smoothing: float) -> float:
    return value if previous is None else previous + smoothing * (value - previous)


def score(state: dict[str, Any], now: datetime, config: HealthConfig) -> HealthScore:
    """The customer's score at ``now`` (decaying counts age until then)."""
    half_life = config.half_life_days
    churn = _decayed(state["churn"], now, half_life)
    escalations = _decayed(state["escalations"], now, half_life)
    open_count = len(state["open_handoffs"])
    this_week = _week(now)
    recent = int(state["weeks"].get(this_week, 0))
    earlier = [(now - timedelta(weeks=n)) for n in range(1, BASELINE_WEEKS + 1)]
    history = [int(state["weeks"].get(_week(w), 0)) for w in earlier]
    seen_before = any(week < this_week for week in state["weeks"])
    baseline = sum(history) / BASELINE_WEEKS if seen_before else 1.0
    floor = max(baseline, 1.0)
    risks = {
        "sentiment": (state["sentiment"] or 0.0,
                      "no messages yet" if state["sentiment"] is None
                      else f"moving average {state['sentiment']:.2f}"),
        "frustration": (state["frustration"] or 0.0,
                        "no messages yet" if state["frustration"] is None
                        else f"moving average {state['frustration']:.2f}"),
        "churn_signals": (min(1.0, churn / CHURN_SATURATION),
                          f"{churn:.2f} recent signals (fading)"),
        "escalations": (min(1.0, escalations / ESCALATION_SATURATION),
                        f"{escalations:.2f} recent hand-offs (fading)"),
        "unresolved": (min(1.0, open_count / UNRESOLVED_SATURATION),
                       f"{open_count} open hand-off{'' if open_count == 1 else 's'}"),
        "contact_frequency": (min(1.0, max(0.0, (recent - baseline) / (2 * floor))),
                              f"{recent} conversation{'' if recent == 1 else 's'} this week, "
                              f"baseline {baseline:.2f} a week"),
        "csat": (state["csat"] or 0.0, "no ratings yet" if state["csat"] is None
                 else f"moving average risk {state['csat']:.2f}"),
    }
    total = sum(config.weights.get(name, 0.0) for name in COMPONENTS)
    components = {
        name: Component(
            name=name, risk=risk, weight=config.weights.get(name, 0.0),
            points_lost=100 * config.weights.get(name, 0.0) * risk / total, detail=detail,
        )
        for name, (risk, detail) in risks.items()
    }
    value = round(100 - sum(c.points_lost for c in components.values()))
    value = max(0, min(100, value))
    return HealthScore(score=value, band=config.band(value), components=components)


def fold(
    state: dict[str, Any],
    *,
    type: str,
    payload: dict[str, Any],
    conversation_id: str | None,
    at: datetime,
    config: HealthConfig,
) -> list[str]:
    """Take one event into ``state`` (in place); the names of the components it moved."""
    moved: list[str] = []
    smoothing, half_life = config.smoothing, config.half_life_days
    if type == "conversation.started":
        week = _week(at)
        state["weeks"][week] = int(state["weeks"].get(week, 0)) + 1
        keep = {_week(at - timedelta(weeks=n)) for n in range(BASELINE_WEEKS + 1)}
        state["weeks"] = {w: n for w, n in state["weeks"].items() if w in keep}
        moved.append("contact_frequency")
    elif type == "message.classified":
        label = str(payload.get("sentiment") or "neutral")
        state["sentiment"] = _average(state["sentiment"], SENTIMENT_RISK.get(label, 0.3),
                                      smoothing)
        state["frustration"] = _average(
            state["frustration"], float(payload.get("frustration") or 0.0), smoothing)
        moved += ["sentiment", "frustration"]
        signals = payload.get("churn_signals") or []
        if signals:
            _bump(state["churn"], at, float(len(signals)), half_life)
            moved.append("churn_signals")
    elif type == "handoff.enqueued" and not payload.get("merged"):
        _bump(state["escalations"], at, 1.0, half_life)
        if conversation_id and conversation_id not in state["open_handoffs"]:
            state["open_handoffs"].append(conversation_id)
        moved += ["escalations", "unresolved"]
    elif type in {"handoff.resolved", "handoff.returned"}:
        if conversation_id in state["open_handoffs"]:
            state["open_handoffs"].remove(conversation_id)
            moved.append("unresolved")
    elif type == "csat.submitted":
        rating = int(payload.get("score") or 3)
        state["csat"] = _average(state["csat"], (5 - rating) / 4, smoothing)
        moved.append("csat")
    return moved


def note_evidence(
    state: dict[str, Any],
    *,
    before: int,
    after: int,
    moved: list[str],
    event_type: str,
    conversation_id: str | None,
    at: datetime,
) -> None:
    """Remember which conversation moved the score (the newest :data:`EVIDENCE_KEPT`)."""
    if before == after:
        return
    state["evidence"].append({
        "conversation_id": conversation_id, "event": event_type, "components": moved,
        "delta": after - before, "score": after, "at": at.isoformat(),
    })
    del state["evidence"][:-EVIDENCE_KEPT]
