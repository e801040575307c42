"""tracking_service: the errors carry the journal and the steps carried out as declared fields."""

from ansible_collections.mlops.platform.plugins.module_utils.tracking_service import TrackingServiceError, UnknownSchemaError


def test_an_error_without_journal_or_actions_has_empty_lists():
    error = TrackingServiceError("broke")
    assert str(error) == "broke" and error.journal == [] and error.actions == []


def test_an_error_carries_its_journal_and_actions():
    error = UnknownSchemaError("unknown revision", journal=("line 1", "line 2"), actions=["stop x"])
    assert isinstance(error, TrackingServiceError) and str(error) == "unknown revision"
    assert error.journal == ["line 1", "line 2"] and error.actions == ["stop x"]
