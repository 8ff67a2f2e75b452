"""Retry maths and config values (no clock needed: delays are pure functions)."""

from __future__ import annotations

import pytest

from tead import ParallelConfig, RetryPolicy
from tead.spec.models import ParallelSpec


def test_retry_policy_defaults_retry_nothing() -> None:
    policy = RetryPolicy()
    assert policy.max_retries == 0
    assert not policy.retries(1, ("ValueError", "Exception"))


@pytest.mark.parametrize(("attempt", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0)])
def test_backoff_is_exponential_and_capped(attempt: int, delay: float) -> None:
    policy = RetryPolicy(base_delay=1.0, backoff_multiplier=2.0, max_delay=10.0, jitter=0.0)
    assert policy.delay_s(attempt, rand=0.73) == delay


def test_jitter_spreads_the_delay_both_ways() -> None:
    policy = RetryPolicy(base_delay=1.0, jitter=0.1)
    assert policy.delay_s(1, rand=0.0) == pytest.approx(0.9)
    assert policy.delay_s(1, rand=0.5) == pytest.approx(1.0)
    assert policy.delay_s(1, rand=0.999999) == pytest.approx(1.1, abs=1e-5)


def test_retry_on_matches_the_class_or_a_base_class_by_name() -> None:
    policy = RetryPolicy(max_retries=2, retry_on=("LookupError",))
    key_error = ("KeyError", "LookupError", "Exception", "BaseException", "object")
    assert policy.retries(1, key_error)
    assert policy.retries(2, key_error)
    assert not policy.retries(3, key_error)  # max_retries reached
    assert not policy.retries(1, ("ValueError", "Exception", "BaseException", "object"))


def test_parallel_config_from_spec_converts_every_key() -> None:
    spec = ParallelSpec.model_validate(
        {
            "strategy": "process",
            "max_workers": 3,
            "timeout_seconds": "500ms",
            "fail_fast": True,
            "retry": {"max_retries": 2, "base_delay": 0, "retry_on": ["TimeoutError"]},
            "circuit_breaker": {"failure_threshold": 2, "reset_timeout": "1m"},
            "include_traceback": True,
        }
    )
    config = ParallelConfig.from_spec(spec)
    assert config.strategy == "process" and config.workers == 3
    assert config.timeout_seconds == 0.5 and config.fail_fast and config.include_traceback
    assert config.retry == RetryPolicy(max_retries=2, base_delay=0.0, retry_on=("TimeoutError",))
    assert config.circuit_breaker is not None
    assert config.circuit_breaker.reset_timeout == 60.0
    assert config.merged({"max_workers": 7}).max_workers == 7


def test_defaults_keep_todays_behaviour() -> None:
    config = ParallelConfig()
    assert config.strategy == "thread"
    assert config.timeout_seconds is None and config.retry is None
    assert config.circuit_breaker is None and not config.fail_fast
    assert config.workers >= 1
