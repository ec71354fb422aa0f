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
    produce_timeout_seconds: float = Field(default=5.0, gt=0)
    retry_after_seconds: int = Field(default=5, ge=1)

    database_url: str = f"sqlite+aiosqlite:///{PROJECT_ROOT / '.data' / 'routing.db'}"
    segment_rules_file: Path = PROJECT_ROOT / "config" / "segments.yaml"
    routing_table_file: Path = PROJECT_ROOT / "config" / "routing.yaml"

    host: str = "127.0.0.1"
    router_port: int = 8080
    segmenter_port: int = 8081
    metrics_port: int = 8082
    router_url: str = "http://127.0.0.1:8080"

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")
