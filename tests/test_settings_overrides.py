"""Settings from every source: the README's table equals the Settings class, a secrets folder
(WEIR_SECRETS_DIR) gives passwords without printing them, and per-agent overrides apply to
that agent's runner (and its repartition stage) only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from weir import App, Stream
from weir.service.runtime.worker import Worker
from weir.service.settings import Settings, for_agent, settings_table
from weir.tables.query import Query

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_settings_table_is_the_settings_class() -> None:
    found = re.search(
        r"<!-- settings-table -->\n(.*?)\n<!-- /settings-table -->", README.read_text(), re.S
    )
    assert found is not None, "README has no settings table"
    assert found.group(1) == settings_table(), (
        "regenerate: python -c 'from weir.service.settings import settings_table as t; print(t())'"
    )
    for name in Settings.model_fields:
        assert f"`WEIR_{name.upper()}`" in found.group(1)


def test_a_secrets_folder_gives_settings_and_keywords_still_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "WEIR_SASL_PASSWORD").write_text("from-a-secret-file")
    (tmp_path / "WEIR_SASL_USERNAME").write_text("weir")
    monkeypatch.setenv("WEIR_SECRETS_DIR", str(tmp_path))
    s = Settings()
    assert s.sasl_password is not None
    assert s.sasl_password.get_secret_value() == "from-a-secret-file"
    assert s.sasl_username == "weir"
    assert "from-a-secret-file" not in repr(s) + str(s.model_dump())
    assert Settings(sasl_username="other").sasl_username == "other"
    monkeypatch.setenv("WEIR_SASL_USERNAME", "from-env")
    assert Settings().sasl_username == "from-env"


def test_per_agent_overrides_apply_to_that_agent_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIR_AGENTS__CLICKS__MAX_RECORDS_PER_TRIGGER", "500")
    app = App("ov", bootstrap_servers="127.0.0.1:9")

    def same(events: Stream) -> Query:
        return events.query("append")

    app.agent(app.topic("c"), name="clicks")(same)
    app.agent(app.topic("v"), name="views")(same)
    worker = Worker(app)
    assert worker.runners["clicks"].settings.max_records_per_trigger == 500
    assert worker.runners["views"].settings.max_records_per_trigger == 50_000
    assert for_agent(app.settings, "clicks-repartition-c").max_records_per_trigger == 500
    kw = App("kw", agents={"Views": {"max_records_per_trigger": 7}})
    assert for_agent(kw.settings, "views").max_records_per_trigger == 7


def test_a_bad_override_is_named_with_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from weir.service.settings import settings_error

    monkeypatch.setenv("WEIR_AGENTS__CLICKS__MAX_RECORDS_PER_TRIGGER", "0")
    with pytest.raises(ValidationError) as e:
        Settings()
    assert settings_error(e.value) == (
        "invalid settings: WEIR_AGENTS__CLICKS__MAX_RECORDS_PER_TRIGGER "
        "(agents.clicks.max_records_per_trigger): Input should be greater than 0"
    )
