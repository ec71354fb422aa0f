"""The settings of service parity and proxy detection: read from the environment, and a
wrong value refused naming the variable and what is accepted."""

from __future__ import annotations

import pydantic
import pytest

from services.core.settings import Settings
from services.metrics import parity_store
from services.segmenter import bootstrap


class TestDefaults:
    def test_four_fifths_thirty_and_every_attribute(self) -> None:
        settings = Settings()
        config = parity_store.ParityConfig.of(settings)
        assert (config.policy.threshold, config.policy.minimum_group_size) == (0.8, 30)
        assert config.attributes == ("age_band", "gender", "socio_economic_band")
        assert config.window.days == 7
        assert bootstrap.proxy_policy(settings).threshold == 0.3


class TestFromTheEnvironment:
    def test_values_reach_both_analyses(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PARITY_ATTRIBUTES", '["gender"]')
        monkeypatch.setenv("PARITY_WINDOW", "30d")
        monkeypatch.setenv("PARITY_THRESHOLD", "0.9")
        monkeypatch.setenv("PROTECTED_GROUP_MINIMUM_SIZE", "50")
        monkeypatch.setenv("PROXY_ASSOCIATION_THRESHOLD", "0.2")
        settings = Settings()
        config = parity_store.ParityConfig.of(settings)
        assert (config.attributes, config.window.days) == (("gender",), 30)
        assert (config.policy.threshold, config.policy.minimum_group_size) == (0.9, 50)
        proxy = bootstrap.proxy_policy(settings)
        assert (proxy.threshold, proxy.minimum_customers) == (0.2, 50)


class TestRefused:
    @pytest.mark.parametrize(("variable", "value", "says"), [
        ("PARITY_WINDOW", "a week", "for example 15m, 1h, 7d"),
        ("PARITY_WINDOW", "400d", "at most 366d"),
        ("PARITY_ATTRIBUTES", '["religion"]', "'age_band', 'gender' or 'socio_economic_band'"),
        ("PARITY_ATTRIBUTES", '["gender", "gender"]', "at most once"),
        ("PARITY_ATTRIBUTES", "[]", "at least one"),
        ("PARITY_THRESHOLD", "1.5", "less than 1"),
        ("PROTECTED_GROUP_MINIMUM_SIZE", "0", "greater than or equal to 1"),
        ("PROXY_ASSOCIATION_THRESHOLD", "0", "greater than 0"),
    ])
    def test_a_wrong_value_names_the_setting(self, monkeypatch: pytest.MonkeyPatch,
                                             variable: str, value: str, says: str) -> None:
        monkeypatch.setenv(variable, value)
        with pytest.raises(pydantic.ValidationError) as refused:
            Settings()
        assert variable.lower() in str(refused.value)
        assert says in str(refused.value)
