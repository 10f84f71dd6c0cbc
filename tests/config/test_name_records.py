"""Records of experiments whose names built: named by the settings, the libraries' versions
and the library's source, so that any change is built again."""

import importlib.metadata

from builtup.config import name_records
from builtup.config.name_records import is_recorded, record, record_name

from conftest import tiny_experiment


def test_a_record_is_found_for_the_same_settings_only(tmp_path):
    records = tmp_path / "records"
    record(tiny_experiment(tmp_path), records)
    assert is_recorded(tiny_experiment(tmp_path), records)  # read again, as a new run does
    assert not is_recorded(tiny_experiment(tmp_path, epochs=3), records)
    assert not is_recorded(tiny_experiment(tmp_path, name="other"), records)


def test_another_library_version_or_source_names_another_record(tmp_path, monkeypatch):
    experiment = tiny_experiment(tmp_path)
    before = record_name(experiment)
    monkeypatch.setattr(importlib.metadata, "version", lambda dist: "0.0.0")
    name_records._environment_digest.cache_clear()
    assert record_name(experiment) != before
    monkeypatch.undo()
    name_records._environment_digest.cache_clear()
    assert record_name(experiment) == before
    source = tmp_path / "builtup"
    (source / "train").mkdir(parents=True)
    (source / "train" / "names.py").write_text("# another check\n")
    monkeypatch.setattr(name_records, "PACKAGE", source)
    name_records._environment_digest.cache_clear()
    try:
        assert record_name(experiment) != before
    finally:
        monkeypatch.undo()
        name_records._environment_digest.cache_clear()


def test_the_names_are_checked_only_where_every_library_that_builds_them_is_installed(
    monkeypatch,
):
    assert name_records.builders_installed()
    missing = {**name_records.BUILDERS, "segmentation-models-pytorch": "no_such_module"}
    monkeypatch.setattr(name_records, "BUILDERS", missing)
    assert not name_records.builders_installed()
