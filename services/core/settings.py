"""Settings shared by every service, read from the environment (see README)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """One settings object for the whole system; each service reads what it needs."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_partitions: int = Field(default=3, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    delivery: Literal["exactly_once", "at_least_once"] = "exactly_once"
    instance_id: str = Field(default="0", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    produce_timeout_seconds: float = Field(default=5.0, gt=0)
    retry_after_seconds: int = Field(default=5, ge=1)

    database_url: str = f"sqlite+aiosqlite:///{PROJECT_ROOT / '.data' / 'routing.db'}"
    segment_rules_file: Path = PROJECT_ROOT / "config" / "segments.yaml"
    routing_table_file: Path = PROJECT_ROOT / "config" / "routing.yaml"

    customer_cache_size: int = Field(default=100_000, ge=0)
    customer_cache_ttl_seconds: float = Field(default=300.0, gt=0)
    tickets_raised_flush_seconds: float = Field(default=5.0, gt=0)
    tier_recompute_interval_seconds: float = Field(default=3600.0, ge=0)
    most_valuable_share: float = Field(default=0.05, gt=0, lt=1)
    most_growable_share: float = Field(default=0.10, gt=0, lt=1)
    min_growth_ratio: float = Field(default=0.25, ge=-1, le=1)

    load_sample_seconds: float = Field(default=5.0, gt=0)
    escalation_check_seconds: float = Field(default=5.0, gt=0)

    host: str = "127.0.0.1"
    router_port: int = 8080
    segmenter_port: int = 8081
    metrics_port: int = 8082
    router_url: str = "http://127.0.0.1:8080"

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")
