"""HQ's ``[retention]`` table: its defaults, and a clear `ConfigError` naming the
key for a bad one, or for one at a node other than HQ."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ConfigError, RetentionConfig, load_site
from tests.conftest import POLICY_FILE

SITES = POLICY_FILE.parent
HQ = 'node_id = "hq"\nrole = "hq"\n'
BRANCH = 'node_id = "branch-a"\nrole = "branch"\n\n[upstream]\nnode_id = "hq"\nurl = "http://127.0.0.1:8700"\n'


def site(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def test_the_repositorys_hq_states_its_periods_and_no_other_site_has_any() -> None:
    hq = load_site(SITES / "hq.toml")
    assert hq.retention == RetentionConfig(results_days=1095, closed_tasks_days=365, audit_days=1825, interval_s=3600)
    for name in ("branch-a", "branch-b", "partner-x"):
        config = load_site(SITES / f"{name}.toml")
        assert config.retention is None and config.retention_periods is None


def test_hq_without_a_retention_table_keeps_the_defaults(tmp_path: Path) -> None:
    config = load_site(site(tmp_path, HQ))
    assert config.retention is None
    assert config.retention_periods == RetentionConfig()
    assert (RetentionConfig().results_days, RetentionConfig().closed_tasks_days) == (1095, 365)


def test_a_partial_table_keeps_the_other_defaults(tmp_path: Path) -> None:
    config = load_site(site(tmp_path, HQ + "[retention]\nresults_days = 730\n"))
    assert config.retention_periods == RetentionConfig(results_days=730)


@pytest.mark.parametrize(("line", "message"), [
    ("results_days = -1", "Expected `int` >= 1 - at `$.retention.results_days`"),
    ("closed_tasks_days = 0", "Expected `int` >= 1 - at `$.retention.closed_tasks_days`"),
    ("results_days = 40000", "Expected `int` <= 36500 - at `$.retention.results_days`"),
    ("audit_days = 30", "Expected `int` >= 180 - at `$.retention.audit_days`"),
    ("interval_s = 0", "Expected `float` > 0.0 - at `$.retention.interval_s`"),
    ('results_days = "3y"', "Expected `int`, got `str` - at `$.retention.results_days`"),
    ("result_days = 30", "Object contains unknown field `result_days` - at `$.retention`"),
])
def test_a_bad_period_is_a_config_error_naming_it(tmp_path: Path, line: str, message: str) -> None:
    path = site(tmp_path, HQ + f"[retention]\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    assert caught.value.path == str(path)
    assert caught.value.reason == message


def test_a_retention_table_below_hq_is_a_config_error(tmp_path: Path) -> None:
    path = site(tmp_path, BRANCH + "\n[retention]\nresults_days = 30\n")
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    assert "only HQ sets retention periods" in caught.value.reason
    assert caught.value.reason.endswith("at `$.retention`")
